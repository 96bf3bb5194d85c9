package main

import (
	"bytes"
	"debug/elf"
	"os"
	"strings"
	"testing"

	"github.com/flintvm/flint/vmm"
)

// TestDynamicFiles: a dynamically linked program brings its loader and
// libc (each under the path the loader looks at, read from the real
// file); a static one brings nothing.
func TestDynamicFiles(t *testing.T) {
	dyn := dynamicExe(t)
	files, err := dynamicFiles(dyn)
	if err != nil {
		t.Fatal(err)
	}
	var interp, libc bool
	for _, f := range files {
		if f.HostPath == "" || f.Perm != 0o755 {
			t.Errorf("%+v: want a host file, mode 0755", f)
		}
		interp = interp || strings.Contains(f.Path, "ld-linux")
		libc = libc || strings.HasSuffix(f.Path, "/libc.so.6")
	}
	if len(files) < 2 || !interp || !libc || !strings.Contains(files[0].Path, "ld-linux") {
		t.Fatalf("files %+v: want the interpreter first, and libc", files)
	}
	for _, static := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(static); err != nil {
			continue
		}
		if files, err := dynamicFiles(static); err != nil || len(files) != 0 {
			t.Errorf("static %s: %v, %v; want nothing", static, files, err)
		}
		return
	}
}

func TestFindLibErrors(t *testing.T) {
	for _, name := range []string{"", "rel/lib.so", "libnothere-flint.so.9"} {
		if _, err := findLib(name, []string{t.TempDir()}); err == nil {
			t.Errorf("%q found", name)
		}
	}
}

// TestDynamicInit: a dynamically linked flint (here /bin/ls stands in for
// it) goes into the generated initramfs with its loader and libraries at
// the paths the loader looks at.
func TestDynamicInit(t *testing.T) {
	dyn := dynamicExe(t)
	old := selfExe
	selfExe = dyn
	defer func() { selfExe = old }()
	g := guest{argv: []string{"true"}, modules: fakeTree(t), noHostRoot: true}
	cfg := vmm.Config{MemoryMiB: 256}
	if err := g.prepare(&cfg); err != nil {
		t.Fatal(err)
	}
	files := newcFiles(t, cfg.Initrd)
	self, _ := os.ReadFile(dyn)
	if !bytes.Equal(files["init"], self) {
		t.Fatal("/init is not the executable")
	}
	var loader, libc bool
	for name, body := range files {
		if strings.Contains(name, "ld-linux") && len(body) > 0 {
			loader = true
		}
		if strings.HasSuffix(name, "/libc.so.6") && bytes.HasPrefix(body, []byte("\x7fELF")) {
			libc = true
		}
	}
	if !loader || !libc {
		t.Fatalf("archive lacks the loader (%v) or libc (%v)", loader, libc)
	}
}

// dynamicExe returns a dynamically linked executable of this machine: a
// distribution's /bin/ls, or, in the nested test host (whose busybox is
// static), the iproute2 ip its tools bring with their libraries.
func dynamicExe(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/ls", "/usr/bin/ls", "/usr/local/bin/ip", "/usr/bin/env", "/sbin/ip", "/usr/sbin/ip"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			dynamic = dynamic || prog.Type == elf.PT_INTERP
		}
		f.Close()
		if dynamic {
			return p
		}
	}
	t.Skip("no dynamically linked executable here")
	return ""
}
