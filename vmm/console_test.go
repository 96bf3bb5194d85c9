package vmm

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/vmm/vmmtest"
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

// TestOutputFileRemovedUnlessUsed: an output file that OpenOutput created
// is removed by Close while it is empty and not kept (a launch that failed
// before the guest started); a written or kept one stays, and so does any
// file that was there before, a FIFO among them, and whatever the path
// names once the file was replaced.
func TestOutputFileRemovedUnlessUsed(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) (*OutputFile, string) {
		t.Helper()
		p := filepath.Join(dir, name)
		f, err := OpenOutput(p)
		if err != nil {
			t.Fatal(err)
		}
		return f, p
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }

	f, p := open("new")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created %v (%v), want mode 0600", fi, err)
	}
	f.Close()
	if exists(p) {
		t.Error("an unused file this run created is left behind")
	}
	f, p = open("written")
	f.WriteString("x")
	f.Close()
	if !exists(p) {
		t.Error("a written file was removed")
	}
	f, p = open("kept")
	f.Keep()
	f.Close()
	if !exists(p) {
		t.Error("a kept file was removed")
	}
	if err := os.WriteFile(filepath.Join(dir, "old"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, p = open("old")
	f.Close()
	if !exists(p) {
		t.Error("a file that existed before was removed")
	}
	fifo := filepath.Join(dir, "fifo")
	unix.Mkfifo(fifo, 0o600)
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, p = open("fifo")
	f.Close()
	if !exists(p) {
		t.Error("a FIFO was removed")
	}
	f, p = open("replaced")
	os.Remove(p)
	os.WriteFile(p, nil, 0o600)
	f.Close()
	if !exists(p) {
		t.Error("the file that replaced the created one was removed")
	}
	// Relative paths name the file where it was opened.
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	f, err = OpenOutput("relative")
	os.Chdir(wd)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if exists(filepath.Join(dir, "relative")) {
		t.Error("an unused file opened by a relative path is left behind")
	}
}

// TestFailedNewRemovesItsFiles: a VM that fails to build leaves no empty
// metrics or console file behind, nor a caller's output file (the log);
// a file there before stays.
func TestFailedNewRemovesItsFiles(t *testing.T) {
	dir := t.TempDir()
	metrics, con, log, old := filepath.Join(dir, "metrics"), filepath.Join(dir, "console"), filepath.Join(dir, "log"), filepath.Join(dir, "old")
	os.WriteFile(old, nil, 0o600)
	lf, err := OpenOutput(log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64, Console: ConsoleSpec("file:" + con),
		MetricsPath: metrics, Outputs: []*OutputFile{lf}}
	fail := []struct {
		name string
		mod  func(*Config)
		kvm  bool
	}{
		// Before the console is opened (the metrics file is).
		{"no /dev/kvm", func(c *Config) { c.KVMPath = filepath.Join(dir, "no-kvm") }, false},
		// After both: a drive's image is opened as the devices are added.
		{"missing drive", func(c *Config) { c.Drives = []DriveConfig{{ID: "rootfs", Path: filepath.Join(dir, "no-image")}} }, true},
		{"old metrics file", func(c *Config) { c.KVMPath, c.MetricsPath = filepath.Join(dir, "no-kvm"), old }, false},
	}
	for _, tc := range fail {
		if tc.kvm {
			needKVM(t)
		}
		c := cfg
		tc.mod(&c)
		if _, err := New(c); err == nil {
			t.Fatalf("%s: New succeeded", tc.name)
		}
		for _, p := range []string{metrics, con} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s: %s left behind", tc.name, filepath.Base(p))
			}
		}
		if _, err := os.Lstat(old); err != nil {
			t.Errorf("%s: the old file was removed", tc.name)
		}
	}
	lf.Close()
	if _, err := os.Lstat(log); err == nil {
		t.Error("the caller's log file is left behind")
	}
	// A VM that ran keeps them, empty or not.
	lf, err = OpenOutput(log)
	if err != nil {
		t.Fatal(err)
	}
	bootTiny(t, vmmtest.PowerOffViaACPI, func(c *Config) {
		c.Console, c.MetricsPath, c.Outputs = ConsoleSpec("file:"+con), metrics, []*OutputFile{lf}
	})
	lf.Close()
	for _, p := range []string{metrics, con, log} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("after a run: %v", err)
		}
	}
}

// openPTY opens a pseudo-terminal's slave (the user's terminal) and its
// master; the test skips where there is none.
func openPTY(t *testing.T) (slave *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("the pseudo-terminal's number: %v", err)
	}
	if slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		t.Skipf("opening the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return slave
}

// TestTerminalBackBeforeTheFlushWait: once the guest has stopped, its
// terminal leaves raw mode before Run waits for a stalled reader of its
// output, so the user's ^C is a SIGINT again and ends the wait. It used
// to stay raw until Close: ^C went as a byte to input nobody read, and
// flint could not be interrupted from its terminal.
func TestTerminalBackBeforeTheFlushWait(t *testing.T) {
	needKVM(t)
	tty := openPTY(t)
	r, w, _ := stalledStdio(t)
	const n = 80 << 10 // past the pipe's buffer: some wait in the queue at the power-off
	m, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Concat(repOutsb(n), vmmtest.PowerOffViaACPI)), CPUs: 1, MemoryMiB: 64,
		Console: "stdio", Stdin: tty, Stdout: w, HandleSignals: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lflag := func() uint32 {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Lflag
	}
	if lflag()&unix.ISIG != 0 {
		m.Close()
		t.Fatal("the terminal is not raw after New")
	}
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	cooked := false
	for end := time.Now().Add(20 * time.Second); !cooked && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		cooked = lflag()&unix.ISIG != 0
	}
	select {
	case res := <-done:
		t.Fatalf("Run returned (%v) while nobody read its output", res.Reason)
	default:
	}
	go io.Copy(io.Discard, r) // let Run end
	res := <-done
	m.Close()
	if !cooked {
		t.Fatal("the terminal was still raw while Run waited for the console's reader")
	}
	if res.Reason != stopPowerOff {
		t.Fatalf("stopped with %v (%v)", res.Reason, res.Err)
	}
}
