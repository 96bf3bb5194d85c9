package tap

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echoRX serves q the way virtio/netdev's RX engine does: TryReadv until
// EAGAIN, then WaitReadable; every frame read is written back. It returns
// when q's read deadline passes or q fails.
func echoRX(q *Queue, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 2048)
	rd, wr := [][]byte{buf}, [][]byte{nil}
	for {
		n, err := q.TryReadv(rd)
		switch err {
		case nil:
			wr[0] = buf[:n]
			if _, err := q.Writev(wr); err != nil {
				return
			}
		case unix.EAGAIN:
			if err := q.WaitReadable(); err != nil {
				return
			}
		default:
			return
		}
	}
}

// BenchmarkWaitReadable: one frame at a time to a goroutine that waits
// with TryReadv/WaitReadable (the RX engine's pattern) and echoes it back;
// every op is one wake-up of the waiter. Run under `perf stat -e
// 'syscalls:sys_enter_*'` with a fixed -benchtime Nx for system calls per
// wake-up.
func BenchmarkWaitReadable(b *testing.B) { benchWakeups(b, echoRX) }

// benchWakeups sends one frame at a time to a goroutine serving with
// echo and waits for it to come back.
func benchWakeups(b *testing.B, echo func(*Queue, chan<- struct{})) {
	a, c := socketpairQueues(b)
	done := make(chan struct{})
	go echo(c, done)
	frame := make([]byte, 64)
	wr := [][]byte{frame}
	buf := make([]byte, 2048)
	rd := [][]byte{buf}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Writev(wr); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Readv(rd); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.SetReadDeadline(time.Unix(1, 0))
	<-done
}

// The Wait calls ask the kernel once (a zero-timeout ppoll), after
// RawConn.Read or Write has forgotten the readiness the poller recorded,
// and not after the poller wakes them (see doReady). These tests fail if
// a wake-up is lost either way.

// sleepForPoller lets the scheduler's poller take the epoll edges raised
// so far while nothing waits on the file (it records them as readiness,
// which the next RawConn call forgets).
func sleepForPoller() { time.Sleep(5 * time.Millisecond) }

// waitWithin runs wait with the deadline set by setDeadline d from now,
// then clears the deadline.
func waitWithin(wait func() error, setDeadline func(time.Time) error, d time.Duration) error {
	setDeadline(time.Now().Add(d))
	defer setDeadline(time.Time{})
	return wait()
}

// TestWaitReadableFrameBeforeWait: a frame arrives after TryReadv
// returned EAGAIN and before WaitReadable (the RX engine publishes and
// signals the guest in between), and the poller takes its edge first:
// WaitReadable must still return at once.
func TestWaitReadableFrameBeforeWait(t *testing.T) {
	a, b := socketpairQueues(t)
	frameBeforeWait(t, b, func() error {
		_, err := a.Writev([][]byte{[]byte("frame")})
		return err
	})
}

// frameBeforeWait runs 20 rounds of: TryReadv on q until EAGAIN, send
// (a frame to q), let the poller take the edge, WaitReadable (which must
// return at once), TryReadv (which must read the frame).
func frameBeforeWait(t *testing.T, q *Queue, send func() error) {
	t.Helper()
	buf := make([]byte, 2048)
	for i := range 20 {
		for {
			if _, err := q.TryReadv([][]byte{buf}); err == unix.EAGAIN {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if err := send(); err != nil {
			t.Fatal(err)
		}
		sleepForPoller()
		if err := waitWithin(q.WaitReadable, q.SetReadDeadline, 2*time.Second); err != nil {
			t.Fatalf("round %d: WaitReadable with a frame queued = %v (a lost wake-up)", i, err)
		}
		if _, err := q.TryReadv([][]byte{buf}); err != nil {
			t.Fatalf("round %d: TryReadv after WaitReadable = %v", i, err)
		}
	}
}

// TestWaitReadableStaleWake: WaitReadable woken for a frame that someone
// else took returns nil (it makes no system call after the wake); the
// reader's TryReadv then sees EAGAIN, and the next WaitReadable parks
// until a new frame arrives, which wakes it.
func TestWaitReadableStaleWake(t *testing.T) {
	a, b := socketpairQueues(t)
	var fd int
	b.rc.Control(func(f uintptr) { fd = int(f) })
	buf := make([]byte, 64)
	done := make(chan error, 1)
	for i := range 10 {
		go func() { done <- b.WaitReadable() }()
		time.Sleep(5 * time.Millisecond)
		if _, err := a.Writev([][]byte{[]byte("frame")}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: WaitReadable = %v", i, err)
		}
		if _, err := unix.Read(fd, buf); err != nil { // another reader takes it
			t.Fatal(err)
		}
		if _, err := b.TryReadv([][]byte{buf}); err != unix.EAGAIN {
			t.Fatalf("round %d: TryReadv after the frame was taken = %v", i, err)
		}
		parkWithNothingToRead(t, i, b, done)
		if _, err := a.Writev([][]byte{[]byte("next")}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: WaitReadable = %v", i, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("round %d: a frame did not wake WaitReadable", i)
		}
		if _, err := b.TryReadv([][]byte{buf}); err != nil {
			t.Fatal(err)
		}
	}
}

// parkWithNothingToRead starts a WaitReadable on q with nothing queued
// and checks that it parks (see parks: after a stale wake the read
// still sees EAGAIN).
func parkWithNothingToRead(t *testing.T, round int, q *Queue, done chan error) {
	t.Helper()
	buf := make([]byte, 64)
	parks(t, fmt.Sprintf("round %d: WaitReadable with nothing to read", round), done, q.WaitReadable, func(err error) error {
		if err != nil {
			return err
		}
		if _, err := q.TryReadv([][]byte{buf}); err != unix.EAGAIN {
			return fmt.Errorf("TryReadv after a stale wake = %v", err)
		}
		return nil
	})
}

// parks runs wait on a new goroutine, which sends its result on done,
// and checks that it parks (has not returned within 20 ms). One early
// return is allowed, and must be a stale wake: when an earlier call
// found its frame (or room) by its own system call, the poller's edge
// for it was never consumed, and delivered late (after this wait's
// reset, as on a loaded machine) it ends the park at once. stale says
// what is wrong with such a result (nil: a stale wake, nothing to do
// after it either); a second wait must park.
func parks[R any](t *testing.T, what string, done chan R, wait func() R, stale func(R) error) {
	t.Helper()
	for attempt := range 2 {
		go func() { done <- wait() }()
		select {
		case r := <-done:
			if attempt > 0 {
				t.Fatalf("%s: returned (%v) after a stale wake", what, r)
			}
			if err := stale(r); err != nil {
				t.Fatalf("%s: returned (%v): %v", what, r, err)
			}
		case <-time.After(20 * time.Millisecond):
			return
		}
	}
}

// TestWaitWritableRoomBeforeWait: the TX side's wait. A write is refused
// (EAGAIN: the peer's queue is full), the peer then reads everything and
// the poller takes the writable edge before WaitWritable: it must
// return at once; with the queue full again it parks until the peer
// reads.
func TestWaitWritableRoomBeforeWait(t *testing.T) {
	a, b := socketpairQueues(t)
	var fd int
	b.rc.Control(func(f uintptr) { fd = int(f) })
	frame := [][]byte{make([]byte, 64)}
	buf := make([]byte, 64)
	fill := func() int {
		n := 0
		for ; ; n++ {
			if _, err := a.TryWritev(frame); err == unix.EAGAIN {
				return n
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	drain := func() {
		for {
			if _, err := unix.Read(fd, buf); err != nil {
				return
			}
		}
	}
	for i := range 10 {
		if fill() == 0 && i == 0 {
			t.Fatal("no write accepted")
		}
		drain()
		sleepForPoller()
		if err := waitWithin(a.WaitWritable, a.SetWriteDeadline, 2*time.Second); err != nil {
			t.Fatalf("round %d: WaitWritable with room = %v (a lost wake-up)", i, err)
		}
	}
	fill()
	done := make(chan error, 1)
	parks(t, "WaitWritable with the peer's queue full", done, a.WaitWritable, func(err error) error {
		if err != nil {
			return err
		}
		if _, err := a.TryWritev(frame); err != unix.EAGAIN {
			return fmt.Errorf("TryWritev after a stale wake = %v", err)
		}
		return nil
	})
	drain()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("room did not wake WaitWritable")
	}
}

// TestTapFrameBeforeWait is TestWaitReadableFrameBeforeWait on a real
// TAP: a frame the host sends right after TryReadv returned EAGAIN.
func TestTapFrameBeforeWait(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-wait", 1, Options{})
	c := udpSocket(t, l.hostIP, 0)
	dst := &net.UDPAddr{IP: l.guestIP, Port: 7}
	frameBeforeWait(t, l.tap.Queue(0), func() error {
		_, err := c.WriteToUDP([]byte("wake"), dst)
		return err
	})
}
