package initramfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadModuleRelease(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("a.ko", fakeModule("license=GPL", "vermagic=6.13.0-rc1-dev+ SMP preempt mod_unload ", "name=a"))
	if r, err := ReadModuleRelease(p); err != nil || r != (ModuleRelease{Release: "6.13.0-rc1-dev+"}) {
		t.Errorf("a.ko: %+v, %v", r, err)
	}
	for name, data := range map[string][]byte{
		"none.ko": fakeModule("license=GPL"), "empty.ko": fakeModule("vermagic= "), "notelf.ko": []byte("not a module"),
	} {
		if r, err := ReadModuleRelease(write(name, data)); !errors.Is(err, ErrBadModule) {
			t.Errorf("%s: %+v, %v", name, r, err)
		}
	}
	// A distribution's module: its release, with symbol versions.
	if tree, release := cachedTree(t, "cloud"); tree != "" {
		ms, err := Resolve(tree, []string{"virtio_mmio"})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := ReadModuleRelease(ms[len(ms)-1].Path); err != nil || r != (ModuleRelease{release, true}) {
			t.Errorf("%s: %+v, %v; want %s with modversions", ms[len(ms)-1].Path, r, err, release)
		}
	}
}
