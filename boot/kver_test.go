package boot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kverImage returns the start of a bzImage with setup_sects sects, boot
// protocol proto and the version string s at file offset ptr+0x200.
func kverImage(sects byte, proto uint16, ptr uint16, s string) []byte {
	n := int(sects)
	if n == 0 {
		n = 4 // what setup_sects 0 means
	}
	img := make([]byte, (n+1)*sectorSize)
	img[offSetupSects] = sects
	le.PutUint16(img[offBootFlag:], BootFlag)
	le.PutUint32(img[offHeaderMagic:], HeaderMagic)
	le.PutUint16(img[offVersion:], proto)
	le.PutUint16(img[offKernelVersion:], ptr)
	if ptr != 0 && int(ptr)+0x200 < len(img) {
		copy(img[int(ptr)+0x200:], s)
	}
	return img
}

func TestKernelReleaseCrafted(t *testing.T) {
	const debian = "6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)\x00"
	ok := kverImage(39, 0x020f, 0x42c0, debian)
	if r, err := KernelRelease(ok); err != nil || r != "6.1.0-57-cloud-amd64" {
		t.Fatalf("KernelRelease = %q, %v", r, err)
	}
	// Only the bytes up to the NUL are needed.
	if r, err := KernelRelease(ok[:0x42c0+0x200+len(debian)]); err != nil || r != "6.1.0-57-cloud-amd64" {
		t.Fatalf("image cut after the string: %q, %v", r, err)
	}
	// setup_sects 0 means 4; a release alone, without the rest.
	if r, err := KernelRelease(kverImage(0, 0x0200, 0x300, "5.10.0\x00")); err != nil || r != "5.10.0" {
		t.Errorf("setup_sects 0: %q, %v", r, err)
	}

	unterminated := kverImage(4, 0x020f, 0x300, "")
	for i := 0x500; i < len(unterminated); i++ {
		unterminated[i] = 'x'
	}
	notPE := kverImage(39, 0x020f, 0x42c0, debian)
	notPE[offBootFlag] = 0
	noHdrS := kverImage(39, 0x020f, 0x42c0, debian)
	noHdrS[offHeaderMagic] = 'h'
	cases := []struct {
		name  string
		image []byte
		want  error
	}{
		{"empty", nil, ErrKernelTruncated},
		{"boot sector only", ok[:0x200], ErrKernelTruncated},
		{"cut inside the string", ok[:0x42c0+0x200+5], ErrKernelTruncated},
		{"cut before the string", ok[:0x1000], ErrKernelTruncated},
		{"no boot flag", notPE, ErrNotBzImage},
		{"no HdrS", noHdrS, ErrNotBzImage},
		{"protocol 1.x", kverImage(4, 0x0105, 0x300, "6.1\x00"), ErrUnsupportedKernel},
		{"zero pointer", kverImage(4, 0x020f, 0, "6.1\x00"), ErrNoKernelVersion},
		{"pointer past setup", kverImage(4, 0x020f, 4*0x200, "6.1\x00"), ErrNoKernelVersion},
		{"no NUL in setup", unterminated, ErrNoKernelVersion},
		{"empty string", kverImage(4, 0x020f, 0x300, "\x00"), ErrNoKernelVersion},
		{"leading space", kverImage(4, 0x020f, 0x300, " 6.1\x00"), ErrNoKernelVersion},
		{"slash", kverImage(4, 0x020f, 0x300, "6.1/../../etc\x00"), ErrNoKernelVersion},
		{"dot-dot", kverImage(4, 0x020f, 0x300, ".. (x)\x00"), ErrNoKernelVersion},
		{"control byte", kverImage(4, 0x020f, 0x300, "6.1\x01x\x00"), ErrNoKernelVersion},
		{"too long", kverImage(4, 0x020f, 0x300, strings.Repeat("6", 65)+"\x00"), ErrNoKernelVersion},
	}
	for _, c := range cases {
		r, err := KernelRelease(c.image)
		if !errors.Is(err, c.want) || !errors.Is(err, ErrInvalidKernel) {
			t.Errorf("%s: KernelRelease = %q, %v; want %v", c.name, r, err, c.want)
		}
	}
}

// moduleRoot is the directory holding go.mod, found upwards from the test's
// working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for !fileExists(filepath.Join(dir, "go.mod")) {
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	return dir
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestKernelReleaseReal reads the release of the stock Debian kernels in the
// project's kernel cache (make setup fetches them) and compares it with the
// kver file written beside each.
func TestKernelReleaseReal(t *testing.T) {
	cache := filepath.Join(moduleRoot(t), ".cache", "kernels")
	for _, flavour := range []string{"cloud", "amd64"} {
		t.Run(flavour, func(t *testing.T) {
			kernel := filepath.Join(cache, flavour, "vmlinuz")
			want, err := os.ReadFile(filepath.Join(cache, flavour, "kver"))
			if err != nil || !fileExists(kernel) {
				t.Skipf("no cached %s kernel (%s and its kver file; make setup fetches them)", flavour, kernel)
			}
			got, err := ReadKernelRelease(kernel)
			if err != nil {
				t.Fatal(err)
			}
			if got != strings.TrimSpace(string(want)) {
				t.Errorf("ReadKernelRelease(%s) = %q, kver file says %q", kernel, got, want)
			}
		})
	}
}

func TestReadKernelReleaseErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadKernelRelease(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := ReadKernelRelease(empty); !errors.Is(err, ErrKernelTruncated) {
		t.Errorf("empty file: %v", err)
	}
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte(strings.Repeat("not a kernel\n", 100)), 0o644)
	if _, err := ReadKernelRelease(text); !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), text) {
		t.Errorf("text file: %v", err)
	}
	if _, err := ReadKernelRelease(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	// A FIFO nobody writes to is refused at once, not waited on.
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadKernelRelease(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "FIFO") {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		// Open the other end so the blocked reader returns.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-done
		t.Error("ReadKernelRelease blocked on a FIFO with no writer")
	}
}

// FuzzKernelRelease: no input panics, every error is an ErrInvalidKernel,
// and a release returned is always one plain, printable path element.
func FuzzKernelRelease(f *testing.F) {
	f.Add(kverImage(39, 0x020f, 0x42c0, "6.1.0-57-cloud-amd64 (x) #1\x00"))
	f.Add(kverImage(0, 0x0200, 0x300, "5.10.0\x00"))
	f.Add(kverImage(4, 0x020f, 0x300, "6.1/..\x00"))
	f.Add(kverImage(1, 0x020f, 0x1ff, ""))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, image []byte) {
		r, err := KernelRelease(image)
		if err != nil {
			if !errors.Is(err, ErrInvalidKernel) || r != "" {
				t.Fatalf("error %v (release %q) does not match ErrInvalidKernel", err, r)
			}
			return
		}
		if checkRelease(r) != nil || strings.ContainsAny(r, "/ \x00") || filepath.Base(r) != r {
			t.Fatalf("release %q is not one plain path element", r)
		}
	})
}
