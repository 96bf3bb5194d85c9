package tap

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

// udpFrames reads q until it is empty and returns the IPv4 UDP frames
// read (the namespace's own traffic, e.g. IPv6 neighbour discovery, is
// not counted); a detached queue (EBADFD) counts as empty.
func udpFrames(tb testing.TB, q *Queue, buf []byte) int {
	n := 0
	for {
		m, err := q.TryReadv([][]byte{buf})
		if err == unix.EAGAIN || err == unix.EBADFD {
			return n
		}
		if err != nil {
			tb.Error(err)
			return n
		}
		e := buf[vnethdr.Len:m]
		if len(e) > 34 && binary.BigEndian.Uint16(e[12:]) == 0x0800 && e[23] == unix.IPPROTO_UDP {
			n++
		}
	}
}

// sendFlows sends one datagram to each of flows ports of l's guest.
func sendFlows(tb testing.TB, c *net.UDPConn, l *link, flows int) {
	for i := range flows {
		if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: l.guestIP, Port: 6000 + i}); err != nil {
			tb.Error(err)
			return
		}
	}
}

// TestPinToFirst: with the pin on, every flow lands on the first queue;
// off, the kernel spreads them again; a single-queue TAP has no pin.
func TestPinToFirst(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-pin", 4, Options{Queues: 2})
	qs := l.tap.Queues()
	c := udpSocket(t, l.hostIP, 0)
	buf := make([]byte, 2048)
	settle := func() { time.Sleep(50 * time.Millisecond) }

	if err := qs[0].PinToFirst(true); err != nil {
		t.Fatalf("PinToFirst(true): %v", err)
	}
	sendFlows(t, c, l, 64)
	settle()
	if n0, n1 := udpFrames(t, qs[0], buf), udpFrames(t, qs[1], buf); n0 != 64 || n1 != 0 {
		t.Fatalf("pinned: %d frames on queue 0, %d on queue 1; want 64, 0", n0, n1)
	}
	if err := qs[0].PinToFirst(false); err != nil {
		t.Fatalf("PinToFirst(false): %v", err)
	}
	sendFlows(t, c, l, 64)
	settle()
	if n0, n1 := udpFrames(t, qs[0], buf), udpFrames(t, qs[1], buf); n0+n1 != 64 || n0 == 0 || n1 == 0 {
		t.Fatalf("unpinned: %d and %d frames of 64 flows, want both queues used", n0, n1)
	}

	// The pin is the interface's: a detached queue's file sets it too.
	if err := qs[1].SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{true, false} {
		if err := qs[1].PinToFirst(on); err != nil {
			t.Fatalf("PinToFirst(%v) on a detached queue: %v", on, err)
		}
	}
	if err := qs[1].SetEnabled(true); err != nil {
		t.Fatal(err)
	}

	single := ns.openLink("flt-pin1", 5, Options{})
	if err := single.tap.Queue(0).PinToFirst(true); !errors.Is(err, ErrNoSteering) {
		t.Fatalf("single-queue PinToFirst: %v, want ErrNoSteering", err)
	}
	l.tap.Close()
	if err := qs[0].PinToFirst(true); err == nil {
		t.Fatal("PinToFirst after Close succeeded")
	}
}

// TestStalePinCleared: a persistent TAP keeps a steering program after
// the files that attached it are closed (Linux drops it only with the
// interface), as when Flint dies while it shrinks; Open takes it off, so
// the next user's frames are spread over its queues again.
func TestStalePinCleared(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-pinstale", 7, Options{Queues: 2, Persist: true})
	if err := l.tap.Queue(0).PinToFirst(true); err != nil {
		t.Fatal(err)
	}
	l.tap.Close() // the interface stays, pinned
	again, err := Open(Options{Name: "flt-pinstale", Mode: OpenExisting, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		again.SetPersist(false)
		again.Close()
	}()
	c := udpSocket(t, l.hostIP, 0)
	sendFlows(t, c, l, 64)
	time.Sleep(50 * time.Millisecond)
	buf := make([]byte, 2048)
	if n0, n1 := udpFrames(t, again.Queue(0), buf), udpFrames(t, again.Queue(1), buf); n0+n1 != 64 || n1 == 0 {
		t.Fatalf("reopened: %d and %d frames of 64 flows; want both queues used (a stale pin sends all to queue 0)", n0, n1)
	}
}

// TestNoSteeringWithoutPrivilege: where the steering program cannot be
// loaded (no CAP_BPF or CAP_SYS_ADMIN, and unprivileged BPF disabled, as
// Debian ships it), Open still opens the multiqueue TAP, SteeringError
// says why, and PinToFirst fails with ErrNoSteering (the device then
// detaches unpinned). The test drops the two capabilities on its own
// thread, which enterNetns locked and the runtime retires after it.
func TestNoSteeringWithoutPrivilege(t *testing.T) {
	ns := enterNetns(t)
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled"); err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Skipf("unprivileged BPF is allowed here (%q, %v): the program loads without privilege", b, err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	caps[unix.CAP_SYS_ADMIN/32].Effective &^= 1 << (unix.CAP_SYS_ADMIN % 32)
	caps[unix.CAP_BPF/32].Effective &^= 1 << (unix.CAP_BPF % 32)
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	l := ns.openLink("flt-nosteer", 8, Options{Queues: 2})
	if err := l.tap.SteeringError(); !errors.Is(err, ErrNoSteering) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("SteeringError() = %v, want ErrNoSteering with EPERM", err)
	}
	if err := l.tap.Queue(0).PinToFirst(true); !errors.Is(err, ErrNoSteering) {
		t.Fatalf("PinToFirst(true) = %v, want ErrNoSteering", err)
	}
	if err := l.tap.Queue(1).SetEnabled(false); err != nil {
		t.Fatalf("detaching without the pin: %v", err)
	}
}

// TestDetachPinnedLosesNothing detaches and re-attaches the second queue
// of a TAP that receives a steady stream of 64 flows, the way a device
// shrinks its queue pairs: pin, drain the queue, detach it, unpin. Every
// datagram sent must be read from one queue or the other. Without the
// pin, frames the kernel steers to the queue between the drain and the
// detach are dropped with it (tun_queue_purge).
func TestDetachPinnedLosesNothing(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-pinload", 6, Options{Queues: 2})
	qs := l.tap.Queues()
	c := udpSocket(t, l.hostIP, 0)

	var sent, got atomic.Int64
	var detached atomic.Bool
	stopSend, stopRead := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	// The sender: 64 flows every 200 µs while fewer than 512 datagrams
	// are unread, so that however slowly the reader is scheduled no
	// queue's ring (1000 frames) overflows: only a detach can lose one.
	repeatUntil(&wg, stopSend, func() {
		if sent.Load()-got.Load() < 512 {
			sendFlows(t, c, l, 64)
			sent.Add(64)
		}
		time.Sleep(200 * time.Microsecond)
	})
	// The reader: both queues, the second only while attached.
	buf := make([]byte, 2048)
	repeatUntil(&wg, stopRead, func() {
		got.Add(int64(udpFrames(t, qs[0], buf)))
		if !detached.Load() {
			got.Add(int64(udpFrames(t, qs[1], buf)))
		}
		time.Sleep(20 * time.Microsecond)
	})
	var once sync.Once
	stop := func() { // the sender first, then what it sent is read
		once.Do(func() {
			close(stopSend)
			time.Sleep(50 * time.Millisecond)
			close(stopRead)
			wg.Wait()
		})
	}
	defer stop() // also on a failure below: no goroutine outlives the test

	for range 20 {
		if err := qs[0].PinToFirst(true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		deadline := time.Now().Add(time.Second)
		for qs[1].Pending() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		detached.Store(true)
		if err := qs[1].SetEnabled(false); err != nil {
			t.Fatal(err)
		}
		if err := qs[0].PinToFirst(false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if err := qs[1].SetEnabled(true); err != nil {
			t.Fatal(err)
		}
		detached.Store(false)
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	got.Add(int64(udpFrames(t, qs[0], buf) + udpFrames(t, qs[1], buf)))
	if s, g := sent.Load(), got.Load(); g != s {
		t.Fatalf("sent %d datagrams, read %d: %d lost over 20 detaches", s, g, s-g)
	}
}

// repeatUntil runs f in a goroutine of wg, again and again, until stop
// is closed.
func repeatUntil(wg *sync.WaitGroup, stop <-chan struct{}, f func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				f()
			}
		}
	}()
}
