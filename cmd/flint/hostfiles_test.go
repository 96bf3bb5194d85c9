package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm/vmmtest"
)

func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// promptly runs fn and fails t if it does not return within a few
// seconds (opening a FIFO with no writer blocks forever).
func promptly(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5 s", what)
	}
}

// TestInputFIFOs (issue 13 finding 6): a FIFO given as the kernel, initrd
// or config file is refused at once, naming it, instead of an open that
// never returns.
func TestInputFIFOs(t *testing.T) {
	good := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	fifo := mkfifo(t)
	cfgFIFO := configFile(t, `{"boot-source": {"kernel_image_path": "`+fifo+`"}}`)
	driveFIFO := configFile(t, `{"boot-source": {"kernel_image_path": "`+good+`"}, "drives": [{"drive_id": "rootfs", "path_on_host": "`+fifo+`", "is_root_device": true}]}`)
	promptly(t, "drive FIFO", func() {
		wantUsageError(t, []string{"run", "--config", driveFIFO}, "drives[0].path_on_host: "+fifo+" is a FIFO, not a regular file or block device")
	})
	for _, args := range [][]string{
		{"run", "--kernel", fifo},
		{"run", "--kernel", good, "--initrd", fifo},
		{"run", "--config", fifo},
		{"run", "--config", cfgFIFO},
	} {
		promptly(t, strings.Join(args, " "), func() { wantUsageError(t, args, "a FIFO, not a regular file") })
	}
}

// TestOutputFiles (issue 13 finding 6): log_path is created 0600, never
// opened through a symbolic link, and a FIFO without a reader is refused
// at once; --console-limit sets the console's cap.
func TestOutputFiles(t *testing.T) {
	dir := t.TempDir()
	old := unix.Umask(0)
	defer unix.Umask(old)
	log := filepath.Join(dir, "flint.log")
	_, lf, err := newLogger(&configs.Logger{LogPath: log}, "", "--config x")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(log)
	lf.Close()
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file %v (%v), want mode 0600", fi, err)
	}
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(victim, link)
	if _, _, err := newLogger(&configs.Logger{LogPath: link}, "", "--config x"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("log_path through a link: %v", err)
	}
	fifo := mkfifo(t)
	promptly(t, "log_path FIFO", func() {
		if _, _, err := newLogger(&configs.Logger{LogPath: fifo}, "", "--config x"); err == nil || !strings.Contains(err.Error(), "no reader") {
			t.Errorf("log_path FIFO without a reader: %v", err)
		}
	})

	good := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	for _, tc := range []struct {
		arg  string
		want int64
	}{{"", 0}, {"0", -1}, {"2", 2 << 20}} {
		args := []string{"run", "--kernel", good, "--console", "none"}
		if tc.arg != "" {
			args = append(args, "--console-limit", tc.arg)
		}
		code, _, stderr, cfg := runArgs(t, args...)
		want := tc.want
		if want == 0 {
			want = 64 << 20
		}
		if code != 0 || cfg == nil || cfg.ConsoleLimit != want {
			t.Fatalf("--console-limit %q: code %d (%s), limit %v, want %d", tc.arg, code, stderr, cfg, want)
		}
	}
	wantUsageError(t, []string{"run", "--kernel", good, "--console-limit", "-1"}, "--console-limit -1")
}

// TestAPIKernelFIFO (issue 13 finding 6): in API mode, InstanceStart with
// a FIFO as the kernel answers 400 at once, and the API keeps answering
// (the build runs under the API server's lock: a blocked open there
// would hang every later request).
func TestAPIKernelFIFO(t *testing.T) {
	fifo := mkfifo(t)
	sock, code, _, _, stderr := apiApp(t, "--console", "none")
	c := api.Client(sock)
	c.Timeout = 5 * time.Second
	// PUT /boot-source checks the file at once (issue 14).
	if st, out := call(t, c, "PUT", "/boot-source", `{"kernel_image_path": "`+fifo+`"}`); st != 400 || !strings.Contains(out, "a FIFO, not a regular file") {
		t.Fatalf("PUT /boot-source with a FIFO kernel: %d %s", st, out)
	}
	// A kernel that becomes a FIFO after its PUT: InstanceStart answers
	// 400 at once.
	k := writeFile(t, "bzImage", nil)
	if st, out := call(t, c, "PUT", "/boot-source", `{"kernel_image_path": "`+k+`"}`); st != 204 {
		t.Fatalf("PUT /boot-source: %d %s", st, out)
	}
	if err := os.Remove(k); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(k, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, out := call(t, c, "PUT", "/actions", `{"action_type": "InstanceStart"}`); st != 400 || !strings.Contains(out, "a FIFO, not a regular file") {
		t.Fatalf("InstanceStart with a FIFO kernel: %d %s", st, out)
	}
	if st, out := call(t, c, "GET", "/", ""); st != 200 || !strings.Contains(out, `"state":"Not started"`) {
		t.Fatalf("GET / after: %d %s", st, out)
	}
	select {
	case got := <-code:
		t.Fatalf("flint exited (%d): %s", got, stderr)
	default:
	}
}
