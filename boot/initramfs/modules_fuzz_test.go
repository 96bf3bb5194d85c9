package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzModuleFile: any bytes, under any module suffix, either decode to an
// ELF file whose .modinfo is read without panicking, or give ErrBadModule.
func FuzzModuleFile(f *testing.F) {
	elfHead := append(append([]byte(nil), magicELF...), 2, 1, 1, 0)
	f.Add(uint8(0), elfHead)
	f.Add(uint8(1), compress(f, "xz", elfHead))
	f.Add(uint8(2), compress(f, "zst", elfHead))
	f.Add(uint8(3), compress(f, "gz", elfHead))
	f.Add(uint8(3), append(append([]byte(nil), magicGzip...), 8, 0, 0, 0))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		name := "m" + moduleSuffixes[int(kind)%len(moduleSuffixes)]
		var d moduleDecoder
		defer d.close()
		out, err := d.decode(name, bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadModule) || !strings.Contains(err.Error(), name) {
				t.Fatalf("error %v: not ErrBadModule naming %s", err, name)
			}
			return
		}
		if len(out) > MaxModuleSize || !bytes.HasPrefix(out, magicELF) {
			t.Fatalf("decoded %d bytes that are not a bounded ELF file", len(out))
		}
		if ef, err := elf.NewFile(bytes.NewReader(out)); err == nil {
			modinfo(ef)
		}
	})
}

// FuzzModulesDep: no modules.dep text panics the parser or the resolver;
// a resolution that succeeds lists each module once, after its deps.
func FuzzModulesDep(f *testing.F) {
	f.Add("kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko:\n", "a")
	f.Add("a.ko: a.ko\n", "a")
	f.Add("x-y.ko.xz: /abs/z.ko\n/abs/z.ko:\n", "x_y")
	f.Add(":\n\n# comment\nq", "q")
	f.Fuzz(func(t *testing.T, dep, want string) {
		df, err := parseModulesDep("/tree", "/tree/modules.dep", strings.NewReader(dep))
		if err != nil {
			if !errors.Is(err, ErrModuleDeps) {
				t.Fatalf("parse error %v is not ErrModuleDeps", err)
			}
			return
		}
		r := resolver{src: df, builtin: map[string]bool{}, state: map[string]int{}}
		if err := r.visit(ModuleName(want), nil); err != nil {
			if !errors.Is(err, ErrModuleDeps) && !errors.Is(err, ErrUnknownModule) {
				t.Fatalf("resolve error %v", err)
			}
			return
		}
		pos := map[string]int{}
		for i, m := range r.order {
			if _, dup := pos[m.Name]; dup {
				t.Fatalf("%s twice in %v", m.Name, r.order)
			}
			pos[m.Name] = i
		}
		for i, m := range r.order {
			_, deps, _, _ := df.lookup(m.Name)
			for _, d := range deps {
				if j, ok := pos[ModuleName(d)]; !ok || j > i {
					t.Fatalf("%s before its dependency %s in %v", m.Name, d, r.order)
				}
			}
		}
	})
}

// FuzzModulesOrder: no modules.order text panics its reader, and a module
// found through it, in a build tree or an installed one, is a file inside
// the tree (never one a ../ or absolute line leads to outside).
func FuzzModulesOrder(f *testing.F) {
	f.Add([]byte("drivers/virtio/virtio_mmio.o\nkernel/drivers/virtio/virtio_mmio.ko\n"), "virtio_mmio", true)
	f.Add([]byte("../out/virtio_mmio.ko\n/abs/virtio_mmio.ko\ndrivers/../drivers/virtio/virtio_mmio.ko\n"), "virtio_mmio", false)
	f.Add([]byte("kernel/drivers/virtio/virtio_mmio.ko.xz\n\n \t\n.ko\nx.o\n"), "x", true)
	root := f.TempDir()
	tree := filepath.Join(root, "tree")
	for _, p := range []string{"tree/drivers/virtio/virtio_mmio.ko", "tree/kernel/drivers/virtio/virtio_mmio.ko", "out/virtio_mmio.ko", "tree/x.ko"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, order []byte, name string, build bool) {
		ts := &treeScan{dir: tree, build: build, order: map[string]string{}, outside: map[string]string{}}
		ts.readOrder(order)
		p, ok, err := ts.find(ModuleName(name))
		if err != nil && !errors.Is(err, ErrUnknownModule) && !errors.Is(err, ErrNoModuleTree) {
			t.Fatalf("find: %v", err)
		}
		if !ok {
			return
		}
		if rel, rerr := filepath.Rel(tree, p); rerr != nil || !filepath.IsLocal(rel) || !fileExists(p) {
			t.Fatalf("module %q found at %s, not a file inside %s", name, p, tree)
		}
	})
}
