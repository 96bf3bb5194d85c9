package vhostuser

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/transport"
)

// signalSession is a session whose ring 0 has call fd fd.
func signalSession(tb testing.TB, fd int) *activation {
	dev := newTestDevice(tb)
	s, err := newSession(dev, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		tb.Fatal(err)
	}
	s.rings[0].call.Store(int64(fd))
	return &activation{s: s}
}

func newTestDevice(tb testing.TB) *testDevice { return &testDevice{sizes: []uint16{256, 256}} }

func TestSignal(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	a := signalSession(t, efd)
	if err := a.Signal(0); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	if n, err := unix.Read(efd, b[:]); n != 8 || err != nil || b[0] != 1 {
		t.Fatalf("eventfd read %d %x %v", n, b, err)
	}
	if err := a.Signal(1); err != nil { // no call fd: the frontend polls
		t.Fatal(err)
	}
	if err := a.Signal(2); err != transport.ErrQueueIndex {
		t.Fatalf("out of range: %v", err)
	}
	if err := a.SignalConfig(); err != errNoChannel {
		t.Fatalf("SignalConfig without a channel: %v", err)
	}
	if n := testing.AllocsPerRun(1000, func() { a.Signal(0) }); n != 0 {
		t.Fatalf("%v allocations per Signal", n)
	}
	a.dead.Store(true)
	if err := a.Signal(0); err != transport.ErrInactive {
		t.Fatalf("after reset: %v", err)
	}
}

// TestSignalFullPipe: a pipe the frontend does not drain fills up; Signal
// then reports success (a notification is pending) and never blocks.
func TestSignalFullPipe(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	unix.SetNonblock(p[1], true)
	a := signalSession(t, p[1])
	for range 100000 / 8 {
		if err := a.Signal(0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConfigChangeSocketMadeBlocking: a backend channel socket whose
// frontend stopped reading it and cleared the O_NONBLOCK the session set
// (the flag belongs to the open file the frontend shares) fills up; the
// next config-change message must fail at once (EAGAIN), not block the
// device's goroutine that sends it under the channel's lock.
func TestConfigChangeSocketMadeBlocking(t *testing.T) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	fd, err := unix.Dup(sp[1])
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(sp[1])
	unix.SetNonblock(fd, true) // as takeNotifyFD does
	a := signalSession(t, -1)
	a.s.backend.set(newNotifyFD(fd, true))
	defer a.s.backend.close()
	for a.SignalConfig() == nil {
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.SignalConfig() }()
	select {
	case err := <-done:
		if err != unix.EAGAIN {
			t.Fatalf("config change on a full channel: %v, want EAGAIN", err)
		}
	case <-time.After(5 * time.Second):
		var junk [4096]byte
		for { // unblock it so the test can end
			if _, _, err := unix.Recvfrom(sp[0], junk[:], unix.MSG_DONTWAIT); err != nil {
				break
			}
		}
		t.Fatal("the config change blocked on the full channel")
	}
}

func benchSignal(b *testing.B, fd int) {
	a := signalSession(b, fd)
	b.ReportAllocs()
	for b.Loop() {
		a.Signal(0)
	}
}

// BenchmarkSignalEventfd: the interrupt path with a QEMU-style eventfd.
func BenchmarkSignalEventfd(b *testing.B) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(efd)
	benchSignal(b, efd)
}

// BenchmarkSignalPipe: the interrupt path with UML's pipe, drained by a
// reader as UML's interrupt handler does.
func BenchmarkSignalPipe(b *testing.B) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		b.Fatal(err)
	}
	unix.SetNonblock(p[1], true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf [4096]byte
		for {
			if n, err := unix.Read(p[0], buf[:]); n <= 0 || err != nil {
				return
			}
		}
	}()
	benchSignal(b, p[1])
	unix.Close(p[1])
	<-done
	unix.Close(p[0])
}
