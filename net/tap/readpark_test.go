package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ReadvOrPark reads or parks in one RawConn call: the readv that finds
// nothing is its only check before parking (see doReadOrPark). These
// tests fail if a frame that arrives after that readv (the RX engine
// publishes and signals the guest in idle) is slept through, if idle
// does not run before the park, or if a wake reads into buffers the
// caller gave away.

// readOrParkWithin is ReadvOrPark with a read deadline d from now.
func readOrParkWithin(q *Queue, iovs [][]byte, idle func(), d time.Duration) (int, bool, error) {
	q.SetReadDeadline(time.Now().Add(d))
	defer q.SetReadDeadline(time.Time{})
	return q.ReadvOrPark(iovs, idle)
}

// frameDuringIdle runs 20 rounds of: ReadvOrPark on q with nothing
// queued, whose idle sends a frame and lets the poller take its edge; it
// must return parked (a lost wake-up: the deadline) without reading, and
// the next ReadvOrPark must read the frame.
func frameDuringIdle(t *testing.T, q *Queue, send func() error) {
	t.Helper()
	buf := make([]byte, 2048)
	iov := [][]byte{buf}
	for {
		if _, err := q.TryReadv(iov); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		idled := 0
		n, parked, err := readOrParkWithin(q, iov, func() {
			idled++
			if err := send(); err != nil {
				t.Error(err)
			}
			sleepForPoller()
		}, 2*time.Second)
		if err != nil || !parked || n != 0 || idled != 1 {
			t.Fatalf("round %d: ReadvOrPark with a frame sent in idle = %d, parked %v, %v, idle ran %d times (want parked, nil, once)", i, n, parked, err, idled)
		}
		n, parked, err = readOrParkWithin(q, iov, func() { t.Error("idle with a frame queued") }, 2*time.Second)
		if err != nil || parked || n == 0 {
			t.Fatalf("round %d: ReadvOrPark after the wake = %d, parked %v, %v (want the frame)", i, n, parked, err)
		}
	}
}

// TestReadvOrParkFrameDuringIdle: over a socketpair.
func TestReadvOrParkFrameDuringIdle(t *testing.T) {
	a, b := socketpairQueues(t)
	frameDuringIdle(t, b, func() error {
		_, err := a.Writev([][]byte{[]byte("frame")})
		return err
	})
}

// TestTapReadvOrParkFrameDuringIdle: on a real TAP, a frame the host
// sends while the reader is in idle.
func TestTapReadvOrParkFrameDuringIdle(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-rop", 1, Options{})
	c := udpSocket(t, l.hostIP, 0)
	dst := &net.UDPAddr{IP: l.guestIP, Port: 7}
	frameDuringIdle(t, l.tap.Queue(0), func() error {
		_, err := c.WriteToUDP([]byte("wake"), dst)
		return err
	})
}

// TestReadvOrPark: a queued frame is read without idle; with none, idle
// runs before the park, the wake reads nothing (the buffer was given
// away: it stays untouched) and the next call reads the frame; a past
// deadline ends a park (parked, timeout) and, set before the call, ends
// it before any read or idle; empty buffers are EINVAL.
func TestReadvOrPark(t *testing.T) {
	a, b := socketpairQueues(t)
	send := func(s string) {
		if _, err := a.Writev([][]byte{[]byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	iov := [][]byte{buf}
	send("first")
	if n, parked, err := b.ReadvOrPark(iov, func() { t.Error("idle with a frame queued") }); err != nil || parked || string(buf[:n]) != "first" {
		t.Fatalf("queued frame: %q parked %v %v", buf[:n], parked, err)
	}
	clear(buf)
	idle := make(chan struct{}, 2)
	type result struct {
		n      int
		parked bool
		err    error
	}
	done := make(chan result, 1)
	// The first call read its frame itself: a late edge for it may end
	// this park at once (see parks).
	parks(t, "ReadvOrPark with nothing to read", done, func() result {
		n, parked, err := b.ReadvOrPark(iov, func() { idle <- struct{}{} })
		return result{n, parked, err}
	}, func(r result) error {
		if r.err != nil || !r.parked || r.n != 0 {
			return errors.New("not a stale wake")
		}
		if _, err := b.TryReadv([][]byte{make([]byte, 64)}); err != unix.EAGAIN {
			return fmt.Errorf("TryReadv after a stale wake = %v", err)
		}
		<-idle // it ran before the park
		return nil
	})
	select {
	case <-idle:
	case <-time.After(2 * time.Second):
		t.Fatal("idle did not run with nothing to read")
	}
	send("second")
	select {
	case r := <-done:
		if r.err != nil || !r.parked || r.n != 0 {
			t.Fatalf("woken: %+v, want parked, nil", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a frame did not wake the park")
	}
	if buf[0] != 0 {
		t.Fatalf("the wake read into the buffer given away in idle: %q", buf)
	}
	if n, parked, err := b.ReadvOrPark(iov, nil); err != nil || parked || string(buf[:n]) != "second" {
		t.Fatalf("after the wake: %q parked %v %v", buf[:n], parked, err)
	}

	go func() {
		n, parked, err := b.ReadvOrPark(iov, func() {})
		done <- result{n, parked, err}
	}()
	time.Sleep(20 * time.Millisecond)
	b.SetReadDeadline(time.Unix(1, 0))
	select {
	case r := <-done:
		if r.err != os.ErrDeadlineExceeded || !r.parked {
			t.Fatalf("a past deadline during the park: %+v, want parked, os.ErrDeadlineExceeded", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the deadline did not end the park")
	}
	send("third")
	if _, parked, err := b.ReadvOrPark(iov, func() { t.Error("idle past the deadline") }); err != os.ErrDeadlineExceeded || parked {
		t.Fatalf("deadline already past: parked %v %v", parked, err)
	}
	b.SetReadDeadline(time.Time{})
	if _, _, err := b.ReadvOrPark([][]byte{nil}, nil); err != unix.EINVAL {
		t.Fatalf("no buffer space: %v, want EINVAL", err)
	}
}

// TestReadvOrParkNoAllocs: a park and its wake allocate nothing.
func TestReadvOrParkNoAllocs(t *testing.T) {
	a, b := socketpairQueues(t)
	buf := make([]byte, 64)
	iov, frame := [][]byte{buf}, [][]byte{[]byte("frame")}
	wake := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range wake {
			time.Sleep(50 * time.Microsecond)
			a.Writev(frame)
		}
	}()
	defer func() { close(wake); <-done }()
	idle := func() {}
	if n := testing.AllocsPerRun(100, func() {
		wake <- struct{}{}
		for {
			_, parked, err := b.ReadvOrPark(iov, idle)
			if err != nil {
				t.Fatal(err)
			}
			if !parked {
				return
			}
		}
	}); n != 0 {
		t.Errorf("%v allocations per park and read", n)
	}
}

// echoReadOrPark is echoRX with ReadvOrPark: the RX engine's pattern
// with a backend that reads or parks in one call.
func echoReadOrPark(q *Queue, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 2048)
	rd, wr := [][]byte{buf}, [][]byte{nil}
	idle := func() {}
	for {
		n, parked, err := q.ReadvOrPark(rd, idle)
		switch {
		case err != nil:
			return
		case parked:
		default:
			wr[0] = buf[:n]
			if _, err := q.Writev(wr); err != nil {
				return
			}
		}
	}
}

// BenchmarkReadvOrPark is BenchmarkWaitReadable with the waiter using
// ReadvOrPark: system calls per wake-up, under perf stat.
func BenchmarkReadvOrPark(b *testing.B) { benchWakeups(b, echoReadOrPark) }

// TestReadvOrParkIdlePanics: a panic in idle (the RX engine's publish
// faulting on guest memory a vhost-user frontend truncated; the engine
// recovers it and waits for the reset) leaves the Queue usable: the
// next activation's ReadvOrPark, and the other read-side calls, must not
// block on a lock the panic left held.
func TestReadvOrParkIdlePanics(t *testing.T) {
	a, b := socketpairQueues(t)
	iov := [][]byte{make([]byte, 2048)}
	func() {
		defer func() {
			if r := recover(); r != "fault" {
				t.Fatalf("recovered %v, want idle's panic", r)
			}
		}()
		b.ReadvOrPark(iov, func() { panic("fault") })
	}()
	done := make(chan error, 1)
	go func() {
		if _, err := a.Writev([][]byte{[]byte("frame")}); err != nil {
			done <- err
			return
		}
		n, parked, err := readOrParkWithin(b, iov, func() {}, 2*time.Second)
		if err == nil && (parked || n != len("frame")) {
			err = unix.EIO
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadvOrPark after idle panicked: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadvOrPark after idle panicked is blocked: the panic left the read side locked")
	}
}
