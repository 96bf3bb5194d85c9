package virtio

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kickPipe returns a pipe's read end as an *os.File (non-blocking or not)
// and its write end's fd.
func kickPipe(t *testing.T, nonblocking bool) (*os.File, int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if nonblocking {
		if err := unix.SetNonblock(p[0], true); err != nil {
			t.Fatal(err)
		}
	}
	r := os.NewFile(uintptr(p[0]), "kick")
	t.Cleanup(func() { r.Close(); unix.Close(p[1]) })
	return r, p[1]
}

func kickOnce(t *testing.T, w int) {
	t.Helper()
	if _, err := unix.Write(w, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
}

// TestKickReaderRaw: a non-blocking kick file is read raw; a wait returns
// after a kick, consumes every kick queued, parks until the next, and
// returns a timeout at the read deadline and EOF when the writer closes.
func TestKickReaderRaw(t *testing.T) {
	r, w := kickPipe(t, true)
	var k kickReader
	k.bind(r)
	if k.rc == nil {
		t.Fatal("a non-blocking kick file is not read raw")
	}
	kickOnce(t, w)
	kickOnce(t, w)
	if err := k.wait(); err != nil {
		t.Fatalf("wait after two kicks: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- k.wait() }()
	select {
	case err := <-done:
		t.Fatalf("wait returned (%v) with no kick queued: the two kicks were not both consumed", err)
	case <-time.After(50 * time.Millisecond):
	}
	kickOnce(t, w)
	if err := <-done; err != nil {
		t.Fatalf("parked wait woken by a kick: %v", err)
	}
	r.SetReadDeadline(time.Now().Add(-time.Second))
	if err := k.wait(); !os.IsTimeout(err) {
		t.Fatalf("wait past the deadline: %v, want a timeout (how Reset wakes an engine)", err)
	}
	r.SetReadDeadline(time.Time{})
	unix.Close(w)
	if err := k.wait(); err != io.EOF {
		t.Fatalf("wait on a pipe whose writer closed: %v, want EOF", err)
	}
}

// TestKickReaderBlocking: a blocking kick file must never be read raw (a
// raw read(2) that blocks would hold its P); it is read with os.File.Read.
func TestKickReaderBlocking(t *testing.T) {
	r, w := kickPipe(t, false)
	var k kickReader
	k.bind(r)
	if k.rc != nil {
		t.Fatal("a blocking kick file is read raw")
	}
	kickOnce(t, w)
	if err := k.wait(); err != nil {
		t.Fatal(err)
	}
	k.bind(nil)
	if k.f != nil || k.rc != nil {
		t.Error("bind(nil) kept the file")
	}
}

func TestKickReaderNoAllocs(t *testing.T) {
	r, w := kickPipe(t, true)
	var k kickReader
	k.bind(r)
	kick := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if n := testing.AllocsPerRun(200, func() {
		syscall.Write(w, kick)
		if err := k.wait(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per kick, want 0", n)
	}
}
