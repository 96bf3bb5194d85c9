package initramfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/flintvm/flint/internal/hostfile"
)

// The generated archive's layout, which the guest agent relies on.
const (
	// InitPath is where the agent goes; the kernel runs /init.
	InitPath = "/init"
	// ModuleDir holds the modules, each as NAME.ko, decompressed.
	ModuleDir = "/flint/modules"
	// ModuleOrderPath lists the modules to load, one absolute path a line,
	// in load order (dependencies first).
	ModuleOrderPath = "/flint/modules.order"
)

// File is an extra file to put into the archive.
type File struct {
	// Path is the file's path in the guest; missing parent directories
	// are created (mode 0755).
	Path string
	// Perm holds the permission bits; 0 means 0644.
	Perm uint32
	// Data is the contents, unless HostPath is set.
	Data []byte
	// HostPath, if set, names a host file whose contents are read at
	// build time instead of Data.
	HostPath string
}

// Options says what Build puts into the archive.
type Options struct {
	// Init is the guest agent, run as /init (mode 0755); InitFile names a
	// host file holding it instead. Exactly one must be set.
	Init     []byte
	InitFile string
	// Modules are the kernel modules in load order (Resolve's answer).
	Modules []Module
	// Files are extra files.
	Files []File
	// UserInitrd, if not nil, is a user's initrd (compressed or not): it
	// is written first, as it is, and the generated archive after it.
	UserInitrd io.Reader
}

// ErrBuild: options Build cannot turn into an archive.
var ErrBuild = errors.New("cannot build the initramfs")

// Build writes the generated initramfs to dst: the user's initrd if any,
// then one newc archive with the base directories (/dev with the console
// node the kernel opens for /init, /proc, /sys, /tmp, /run), /init,
// the modules under ModuleDir (decompressed), their load order in
// ModuleOrderPath and the extra files. It returns the bytes written. On an
// error, what was written to dst is not a usable initramfs.
func Build(dst io.Writer, opt Options) (int64, error) {
	if (opt.Init == nil) == (opt.InitFile == "") {
		return 0, fmt.Errorf("%w: give the guest agent as bytes or as a file, exactly one", ErrBuild)
	}
	seen := map[string]bool{}
	for _, m := range opt.Modules {
		if seen[m.Name] {
			return 0, fmt.Errorf("%w: module %s listed twice", ErrBuild, m.Name)
		}
		if m.Name == "" || strings.ContainsAny(m.Name, "/\x00-") || m.Name == "." || m.Name == ".." {
			return 0, fmt.Errorf("%w: module name %q (want Resolve's names)", ErrBuild, m.Name)
		}
		seen[m.Name] = true
	}
	var off int64
	if opt.UserInitrd != nil {
		n, err := WriteUserInitrd(dst, opt.UserInitrd)
		if err != nil {
			return n, err
		}
		off = n
	}
	b := builder{w: NewWriter(dst)}
	defer b.dec.close()
	err := b.build(&opt)
	if err == nil {
		err = b.w.Close()
	}
	return off + b.w.Offset(), err
}

type builder struct {
	w     *Writer
	dec   moduleDecoder
	order strings.Builder
}

func (b *builder) build(opt *Options) error {
	w := b.w
	for _, d := range []struct {
		name string
		perm uint32
	}{{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"tmp", 0o1777}, {"run", 0o755}, {"flint", 0o755}, {ModuleDir, 0o755}} {
		if err := w.Dir(d.name, d.perm); err != nil {
			return err
		}
	}
	// Without /dev/console, /init would start with no stdin/out/err.
	if err := w.Device("dev/console", 0o600, CharDevice, 5, 1); err != nil {
		return err
	}
	if opt.Init != nil {
		if err := w.File(InitPath, 0o755, opt.Init); err != nil {
			return err
		}
	} else if err := b.hostFile(InitPath, 0o755, opt.InitFile); err != nil {
		return fmt.Errorf("the guest agent: %w", err)
	}
	for _, m := range opt.Modules {
		if err := b.module(m); err != nil {
			return err
		}
	}
	if err := w.File(ModuleOrderPath, 0o644, []byte(b.order.String())); err != nil {
		return err
	}
	for _, f := range opt.Files {
		if err := b.extra(f); err != nil {
			return err
		}
	}
	return nil
}

// module writes m decompressed as ModuleDir/NAME.ko and records it in the
// load order. A plain .ko streams from its file.
func (b *builder) module(m Module) error {
	path := ModuleDir + "/" + m.Name + ".ko"
	if compression(m.Path) == "" {
		if err := b.hostFile(path, 0o644, m.Path); err != nil {
			return fmt.Errorf("module %s: %w", m.Name, err)
		}
	} else {
		data, err := b.dec.read(m.Path)
		if err != nil {
			return fmt.Errorf("module %s: %w", m.Name, err)
		}
		if err := b.w.File(path, 0o644, data); err != nil {
			return err
		}
	}
	b.order.WriteString(path)
	b.order.WriteByte('\n')
	return nil
}

func (b *builder) extra(f File) error {
	perm := f.Perm
	if perm == 0 {
		perm = 0o644
	}
	if i := strings.LastIndexByte(strings.TrimPrefix(f.Path, "/"), '/'); i > 0 {
		if err := b.w.MkdirAll(strings.TrimPrefix(f.Path, "/")[:i], 0o755); err != nil {
			return err
		}
	}
	if f.HostPath == "" {
		return b.w.File(f.Path, perm, f.Data)
	}
	if f.Data != nil {
		return fmt.Errorf("%w: extra file %s has both Data and HostPath", ErrBuild, f.Path)
	}
	return b.hostFile(f.Path, perm, f.HostPath)
}

// hostFile streams the regular file at host path src into the archive.
func (b *builder) hostFile(name string, perm uint32, src string) error {
	f, err := hostfile.OpenInput(src, os.O_RDONLY, hostfile.Regular)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrBuild, src)
	}
	return b.w.FileFrom(name, perm, fi.Size(), f)
}
