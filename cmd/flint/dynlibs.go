package main

// A flint built with cgo is dynamically linked: as the guest's /init it
// needs its ELF interpreter and shared libraries in the initramfs too.

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/flintvm/flint/boot/initramfs"
)

// libDirs are the directories the dynamic loader searches without a cache
// (Debian's multiarch directories first, as its loader has them built in).
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// maxLibs bounds the closure (a flint built with cgo needs libc and the
// loader; anything near this is not a program meant for /init).
const maxLibs = 64

// dynamicFiles returns, for the ELF executable at exe, the files a guest
// needs to run it: its interpreter and every DT_NEEDED library, found the
// way the loader finds them (the object's DT_RUNPATH or DT_RPATH, then
// libDirs), each under the path the loader will look at. A static
// executable needs none.
func dynamicFiles(exe string) ([]initramfs.File, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	interp, err := interpreter(f)
	if err != nil || interp == "" {
		return nil, err
	}
	files := []initramfs.File{}
	have := map[string]bool{}
	add := func(guest string) error {
		if have[guest] {
			return nil
		}
		if len(have) >= maxLibs {
			return fmt.Errorf("more than %d shared libraries", maxLibs)
		}
		real, err := filepath.EvalSymlinks(guest)
		if err != nil {
			return err
		}
		have[guest] = true
		files = append(files, initramfs.File{Path: guest, Perm: 0o755, HostPath: real})
		return nil
	}
	if err := add(interp); err != nil {
		return nil, fmt.Errorf("its ELF interpreter: %w", err)
	}
	queue := []*elf.File{f}
	var opened []*elf.File
	defer func() {
		for _, o := range opened {
			o.Close()
		}
	}()
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		needed, err := obj.ImportedLibraries()
		if err != nil {
			return nil, err
		}
		dirs := append(searchPath(obj), libDirs...)
		for _, name := range needed {
			p, err := findLib(name, dirs)
			if err != nil {
				return nil, err
			}
			if have[p] {
				continue
			}
			if err := add(p); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			lib, err := elf.Open(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			opened = append(opened, lib)
			queue = append(queue, lib)
		}
	}
	return files, nil
}

// interpreter returns the PT_INTERP path, "" for a static executable.
func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		if p.Filesz == 0 || p.Filesz > 4096 {
			return "", errors.New("malformed PT_INTERP")
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", err
		}
		s := strings.TrimRight(string(b), "\x00")
		if !path.IsAbs(s) || path.Clean(s) != s {
			return "", fmt.Errorf("ELF interpreter %q is not a clean absolute path", s)
		}
		return s, nil
	}
	return "", nil
}

// searchPath is an object's DT_RUNPATH, or DT_RPATH without one
// ($ORIGIN entries are skipped: /init has no such libraries).
func searchPath(f *elf.File) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				if path.IsAbs(d) && !strings.Contains(d, "$") {
					dirs = append(dirs, path.Clean(d))
				}
			}
		}
		if len(dirs) > 0 {
			break
		}
	}
	return dirs
}

// findLib finds a DT_NEEDED name: a name with a slash as it is, else the
// first dirs entry holding a regular file (or a link to one) of that name.
func findLib(name string, dirs []string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("bad DT_NEEDED entry %q", name)
	}
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return "", fmt.Errorf("DT_NEEDED %q is a relative path", name)
		}
		return path.Clean(name), nil
	}
	for _, d := range dirs {
		p := path.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("shared library %s not found in %s", name, strings.Join(dirs, ", "))
}
