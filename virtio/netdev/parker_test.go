package netdev

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// parkBackend is the fake backend with ReadvOrPark (a ReadvParker, as
// *tap.Queue is): TryReadv, and on EAGAIN idle, then WaitReadable. At
// each idle it records what the guest can see at that moment, from the
// device's goroutine, just before it parks; onIdle, if set, runs after
// that (a frame arriving between the empty read and the park).
type parkBackend struct {
	*fakeBackend
	h      *virtiotest.Harness
	mu     sync.Mutex
	parks  []parkSeen
	onIdle func()
}

// parkSeen is the RX ring as the guest sees it when the device parks.
type parkSeen struct {
	used      uint16 // used.idx published
	irqs      uint64 // RX interrupts sent
	nextAvail uint16 // the device's next-avail index (buffers not given back)
}

func (b *parkBackend) ReadvOrPark(iovs [][]byte, idle func()) (int, bool, error) {
	n, err := b.TryReadv(iovs)
	if err != unix.EAGAIN {
		return n, false, err
	}
	idle()
	s := parkSeen{used: b.h.Drivers[RxQueue].UsedIdx(), irqs: b.h.IRQ.Count(RxQueue), nextAvail: b.h.Queues[RxQueue].NextAvail()}
	b.mu.Lock()
	b.parks = append(b.parks, s)
	f := b.onIdle
	b.mu.Unlock()
	if f != nil {
		f()
	}
	return 0, true, b.WaitReadable()
}

func (b *parkBackend) lastPark() (parkSeen, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.parks) == 0 {
		return parkSeen{}, 0
	}
	return b.parks[len(b.parks)-1], len(b.parks)
}

// newParkDevice is newDevice over a parkBackend, activated with acked.
func newParkDevice(t *testing.T, acked uint64) (*Device, *parkBackend, *virtiotest.Harness) {
	t.Helper()
	return newParkDeviceOpt(t, acked, virtiotest.Options{})
}

// newParkDeviceOpt is newParkDevice with the harness's options.
func newParkDeviceOpt(t *testing.T, acked uint64, opt virtiotest.Options) (*Device, *parkBackend, *virtiotest.Harness) {
	t.Helper()
	be := &parkBackend{fakeBackend: newFake()}
	d, err := New(be, Options{SetOffload: be.SetOffload})
	if err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	h := activate(t, d, acked, opt)
	be.h = h
	be.mu.Unlock()
	return d, be, h
}

// TestRxParkPublishesFirst: with a backend that reads or parks in one
// call, the device publishes the frames it delivered, signals the guest
// and gives back the buffers it did not use before it parks: a guest
// must never wait for a completion the device holds while it sleeps. A
// device whose idle hook published nothing would park with used.idx
// behind (RX publishes per 64 frames otherwise) and no interrupt.
func TestRxParkPublishesFirst(t *testing.T) {
	d, be, h := newParkDevice(t, fMrg)
	postRx(t, h, 8, 2048)
	waitUntil(t, "the first park", func() bool { _, n := be.lastPark(); return n >= 1 })
	if s, _ := be.lastPark(); s.used != 0 || s.nextAvail != 0 {
		t.Fatalf("first park: %+v, want nothing used and every buffer given back", s)
	}
	for round := 1; round <= 3; round++ {
		_, before := be.lastPark()
		for i := range 3 {
			be.Inject(frame(10*round+i, 100, 0, 0))
		}
		receive(t, h, 3, true)
		waitUntil(t, "the next park", func() bool { _, n := be.lastPark(); return n > before })
		s, _ := be.lastPark()
		if s.used != uint16(3*round) || s.nextAvail != uint16(3*round) {
			t.Fatalf("round %d: parked with used.idx %d, next avail %d: want %d published and the rest given back", round, s.used, s.nextAvail, 3*round)
		}
		if s.irqs < uint64(round) {
			t.Fatalf("round %d: parked after %d RX interrupts", round, s.irqs)
		}
		postRx(t, h, 3, 2048)
	}
	if e := engine(d, RxQueue); e.Activity != virtio.ActivityWaitReadable {
		t.Errorf("parked engine reports %v", e.Activity)
	}
	d.Reset()
	if na := h.Queues[RxQueue].NextAvail(); na != 9 {
		t.Errorf("next avail %d after reset, want the 9 buffers used", na)
	}
}

// TestRxParkFrameDuringIdle: a frame that arrives after the empty read,
// while the device publishes (idle), ends the park and is delivered into
// buffers popped again after the wake; so does every frame after it.
func TestRxParkFrameDuringIdle(t *testing.T) {
	d, be, h := newParkDevice(t, fMrg)
	var once sync.Once
	be.mu.Lock()
	be.onIdle = func() { once.Do(func() { be.Inject(frame(1, 200, 0, 0)) }) }
	be.mu.Unlock()
	postRx(t, h, 8, 2048)
	got := receive(t, h, 1, true)
	checkPackets(t, got, [][]byte{frame(1, 200, 0, 0)}, 2048, true)
	be.Inject(frame(2, 300, 0, 0))
	got = receive(t, h, 1, true)
	checkPackets(t, got, [][]byte{frame(2, 300, 0, 0)}, 2048, true)
	if s := stats(d); s.RxPackets != 2 {
		t.Fatalf("stats %+v", s)
	}
	d.Reset()
}
