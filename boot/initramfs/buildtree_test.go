package initramfs

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeModule is a minimal relocatable ELF file with a .modinfo section
// holding the NUL-separated strings info, as a .ko has.
func fakeModule(info ...string) []byte {
	le := binary.LittleEndian
	modinfo := []byte(strings.Join(info, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	modOff := 64
	strOff := modOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	b := make([]byte, shOff+3*64)
	copy(b, magicELF)
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, little-endian, version 1
	le.PutUint16(b[16:], 1)    // ET_REL
	le.PutUint16(b[18:], 62)   // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[58:], 64) // e_shentsize
	le.PutUint16(b[60:], 3)  // e_shnum
	le.PutUint16(b[62:], 2)  // e_shstrndx
	copy(b[modOff:], modinfo)
	copy(b[strOff:], shstr)
	sec := func(i int, name, typ uint32, flags uint64, off, size int) {
		h := b[shOff+i*64:]
		le.PutUint32(h, name)
		le.PutUint32(h[4:], typ)
		le.PutUint64(h[8:], flags)
		le.PutUint64(h[24:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint64(h[48:], 1)
	}
	sec(1, 1, 1, 2, modOff, len(modinfo)) // .modinfo: PROGBITS, ALLOC
	sec(2, 10, 3, 0, strOff, len(shstr))  // .shstrtab: STRTAB
	return b
}

// buildTree writes a kernel build tree: the Makefile, the kernel at
// arch/x86/boot/bzImage, modules.order in both forms (x.o since Linux
// 6.3, x.ko before), modules.builtin, a .config, the modules it lists,
// and a stale virtio_net.ko that modules.order does not list.
func buildTree(t *testing.T) string {
	t.Helper()
	mod := func(name, deps string) []byte { return fakeModule("license=GPL", "depends="+deps, "name="+name) }
	return writeTree(t, map[string][]byte{
		"Makefile":                       []byte("VERSION = 6\n"),
		".config":                        []byte("CONFIG_VIRTIO=m\n# CONFIG_VIRTIO_NET is not set\nCONFIG_VIRTIO_MMIO=m\nCONFIG_FUSE_FS=y\n"),
		"arch/x86/boot/bzImage":          []byte("kernel"),
		"modules.order":                  []byte("drivers/virtio/virtio.o\ndrivers/virtio/virtio_ring.o\ndrivers/virtio/virtio_mmio.o\ndrivers/char/virtio_console.ko\n"),
		"modules.builtin":                []byte("kernel/fs/fuse/fuse.ko\nkernel/fs/overlayfs/overlay.ko\n"),
		"drivers/virtio/virtio.ko":       mod("virtio", ""),
		"drivers/virtio/virtio_ring.ko":  mod("virtio_ring", ""),
		"drivers/virtio/virtio_mmio.ko":  mod("virtio_mmio", "virtio,virtio_ring"),
		"drivers/char/virtio_console.ko": mod("virtio_console", "virtio,virtio_ring"),
		"drivers/net/virtio_net.ko":      mod("virtio_net", "virtio"),
	})
}

func TestFindBuildTree(t *testing.T) {
	tree := buildTree(t)
	for _, k := range []string{"arch/x86/boot/bzImage", "vmlinux", "a/b/c/d/vmlinux"} {
		if got := FindBuildTree(filepath.Join(tree, k)); got != tree {
			t.Errorf("kernel %s: tree %q, want %q", k, got, tree)
		}
	}
	if got := FindBuildTree(filepath.Join(tree, "a/b/c/d/e/vmlinux")); got != "" {
		t.Errorf("five levels below the tree: %q, want none", got)
	}
	// A link to the kernel from outside finds the tree it leads to.
	link := filepath.Join(t.TempDir(), "bzImage")
	if err := os.Symlink(filepath.Join(tree, "arch/x86/boot/bzImage"), link); err != nil {
		t.Fatal(err)
	}
	if got := FindBuildTree(link); got != tree {
		t.Errorf("through a link: %q", got)
	}
	// An O= directory: .config and modules.builtin.modinfo, no Makefile.
	objdir := writeTree(t, map[string][]byte{".config": nil, "modules.builtin.modinfo": nil, "arch/x86/boot/bzImage": nil})
	if got := FindBuildTree(filepath.Join(objdir, "arch/x86/boot/bzImage")); got != objdir {
		t.Errorf("O= directory: %q", got)
	}
	// An installed module tree (modules.order, no Makefile or .config) and
	// a source tree never built (a Makefile, no list) are not build trees.
	for name, files := range map[string]map[string][]byte{
		"installed tree":     {"modules.order": nil, "modules.dep": nil},
		"source never built": {"Makefile": nil, "Kconfig": nil},
	} {
		d := writeTree(t, files)
		if IsBuildTree(d) || FindBuildTree(filepath.Join(d, "vmlinux")) != "" {
			t.Errorf("%s taken for a build tree", name)
		}
	}
}

func TestResolveBuildTree(t *testing.T) {
	tree := buildTree(t)
	ms, err := Resolve(tree, []string{"virtio_mmio"})
	if err != nil || !slices.Equal(names(ms), []string{"virtio", "virtio_ring", "virtio_mmio"}) {
		t.Fatalf("virtio_mmio: %v, %v", names(ms), err)
	}
	if ms[2].Path != filepath.Join(tree, "drivers/virtio/virtio_mmio.ko") {
		t.Errorf("virtio_mmio from %s", ms[2].Path)
	}
	// A .ko listed as such (before Linux 6.3); built-in modules need nothing.
	ms, err = Resolve(tree, []string{"virtio_console", "overlay", "fuse"})
	if err != nil || !slices.Equal(names(ms), []string{"virtio", "virtio_ring", "virtio_console"}) {
		t.Fatalf("virtio_console with built-ins: %v, %v", names(ms), err)
	}
	// A stale .ko that modules.order does not list is not used, and the
	// error says what the .config says.
	_, err = Resolve(tree, []string{"virtio_net"})
	if !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), "build tree "+tree) ||
		!strings.Contains(err.Error(), "CONFIG_VIRTIO_NET is not set") || strings.Contains(err.Error(), "\n") {
		t.Errorf("virtio_net (stale .ko): %v", err)
	}
	// Listed in modules.order, its .ko missing: the build is not finished.
	if err := os.Remove(filepath.Join(tree, "drivers/virtio/virtio_mmio.ko")); err != nil {
		t.Fatal(err)
	}
	if _, err = Resolve(tree, []string{"virtio_mmio"}); !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), "CONFIG_VIRTIO_MMIO=m") {
		t.Errorf("virtio_mmio without its .ko: %v", err)
	}
}

// TestResolveBuiltinTrees: a kernel with the drivers built in (=y) needs
// no module file, whichever of its files says so.
func TestResolveBuiltinTrees(t *testing.T) {
	wanted := []string{"virtio_mmio", "virtio_console", "virtiofs", "overlay"}
	for name, files := range map[string]map[string][]byte{
		"modules.builtin": {"Makefile": nil, "modules.order": nil,
			"modules.builtin": []byte("kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/char/virtio_console.ko\nkernel/fs/fuse/virtiofs.ko\nkernel/fs/overlayfs/overlay.ko\n")},
		"modules.builtin.modinfo": {".config": nil,
			"modules.builtin.modinfo": []byte("virtio_mmio.file=drivers/virtio/virtio_mmio\x00virtio_mmio.license=GPL\x00virtio_console.file=drivers/char/virtio_console\x00virtiofs.file=fs/fuse/virtiofs\x00overlay.license=GPL\x00\x00")},
		".config": {"Makefile": nil, "modules.order": nil,
			".config": []byte("CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_VIRTIO_FS=y\nCONFIG_OVERLAY_FS=y\n")},
	} {
		ms, err := Resolve(writeTree(t, files), wanted)
		if err != nil || len(ms) != 0 {
			t.Errorf("%s: %v, %v; want nothing to load", name, names(ms), err)
		}
	}
	// The .config is only read when the lists are missing: modules.builtin
	// wins over a .config edited since the build.
	d := writeTree(t, map[string][]byte{"Makefile": nil, "modules.builtin": nil, ".config": []byte("CONFIG_VIRTIO_MMIO=y\n")})
	if _, err := Resolve(d, []string{"virtio_mmio"}); !errors.Is(err, ErrUnknownModule) {
		t.Errorf(".config against modules.builtin: %v", err)
	}
}

func TestKconfigCheckBuiltin(t *testing.T) {
	k := ParseKconfig("/boot/config-6.1.0-x", strings.NewReader(
		"#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_VIRTIO_FS=m\n# CONFIG_OVERLAY_FS is not set\nCONFIG_LOCALVERSION=\"-x\"\n"))
	if err := k.CheckBuiltin([]string{"virtio_mmio", "virtio-console"}); err != nil {
		t.Errorf("built in: %v", err)
	}
	for w, want := range map[string]string{
		"virtiofs":   "virtiofs is a module (CONFIG_VIRTIO_FS=m in /boot/config-6.1.0-x)",
		"overlay":    "the kernel has no overlay (CONFIG_OVERLAY_FS is not set in /boot/config-6.1.0-x)",
		"virtio_net": "the kernel has no virtio_net", "ext4": "ext4: which option builds it is not known",
	} {
		err := k.CheckBuiltin([]string{"virtio_mmio", w})
		if !errors.Is(err, ErrNotBuiltin) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", w, err, want)
		}
	}
	if _, err := ReadKconfig(filepath.Join(t.TempDir(), "config-none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: %v", err)
	}
	// Every module command mode may load, and each dependency, is known.
	for _, m := range append(slices.Clone(DefaultModules), wantCloud...) {
		if _, _, known := k.Module(m); !known {
			t.Errorf("moduleConfig lacks %s", m)
		}
	}
}

// FuzzBuildTreeLists: no .config text or modules.builtin.modinfo bytes
// panic their parsers; CheckBuiltin agrees with Module, and the names
// read from modinfo are module names.
func FuzzBuildTreeLists(f *testing.F) {
	f.Add("CONFIG_VIRTIO_MMIO=y\n# CONFIG_OVERLAY_FS is not set\nCONFIG_VIRTIO_FS=m\n", []byte("virtio_mmio.file=drivers/virtio/virtio_mmio\x00overlay.license=GPL\x00"))
	f.Add("CONFIG_=\n=y\nCONFIG_VIRTIO_CONSOLE", []byte(".x=\x00a.\x00=.=\x00"))
	f.Fuzz(func(t *testing.T, config string, modinfo []byte) {
		k := ParseKconfig("c", strings.NewReader(config))
		for _, m := range DefaultModules {
			_, v, _ := k.Module(m)
			err := k.CheckBuiltin([]string{m})
			if (err == nil) != (v == "y") || (err != nil && !errors.Is(err, ErrNotBuiltin)) {
				t.Fatalf("%s=%q: CheckBuiltin %v", m, v, err)
			}
		}
		for name := range builtinModinfo(modinfo) {
			if name == "" || ModuleName(name) != name || strings.ContainsAny(name, "/=\x00") {
				t.Fatalf("modinfo name %q", name)
			}
		}
	})
}

// TestResolveOldBuildTree: before Linux 5.3 a build tree's modules.order
// named each module with a "kernel/" prefix (kernel/drivers/virtio/x.ko
// for the tree's drivers/virtio/x.ko); the tree's own kernel/ directory
// still holds modules of its own (kernel/locking/locktorture.ko).
func TestResolveOldBuildTree(t *testing.T) {
	mod := func(name, deps string) []byte { return fakeModule("depends="+deps, "name="+name) }
	tree := writeTree(t, map[string][]byte{
		"Makefile": nil, ".config": nil,
		"modules.order":                    []byte("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_mmio.ko\nkernel/kernel/locking/locktorture.ko\nkernel/torture.ko\n"),
		"modules.builtin":                  []byte("kernel/drivers/virtio/virtio_ring.ko\n"),
		"drivers/virtio/virtio.ko":         mod("virtio", ""),
		"drivers/virtio/virtio_mmio.ko":    mod("virtio_mmio", "virtio,virtio_ring"),
		"kernel/locking/locktorture.ko":    mod("locktorture", "torture"),
		"kernel/torture.ko":                mod("torture", ""),
		"kernel/drivers/virtio/virtio.ko~": nil,
	})
	ms, err := Resolve(tree, []string{"virtio_mmio", "locktorture"})
	if err != nil || !slices.Equal(names(ms), []string{"virtio", "virtio_mmio", "torture", "locktorture"}) {
		t.Fatalf("kernel/-prefixed modules.order: %v, %v", names(ms), err)
	}
	for _, m := range ms {
		if want := map[string]string{"virtio": "drivers/virtio/virtio.ko", "virtio_mmio": "drivers/virtio/virtio_mmio.ko",
			"torture": "kernel/torture.ko", "locktorture": "kernel/locking/locktorture.ko"}[m.Name]; m.Path != filepath.Join(tree, want) {
			t.Errorf("%s from %s, want %s", m.Name, m.Path, want)
		}
	}
}

// TestResolveOrderOutsideTree: a modules.order line that leads out of the
// tree (../, or an absolute path) is never loaded: the module it names is
// an error that says so, in a build tree and in an installed one alike.
func TestResolveOrderOutsideTree(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "virtio_mmio.ko"), fakeModule("depends="), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := func(tree string) string {
		r, err := filepath.Rel(tree, filepath.Join(outside, "virtio_mmio.ko"))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, build := range []bool{true, false} {
		files := map[string][]byte{"modules.builtin": nil}
		if build {
			files["Makefile"] = nil
		}
		tree := writeTree(t, files)
		for _, line := range []string{rel(tree), "drivers/../../" + filepath.Base(tree) + "/" + rel(tree), filepath.Join(outside, "virtio_mmio.ko")} {
			if err := os.WriteFile(filepath.Join(tree, "modules.order"), []byte(line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ms, err := Resolve(tree, []string{"virtio_mmio"})
			if err == nil || !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), "outside") ||
				!strings.Contains(err.Error(), line) || strings.Contains(err.Error(), "\n") {
				t.Errorf("build tree %v, modules.order %q: %v, %v; want an error naming the line", build, line, names(ms), err)
			}
		}
	}
}

// TestResolveWalkBound: a tree too large to be a module tree (--modules
// naming a home directory) is an error after a bounded walk, and a symbolic
// link loop inside a tree is not followed.
func TestResolveWalkBound(t *testing.T) {
	files := map[string][]byte{"kernel/virtio_mmio.ko": fakeModule("depends=")}
	for i := range 40 {
		files[filepath.Join("src", strings.Repeat("d/", i%7), "f"+string(rune('a'+i%26))+".c")] = nil
	}
	dir := writeTree(t, files)
	if err := os.Symlink("..", filepath.Join(dir, "src", "loop")); err != nil {
		t.Fatal(err)
	}
	if ms, err := Resolve(dir, []string{"virtio_mmio"}); err != nil || len(ms) != 1 {
		t.Fatalf("small tree with a link loop: %v, %v", names(ms), err)
	}
	defer func(n int) { maxWalkEntries = n }(maxWalkEntries)
	maxWalkEntries = 20
	_, err := Resolve(dir, []string{"virtio_mmio"})
	if !errors.Is(err, ErrNoModuleTree) || !strings.Contains(err.Error(), "more than 20 files") || !strings.Contains(err.Error(), dir) {
		t.Errorf("tree over the bound: %v", err)
	}
}

// TestResolveFIFOs: a FIFO where a tree's list or module file should be
// is an error at once, never an open that waits for a writer.
func TestResolveFIFOs(t *testing.T) {
	for _, p := range []string{"modules.order", "modules.builtin", ".config", "drivers/virtio/virtio_mmio.ko"} {
		tree := buildTree(t)
		if p == "modules.builtin" || p == ".config" {
			os.Remove(filepath.Join(tree, "modules.builtin"))
		}
		os.Remove(filepath.Join(tree, p))
		if err := syscall.Mkfifo(filepath.Join(tree, p), 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := Resolve(tree, []string{"virtio_mmio"}); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("%s a FIFO: %v, want an error naming it", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s a FIFO: Resolve blocked", p)
		}
	}
}
