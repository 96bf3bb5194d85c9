package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
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
