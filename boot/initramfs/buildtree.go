package initramfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flintvm/flint/internal/hostfile"
)

// A kernel build tree is the directory a kernel developer built Linux in
// (the source tree, or the O= output directory, which holds the same
// files): modules.order lists the loadable modules built (paths relative
// to the tree, ".ko" or, since Linux 6.3, ".o" for the object beside the
// .ko), modules.builtin and modules.builtin.modinfo the modules built into
// the kernel, .config the configuration. Its modules are not installed:
// there is no modules.dep, so Resolve takes each module's dependencies from
// its .modinfo, and only from the files modules.order names (a stale .ko
// of an earlier configuration may lie anywhere in the tree).

// maxTreeUp is how many directories above the kernel file's FindBuildTree
// looks: arch/x86/boot/bzImage lies three below the tree's top.
const maxTreeUp = 4

// treeMarks are the files every kernel build writes at its top.
var treeMarks = []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"}

// IsBuildTree reports whether dir is a kernel build tree: it has one of
// modules.order, modules.builtin or modules.builtin.modinfo, and a Makefile
// or a .config.
func IsBuildTree(dir string) bool {
	mark := false
	for _, f := range treeMarks {
		mark = mark || isRegular(filepath.Join(dir, f))
	}
	return mark && (isRegular(filepath.Join(dir, "Makefile")) || isRegular(filepath.Join(dir, ".config")))
}

// FindBuildTree returns the build tree the kernel file at path lies in:
// its directory or one of the maxTreeUp above it that IsBuildTree, looked
// for from the path as given and then from the file a symbolic link leads
// to; "" when there is none.
func FindBuildTree(path string) string {
	var starts []string
	if abs, err := filepath.Abs(path); err == nil {
		starts = append(starts, filepath.Dir(abs))
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if real, err = filepath.Abs(real); err == nil {
			starts = append(starts, filepath.Dir(real))
		}
	}
	for _, dir := range starts {
		for range maxTreeUp + 1 {
			if IsBuildTree(dir) {
				return dir
			}
			up := filepath.Dir(dir)
			if up == dir {
				break
			}
			dir = up
		}
	}
	return ""
}

// ReleasePath is where a build tree records the release it built.
const ReleasePath = "include/config/kernel.release"

func isRegular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// maxListFile bounds a tree's modules.builtin.modinfo and .config (a few
// hundred KiB in the largest configurations).
const maxListFile = 16 << 20

// readBuiltin returns the modules built into the kernel of the tree dir:
// from modules.builtin, else from modules.builtin.modinfo, else, in a build
// tree, from its .config (the modules moduleConfig knows, =y). A tree
// without any of them has none known.
func readBuiltin(dir string) (map[string]bool, error) {
	set := map[string]bool{}
	data, err := readListFile(dir, "modules.builtin")
	if err == nil {
		for line := range strings.Lines(string(data)) {
			if line = strings.TrimSpace(line); line != "" {
				set[ModuleName(line)] = true
			}
		}
		return set, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if data, err = readListFile(dir, "modules.builtin.modinfo"); err == nil {
		return builtinModinfo(data), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if !IsBuildTree(dir) {
		return set, nil
	}
	kc, err := ReadKconfig(filepath.Join(dir, ".config"))
	if errors.Is(err, fs.ErrNotExist) {
		return set, nil
	}
	if err != nil {
		return nil, err
	}
	for name := range moduleConfig {
		if _, v, _ := kc.Module(name); v == "y" {
			set[name] = true
		}
	}
	return set, nil
}

// readListFile reads dir/name, at most maxListFile bytes.
func readListFile(dir, name string) ([]byte, error) {
	data, err := readBounded(filepath.Join(dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the module tree's %s: %w", name, err)
	}
	return data, err
}

// readBounded reads the regular file at p, at most maxListFile bytes: a
// larger one, or anything but a regular file (a FIFO would block), is an
// error.
func readBounded(p string) ([]byte, error) {
	f, err := hostfile.OpenInput(p, os.O_RDONLY, hostfile.Regular)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxListFile+1))
	if err == nil && len(data) > maxListFile {
		err = fmt.Errorf("%s: more than %d bytes", p, maxListFile)
	}
	return data, err
}

// builtinModinfo returns the module names of a modules.builtin.modinfo:
// NUL-separated "MODULE.KEY=VALUE" strings.
func builtinModinfo(data []byte) map[string]bool {
	set := map[string]bool{}
	for s := range strings.SplitSeq(string(data), "\x00") {
		name, _, ok := strings.Cut(s, ".")
		if ok && name != "" && strings.Contains(s, "=") && !strings.ContainsAny(name, "=/ \n") {
			set[ModuleName(name)] = true
		}
	}
	return set
}

// moduleConfig is the Kconfig symbol that builds each module command mode
// loads (DefaultModules) and each of their dependencies.
var moduleConfig = map[string]string{
	"virtio_mmio": "CONFIG_VIRTIO_MMIO", "virtio_pci": "CONFIG_VIRTIO_PCI",
	"virtio_console": "CONFIG_VIRTIO_CONSOLE", "virtio_net": "CONFIG_VIRTIO_NET",
	"virtiofs": "CONFIG_VIRTIO_FS", "fuse": "CONFIG_FUSE_FS", "overlay": "CONFIG_OVERLAY_FS",
	"virtio": "CONFIG_VIRTIO", "virtio_ring": "CONFIG_VIRTIO",
	"virtio_pci_modern_dev": "CONFIG_VIRTIO_PCI_LIB", "virtio_pci_legacy_dev": "CONFIG_VIRTIO_PCI_LIB_LEGACY",
	"failover": "CONFIG_FAILOVER", "net_failover": "CONFIG_NET_FAILOVER",
	"vmw_vsock_virtio_transport": "CONFIG_VIRTIO_VSOCKETS", "vmw_vsock_virtio_transport_common": "CONFIG_VIRTIO_VSOCKETS_COMMON",
	"vsock": "CONFIG_VSOCKETS",
}

// Kconfig is a kernel configuration file (a build tree's .config, an
// installed kernel's /boot/config-RELEASE): each symbol's value.
type Kconfig struct {
	Path string
	vals map[string]string
}

// ReadKconfig reads and parses the configuration file at path.
func ReadKconfig(path string) (*Kconfig, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return ParseKconfig(path, strings.NewReader(string(data))), nil
}

// ParseKconfig parses a configuration file (named path, for messages):
// "CONFIG_X=VALUE" lines set X; "# CONFIG_X is not set", comments and
// anything else leave it unset.
func ParseKconfig(path string, r io.Reader) *Kconfig {
	k := &Kconfig{Path: path, vals: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		sym, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && strings.HasPrefix(sym, "CONFIG_") {
			k.vals[sym] = val
		}
	}
	// A line too long for the scanner ends the parse; what came before
	// stands (a symbol after it reads as not set).
	return k
}

// Module returns the symbol that builds module name and its value ("y",
// "m", or "" when not set); known is false for a module the table does
// not know.
func (k *Kconfig) Module(name string) (sym, val string, known bool) {
	sym, known = moduleConfig[ModuleName(name)]
	if !known {
		return "", "", false
	}
	return sym, k.vals[sym], true
}

// ErrNotBuiltin: a module the guest needs is not built into the kernel,
// by its configuration.
var ErrNotBuiltin = errors.New("not every driver the guest needs is built in")

// CheckBuiltin returns nil when the configuration builds every module of
// wanted into the kernel (=y), so a guest needs no module file; otherwise
// an error, matching ErrNotBuiltin, about the first that is not: a module
// (=m), absent (not set) or a module the table cannot tell.
func (k *Kconfig) CheckBuiltin(wanted []string) error {
	for _, w := range wanted {
		sym, val, known := k.Module(w)
		switch {
		case !known:
			return fmt.Errorf("%w: %s: which option builds it is not known", ErrNotBuiltin, w)
		case val == "y":
		case val == "m":
			return fmt.Errorf("%w: %s is a module (%s=m in %s)", ErrNotBuiltin, w, sym, k.Path)
		default:
			return fmt.Errorf("%w: the kernel has no %s (%s is not set in %s)", ErrNotBuiltin, w, sym, k.Path)
		}
	}
	return nil
}
