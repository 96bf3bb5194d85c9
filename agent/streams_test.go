package agent

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFinishWaitsForABlockedDevice: output the command wrote before it
// exited reaches the device even when the host takes longer than the
// drain to accept it (flint run -- dmesg | less: the reader is slow, the
// guest's write blocks). Before, finish gave up after the drain and closed
// the device under the relay: the output's tail was lost.
func TestFinishWaitsForABlockedDevice(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "out")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const size = 100_000 // more than the FIFO holds, less than it and the relay's pipe
	s := &Spec{Argv: []string{"head", "-c", "100000", "/dev/zero"}, Env: []string{"PATH=/usr/bin:/bin"}, Stdout: fifo}
	st := runToExit(t, s)
	finished := make(chan error, 1)
	go func() { finished <- st.finish(200 * time.Millisecond) }()
	time.Sleep(600 * time.Millisecond) // the host is busy elsewhere
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != size {
		t.Errorf("the device got %d bytes (%v), want %d", n, err, size)
	}
	if err := <-finished; err != nil {
		t.Errorf("finish: %v", err)
	}
}

// TestFinishBoundedByIdleRelay: a background process that keeps the
// output open without writing still lets finish return after the drain.
func TestFinishBoundedByIdleRelay(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Spec{Argv: []string{"sh", "-c", "echo hi; sleep 5 & exit 0"}, Env: []string{"PATH=/usr/bin:/bin"}, Stdout: out}
	st := runToExit(t, s)
	start := time.Now()
	st.finish(100 * time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("finish took %v with an idle relay, want about the drain", d)
	}
	if b, _ := os.ReadFile(out); string(b) != "hi\n" {
		t.Errorf("stdout %q", b)
	}
}

// runToExit runs s's command until it exited, as RunCommand does, and
// returns its streams, not yet finished.
func runToExit(t *testing.T, s *Spec) *streams {
	t.Helper()
	cmd, st, err := Command(s)
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Start()
	st.started()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return st
}
