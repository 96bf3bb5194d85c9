package agent

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestSetupEarlyMounts: the guest gets /dev/pts and /dev/shm (both were
// missing: openpty failed, and so did shm_open and sem_open, which
// Python's multiprocessing needs) after /dev itself, and the kernel's own
// filesystems where the kernel has their directory. An optional one that
// fails is logged and skipped; a required one fails the step, named.
func TestSetupEarlyMounts(t *testing.T) {
	var got []string
	mount := func(m Mount) error {
		got = append(got, m.FSType+" "+m.Target+" "+strings.Join(m.Options, ","))
		switch m.FSType {
		case "devpts", "bpf":
			return syscall.ENODEV
		}
		return nil
	}
	noBPF := func(p string) bool { return p != "/sys/fs/bpf" }
	var log bytes.Buffer
	if err := setupEarly(mount, noBPF, t.TempDir(), &log); err != nil {
		t.Fatal(err)
	}
	targets := make([]string, len(got))
	for i, g := range got {
		targets[i] = strings.Fields(g)[1]
	}
	want := []string{"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/tmp", "/run",
		"/sys/fs/cgroup", "/sys/kernel/debug", "/sys/kernel/tracing"}
	if !slices.Equal(targets, want) {
		t.Errorf("mounted %q, want %q (bpf's directory is missing: not mounted)", targets, want)
	}
	if !slices.Contains(got, "tmpfs /dev/shm nosuid,nodev,mode=1777") {
		t.Errorf("/dev/shm is not a tmpfs everyone may write: %q", got)
	}
	if !strings.Contains(log.String(), "flint-agent: devpts on /dev/pts: ") || strings.Count(log.String(), "\n") != 1 {
		t.Errorf("log %q, want one line for the failed devpts", log.String())
	}

	failShm := func(m Mount) error {
		if m.Target == "/dev/shm" {
			return syscall.ENOSPC
		}
		return nil
	}
	err := setupEarly(failShm, noBPF, t.TempDir(), &log)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "tmpfs on /dev/shm") {
		t.Errorf("failed /dev/shm: %v, want an error naming it", err)
	}
}

// TestSetupEarlyDevLinks: /dev/stderr and its kin lead to the process's
// own descriptors. devtmpfs has none of them: `echo x >/dev/stderr` in
// dash or busybox sh created a regular file in /dev, and the command's
// stderr never got the line.
func TestSetupEarlyDevLinks(t *testing.T) {
	dev := t.TempDir()
	if err := setupEarly(func(Mount) error { return nil }, func(string) bool { return true }, dev, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	// Again, over the links already there (EEXIST is fine).
	if err := setupEarly(func(Mount) error { return nil }, func(string) bool { return true }, dev, &bytes.Buffer{}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if got, err := os.Readlink(filepath.Join(dev, name)); err != nil || got != target {
			t.Errorf("%s/%s: %q %v, want a link to %s", dev, name, got, err, target)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("sh", "-c", `echo to-stderr >"$1/stderr"; echo to-stdout >"$1/stdout"; cat "$1/stdin"`, "sh", dev)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader("from-stdin\n"), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "to-stdout\nfrom-stdin\n" || stderr.String() != "to-stderr\n" {
		t.Errorf("through the links: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

// TestNameGuest: a guest the kernel left "(none)" is named guestHostname
// (hostname and uname -n in the guest said "(none)"); a name from the
// kernel's command line (hostname=) is kept.
func TestNameGuest(t *testing.T) {
	for _, tc := range []struct{ cur, want string }{{"(none)\n", guestHostname}, {"box\n", ""}} {
		var set string
		err := nameGuest(func() (string, error) { return tc.cur, nil }, func(n string) error { set = n; return nil })
		if err != nil || set != tc.want {
			t.Errorf("kernel's name %q: set %q (%v), want %q", tc.cur, set, err, tc.want)
		}
	}
	if err := nameGuest(func() (string, error) { return "", syscall.ENOENT }, nil); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unreadable name: %v", err)
	}
}
