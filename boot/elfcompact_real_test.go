package boot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/internal/vmlinux"
)

// debianVmlinux returns the Debian cloud kernel's vmlinux: the one
// tests/elf_test.go caches in .cache/vmlinux, else the one inside the
// cached bzImage, and its release; the test is skipped without either.
func debianVmlinux(t *testing.T) ([]byte, string) {
	t.Helper()
	cache := filepath.Join("..", ".cache")
	kver, err := os.ReadFile(filepath.Join(cache, "kernels", "cloud", "kver"))
	if err != nil {
		t.Skipf("no cached cloud kernel in %s/kernels/cloud (make setup fetches it)", cache)
	}
	if b, err := os.ReadFile(filepath.Join(cache, "vmlinux", "vmlinux-cloud")); err == nil && boot.IsELF(b) {
		return b, strings.TrimSpace(string(kver))
	}
	bz, err := os.ReadFile(filepath.Join(cache, "kernels", "cloud", "vmlinuz"))
	if err != nil {
		t.Skipf("no cached cloud kernel in %s/kernels/cloud (make setup fetches it)", cache)
	}
	elf, err := vmlinux.FromBzImage(bz)
	if err != nil {
		t.Fatal(err)
	}
	return elf, strings.TrimSpace(string(kver))
}

// TestCompactELFDebian compacts the Debian cloud vmlinux grown to 1.5 GiB
// by a sparse tail, as debug sections would grow it (the file is sparse:
// no disk is used): the compact image has the original's segments, entry
// points, banner release and boot placement, and is read in well under a
// second.
func TestCompactELFDebian(t *testing.T) {
	orig, kver := debianVmlinux(t)
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 3<<29); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	img, err := boot.ReadKernel(f, st.Size(), 512<<20)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB vmlinux (%d MiB of it the kernel's file) read as a %d-byte compact image in %v", st.Size()>>20, len(orig)>>20, len(img), took)
	ko, err := boot.ParseELF(orig)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := boot.ParseELF(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(img) >= len(orig) || len(kc.Segments) != len(ko.Segments) {
		t.Fatalf("compact image %d bytes with %d segments; the file %d bytes with %d", len(img), len(kc.Segments), len(orig), len(ko.Segments))
	}
	for i, s := range ko.Segments {
		c := kc.Segments[i]
		if c.Paddr != s.Paddr || c.Memsz != s.Memsz || !bytes.Equal(img[c.Offset:c.Offset+c.Filesz], orig[s.Offset:s.Offset+s.Filesz]) {
			t.Fatalf("segment %d: compact %+v, original %+v (or their bytes differ)", i, c, s)
		}
	}
	if kc.Entry64 != ko.Entry64 || kc.PVHEntry != ko.PVHEntry || !kc.HasPVH {
		t.Errorf("entries: compact %#x/%#x (PVH %v), original %#x/%#x", kc.Entry64, kc.PVHEntry, kc.HasPVH, ko.Entry64, ko.PVHEntry)
	}
	if r, err := boot.ImageRelease(img); err != nil || r != kver {
		t.Errorf("compact image's release %q, %v; want %q", r, err, kver)
	}
	if err := boot.CheckKernel(img, 256<<20, boot.EntryAuto); err != nil {
		t.Error(err)
	}
}
