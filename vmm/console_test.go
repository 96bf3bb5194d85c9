package vmm

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestConsoleFile (issue 13 finding 6): a file: console is created 0600,
// never through a symbolic link, refuses a FIFO without a reader at once,
// and stops at its size cap with one log line.
func TestConsoleFile(t *testing.T) {
	dir := t.TempDir()
	old := unix.Umask(0)
	defer unix.Umask(old)
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	p := filepath.Join(dir, "console.log")
	c, err := openConsole(ConsoleSpec("file:"+p), 10, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n, err := c.out.Write([]byte("0123456")); n != 7 || err != nil {
			t.Fatalf("Write = %d, %v: the guest's console must not see the cap", n, err)
		}
	}
	c.Close()
	b, _ := os.ReadFile(p)
	if string(b) != "0123456012" {
		t.Fatalf("console file holds %q, want the first 10 bytes", b)
	}
	if n := strings.Count(logb.String(), "reached its size limit"); n != 1 {
		t.Fatalf("%d cap messages, want 1: %s", n, logb.String())
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("console file %v (%v), want mode 0600", fi, err)
	}

	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "victim"), link)
	if _, err := openConsole(ConsoleSpec("file:"+link), 0, log, nil, nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("console through a link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "victim")); !os.IsNotExist(err) {
		t.Fatal("created the link's target")
	}
	fifo := filepath.Join(dir, "fifo")
	unix.Mkfifo(fifo, 0o600)
	if _, err := openConsole(ConsoleSpec("file:"+fifo), 0, log, nil, nil); err == nil || !strings.Contains(err.Error(), "no reader") {
		t.Fatalf("console FIFO without a reader: %v", err)
	}
}
