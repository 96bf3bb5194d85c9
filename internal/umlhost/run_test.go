package umlhost

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRun runs a shell the way Run runs UML: the console is captured from
// stdout and stderr, in dir with TMPDIR=dir, and a failing exit status is
// no error.
func TestRun(t *testing.T) {
	t.Setenv(forceEnv, "0")
	dir := t.TempDir()
	out, err := Run(dir, 20*time.Second, "/bin/sh", "-c", `echo out; echo err >&2; echo "pwd=$(pwd) tmp=$TMPDIR"; exit 3`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"out\n", "err\n", "pwd=" + dir + " tmp=" + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("console %q lacks %q", out, want)
		}
	}
}

// TestRunTimeout: a guest that never ends (here a shell reading its
// console, with a child in the background) is killed, process group and
// all, and Run says so with the console so far.
func TestRunTimeout(t *testing.T) {
	t.Setenv(forceEnv, "0")
	start := time.Now()
	out, err := Run(t.TempDir(), 300*time.Millisecond, "/bin/sh", "-c", "echo started; sleep 60 & cat")
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(out, "started") {
		t.Fatalf("err %v, console %q", err, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run returned after %v", d)
	}
}

// TestInitramfsMissing: a module that is not there is ErrMissing (a test
// skips on it outside CI), as is a harness that is not installed.
func TestInitramfsMissing(t *testing.T) {
	_, err := Initramfs(t.TempDir(), "#!/bin/sh\n", "no/such/module.ko")
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(Binary); err != nil {
		return
	}
	p, err := Initramfs(t.TempDir(), "#!/bin/sh\n")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() < 1<<20 {
		t.Fatalf("initramfs %v %v", st, err)
	}
}
