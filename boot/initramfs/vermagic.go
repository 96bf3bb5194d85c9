package initramfs

import (
	"bytes"
	"debug/elf"
	"fmt"
	"strings"
)

// ModuleRelease is what a module file says of the kernel it was built
// for: the release its vermagic names ("6.1.0-27-amd64" of "vermagic=
// 6.1.0-27-amd64 SMP preempt mod_unload modversions") and whether it
// carries symbol versions (a __versions section). Linux refuses a module
// whose vermagic differs from its own; with symbol versions it ignores the
// release and checks each symbol's version instead (kernel/module's
// same_magic).
type ModuleRelease struct {
	Release     string
	Modversions bool
}

// ReadModuleRelease reads the module file at path (decompressed as
// ReadModule does) and returns its ModuleRelease. A module without a
// vermagic is an error matching ErrBadModule.
func ReadModuleRelease(path string) (ModuleRelease, error) {
	data, err := ReadModule(path)
	if err != nil {
		return ModuleRelease{}, err
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return ModuleRelease{}, fmt.Errorf("%w %s: %v", ErrBadModule, path, err)
	}
	defer ef.Close()
	info, err := modinfo(ef)
	if err != nil {
		return ModuleRelease{}, fmt.Errorf("%w %s: %v", ErrBadModule, path, err)
	}
	for _, kv := range info {
		if v, ok := strings.CutPrefix(kv, "vermagic="); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return ModuleRelease{Release: f[0], Modversions: ef.Section("__versions") != nil}, nil
			}
		}
	}
	return ModuleRelease{}, fmt.Errorf("%w %s: no vermagic in its .modinfo", ErrBadModule, path)
}
