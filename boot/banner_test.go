package boot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const debianBanner = "Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)\n\x00"

// bannerELF is the default fake vmlinux with s written at file offset off.
func bannerELF(off uint64, s string) []byte {
	f := defaultELF()
	b := f.bytes()
	copy(b[off:], s)
	return b
}

func TestELFKernelRelease(t *testing.T) {
	// In the first segment (text and .rodata), after decoys that are no
	// banner: a format string, a word not starting with a digit, a
	// release without " (" after it, one with a slash.
	decoys := "Linux version %s (x)\x00Linux version abc (x)\x00Linux version 6.1\x00Linux version 6/1 (x)\x00"
	for _, tc := range []struct {
		name string
		off  uint64
		s    string
	}{
		{"text", 0x1100, debianBanner},
		{"after decoys", 0x1100, decoys + debianBanner},
		{"second segment", 0x3010, debianBanner},
		{"segment end", 0x3800 - uint64(len("Linux version 6.1.0-57-cloud-amd64 (")), "Linux version 6.1.0-57-cloud-amd64 ("},
	} {
		r, err := ELFKernelRelease(bannerELF(tc.off, tc.s))
		if err != nil || r != "6.1.0-57-cloud-amd64" {
			t.Errorf("%s: %q, %v", tc.name, r, err)
		}
		if r2, err := ImageRelease(bannerELF(tc.off, tc.s)); r2 != r || err != nil {
			t.Errorf("%s: ImageRelease %q, %v", tc.name, r2, err)
		}
	}
	for _, tc := range []struct {
		name string
		img  []byte
		want error
	}{
		{"no banner", defaultELF().bytes(), ErrNoKernelVersion},
		{"only decoys", bannerELF(0x1100, decoys), ErrNoKernelVersion},
		// The notes segment is not PT_LOAD: a banner there is not the kernel's.
		{"outside the loadable segments", bannerELF(fakeNoteOff+0x100, debianBanner), ErrNoKernelVersion},
		{"cut after the release", bannerELF(0x3800-uint64(len("Linux version 6.1.0-57-cloud-amd64")), "Linux version 6.1.0-57-cloud-amd64"), ErrNoKernelVersion},
		{"a release too long", bannerELF(0x1100, "Linux version 6"+strings.Repeat("x", maxRelease)+" (x)"), ErrNoKernelVersion},
		{"too many candidates", bannerELF(0x1100, strings.Repeat("Linux version x ", maxBannerCandidates+1)+debianBanner), ErrNoKernelVersion},
		{"not ELF", []byte("MZ not an ELF"), ErrBadELF},
		{"truncated ELF", defaultELF().bytes()[:40], ErrKernelTruncated},
	} {
		r, err := ELFKernelRelease(tc.img)
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidKernel) || r != "" || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q, %v; want one line matching %v", tc.name, r, err, tc.want)
		}
	}
	// A bzImage still reads its setup header.
	if r, err := ImageRelease(kverImage(39, 0x020f, 0x42c0, "6.1.0-57-cloud-amd64 (x) #1\x00")); err != nil || r != "6.1.0-57-cloud-amd64" {
		t.Errorf("bzImage: %q, %v", r, err)
	}
}

func TestReadReleaseFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if r, err := ReadReleaseFile(write("ok", "6.13.0-rc1-00042-gdeadbeef\n")); err != nil || r != "6.13.0-rc1-00042-gdeadbeef" {
		t.Errorf("ok: %q, %v", r, err)
	}
	for name, s := range map[string]string{"empty": "", "two words": "6.1 x\n", "slash": "6.1/x\n", "dotdot": "..\n",
		"long": strings.Repeat("6", maxReleaseFile+1)} {
		p := write(name, s)
		r, err := ReadReleaseFile(p)
		if !errors.Is(err, ErrNoKernelVersion) || r != "" || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %q, %v", name, r, err)
		}
	}
	if _, err := ReadReleaseFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	// A FIFO (a hostile tree) is an error at once, not an open that waits
	// for a writer.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadReleaseFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), fifo) {
			t.Errorf("fifo: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadReleaseFile blocked on a FIFO")
	}
}

// FuzzELFKernelRelease: no input panics the banner search; a release it
// returns is one plain path element that the file's bytes hold as a banner.
func FuzzELFKernelRelease(f *testing.F) {
	f.Add(bannerELF(0x1100, debianBanner))
	f.Add(bannerELF(0x1100, "Linux version %s (x)\x00Linux version 6.1 (y)"))
	f.Add(bannerELF(0x37f0, "Linux version 6"))
	f.Add(defaultELF().bytes())
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, image []byte) {
		r, err := ELFKernelRelease(image)
		if err != nil {
			if !errors.Is(err, ErrInvalidKernel) || r != "" {
				t.Fatalf("error %v (release %q) does not match ErrInvalidKernel", err, r)
			}
			return
		}
		if checkRelease(r) != nil || filepath.Base(r) != r || !strings.Contains(string(image), "Linux version "+r+" (") {
			t.Fatalf("release %q is not a banner's plain path element", r)
		}
	})
}

// TestELFKernelReleaseSharedBytes: file bytes several PT_LOADs share are
// searched once. 40 segments mapping the first segment's bytes, with two
// decoys in them, do not count as 80 candidates (which ran past
// maxBannerCandidates before the banner in the last segment, and let a
// crafted ELF make the search read its file 64 times over).
func TestELFKernelReleaseSharedBytes(t *testing.T) {
	f := defaultELF()
	code, data := f.phdrs[0], f.phdrs[1]
	phdrs := []fakePhdr{code}
	for i := range 40 {
		c := code
		c.paddr, c.memsz = 32<<20+uint64(i)*0x2000, c.filesz
		phdrs = append(phdrs, c)
	}
	f.phdrs = append(phdrs, data)
	delete(f.at, fakeNoteOff)
	b := f.bytes()
	copy(b[0x1100:], "Linux version x (y)\x00Linux version x (y)\x00")
	copy(b[0x3010:], debianBanner)
	if r, err := ELFKernelRelease(b); err != nil || r != "6.1.0-57-cloud-amd64" {
		t.Errorf("%q, %v", r, err)
	}
}
