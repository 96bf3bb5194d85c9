package hostfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// within fails t if fn does not return within a few seconds: the point
// of the package is that nothing here blocks.
func within(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("blocked")
		return nil
	}
}

func fifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInputFIFO(t *testing.T) {
	p := fifo(t)
	err := within(t, func() error { _, err := ReadInput(p, 1<<20); return err })
	if err == nil || !strings.Contains(err.Error(), "a FIFO, not a regular file") {
		t.Fatalf("ReadInput(FIFO) = %v", err)
	}
	err = within(t, func() error { _, err := OpenInput(p, os.O_RDWR, Regular|BlockDevice); return err })
	if err == nil || !strings.Contains(err.Error(), "not a regular file or block device") {
		t.Fatalf("OpenInput(FIFO) = %v", err)
	}
}

func TestInputKinds(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadInput(dir, 1<<20); err == nil || !strings.Contains(err.Error(), "a directory") {
		t.Fatalf("directory: %v", err)
	}
	if _, err := ReadInput(os.DevNull, 1<<20); err == nil || !strings.Contains(err.Error(), "a character device") {
		t.Fatalf("/dev/null: %v", err)
	}
	if _, err := ReadInput("", 1); err == nil {
		t.Fatal("empty path accepted")
	}
	p := filepath.Join(dir, "kernel")
	os.WriteFile(p, []byte("hello"), 0o600)
	link := filepath.Join(dir, "vmlinuz")
	os.Symlink(p, link)
	b, err := ReadInput(link, 5) // inputs follow links
	if err != nil || string(b) != "hello" {
		t.Fatalf("ReadInput = %q, %v", b, err)
	}
	var tl *TooLargeError
	if _, err := ReadInput(p, 4); err == nil || !errors.As(err, &tl) {
		t.Fatalf("over the limit: %v", err)
	}
	f, err := OpenInput(p, os.O_RDWR, Regular)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if nb, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); nb&unix.O_NONBLOCK != 0 {
		t.Fatal("input left non-blocking")
	}
	if _, err := OpenInput(p, os.O_WRONLY, Regular); err == nil {
		t.Fatal("O_WRONLY accepted")
	}
}

func TestOutput(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	old := unix.Umask(0)
	defer unix.Umask(old)
	f, err := OpenOutput(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("a"))
	f.Close()
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created with %v (%v), want 0600 whatever the umask", fi.Mode(), err)
	}
	f, _ = OpenOutput(p) // appends
	f.Write([]byte("b"))
	f.Close()
	if b, _ := os.ReadFile(p); string(b) != "ab" {
		t.Fatalf("file holds %q", b)
	}

	target := filepath.Join(dir, "victim")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if _, err := OpenOutput(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("link: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatal("wrote through the link")
	}
	if _, err := OpenOutput(dir); err == nil {
		t.Fatal("directory accepted")
	}
	if _, err := OpenOutput(os.DevNull); err == nil || !strings.Contains(err.Error(), "a character device") {
		t.Fatalf("/dev/null: %v", err)
	}
}

func TestOutputFIFO(t *testing.T) {
	p := fifo(t)
	err := within(t, func() error { _, err := OpenOutput(p); return err })
	if err == nil || !strings.Contains(err.Error(), "FIFO with no reader") {
		t.Fatalf("FIFO without reader: %v", err)
	}
	r, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := OpenOutput(p)
	if err != nil {
		t.Fatalf("FIFO with a reader: %v", err)
	}
	defer w.Close()
	w.Write([]byte("log"))
	var b [8]byte
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(b[:]); err != nil || string(b[:n]) != "log" {
		t.Fatalf("read %q, %v", b[:n], err)
	}
}

func TestCap(t *testing.T) {
	var buf bytes.Buffer
	calls := 0
	w := Cap(&buf, 10, func() { calls++ })
	for _, s := range []string{"0123", "4567", "89ab", "cdef"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if buf.String() != "0123456789" || calls != 1 {
		t.Fatalf("wrote %q, onFull called %d times", buf.String(), calls)
	}
	if Cap(&buf, 0, nil) != &buf {
		t.Fatal("limit 0 is not unlimited")
	}
}

func TestListenMode(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o600, 0o660} {
		p := filepath.Join(dir, "s"+mode.String())
		old := unix.Umask(0)
		l, err := Listen(p, mode)
		unix.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode().Perm() != mode || fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("socket %v (%v), want %v", fi.Mode(), err, mode)
		}
		if _, err := Listen(p, mode); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("live socket: %v", err)
		}
		l.Close()
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("socket left after Close: %v", err)
		}
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file, 0o600); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if _, err := Listen(filepath.Join(dir, "x"), os.ModeSetuid|0o600); err == nil {
		t.Fatal("setuid mode accepted")
	}
}

// TestReadInputAt: the reader gets the file and its size and takes what
// it wants; its error comes back as it is.
func TestReadInputAt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, []byte("ELF and debug info"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := ReadInputAt(p, func(r io.ReaderAt, size int64) ([]byte, error) {
		out := make([]byte, 3)
		_, err := r.ReadAt(out, size-4)
		return out, err
	})
	if err != nil || string(b) != "inf" {
		t.Fatalf("ReadInputAt = %q, %v", b, err)
	}
	bad := errors.New("malformed")
	if _, err := ReadInputAt(p, func(io.ReaderAt, int64) ([]byte, error) { return nil, bad }); err != bad {
		t.Fatalf("read's error came back as %v", err)
	}
}
