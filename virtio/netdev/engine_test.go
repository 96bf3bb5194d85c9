package netdev

import (
	"fmt"
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// engine returns queue q's engine state.
func engine(d *Device, q int) virtio.EngineState { return d.EngineStates()[q] }

// waitEngine waits until queue q's engine does a with the given indices.
func waitEngine(t *testing.T, d *Device, q int, a virtio.Activity, avail, used uint16) virtio.EngineState {
	t.Helper()
	var s virtio.EngineState
	waitUntil(t, fmt.Sprintf("queue %d engine %v at avail %d used %d", q, a, avail, used), func() bool {
		s = engine(d, q)
		return s.Activity == a && s.NextAvail == avail && s.NextUsed == used
	})
	return s
}

// TestEngineStatesIdle checks what the engines report while idle, the
// state a stall dump shows: RX waiting for the backend with the buffers
// it did not use given back (last_avail counts only used ones), TX
// waiting for a kick, RX waiting for a kick once the guest's buffers are
// all used, TX waiting for a backend that pushed back, and every engine
// stopped after a reset.
func TestEngineStatesIdle(t *testing.T) {
	d, be := newDevice(t, Options{Features: DefaultFeatures&^FeatureMAC.Mask() | FeatureCtrlVQ.Mask()})
	states := d.EngineStates()
	if len(states) != 3 {
		t.Fatalf("%d engines, want rx, tx, ctrl", len(states))
	}
	for i, name := range []string{"rx", "tx", "ctrl"} {
		if s := states[i]; s.Queue != i || s.Name != name || s.Activity != virtio.ActivityInactive {
			t.Fatalf("engine %d before activation: %+v", i, s)
		}
	}
	h := activate(t, d, fEvent|fMrg, virtiotest.Options{})

	// Idle: RX holds no buffer while it waits for the backend.
	postRx(t, h, 8, 2048)
	waitEngine(t, d, RxQueue, virtio.ActivityWaitReadable, 0, 0)
	tx0 := waitEngine(t, d, TxQueue, virtio.ActivityWaitKick, 0, 0)
	if ring := h.Queues[RxQueue].RingState(); ring.AvailIdx != 8 || ring.UsedIdx != 0 {
		t.Fatalf("rx ring %+v", ring)
	}

	// Three frames in: three buffers used, back to waiting.
	for i := range 3 {
		be.Inject(frame(i, 100, 0, 0))
	}
	receive(t, h, 3, true)
	rx := waitEngine(t, d, RxQueue, virtio.ActivityWaitReadable, 3, 3)
	if ring := h.Queues[RxQueue].RingState(); ring.AvailIdx-rx.NextAvail != 5 || ring.UsedIdx != 3 {
		t.Fatalf("rx ring %+v, engine %+v: want 5 buffers left", ring, rx)
	}

	// Two frames out: TX sends them and waits for the next kick.
	for i := range 2 {
		if _, err := h.Drivers[TxQueue].Add(qt.R(frame(i, 60, 0, 0))); err != nil {
			t.Fatal(err)
		}
	}
	h.Kick(TxQueue)
	tx := waitEngine(t, d, TxQueue, virtio.ActivityWaitKick, 2, 2)
	if tx.Transitions <= tx0.Transitions || len(be.Sent()) != 2 {
		t.Fatalf("tx transitions %d -> %d, %d frames sent", tx0.Transitions, tx.Transitions, len(be.Sent()))
	}

	// Six more frames for five buffers: RX waits for the guest's kick.
	for i := range 6 {
		be.Inject(frame(3+i, 100, 0, 0))
	}
	receive(t, h, 5, true)
	waitEngine(t, d, RxQueue, virtio.ActivityWaitKick, 8, 8)
	if be.Queued() != 1 {
		t.Fatalf("%d frames queued in the backend, want 1", be.Queued())
	}

	// The backend pushes back: TX waits for it, the chain given back.
	be.SetTxBlock(true)
	if _, err := h.Drivers[TxQueue].Add(qt.R(frame(9, 60, 0, 0))); err != nil {
		t.Fatal(err)
	}
	h.Kick(TxQueue)
	waitEngine(t, d, TxQueue, virtio.ActivityWaitWritable, 2, 2)
	be.SetTxBlock(false)
	waitEngine(t, d, TxQueue, virtio.ActivityWaitKick, 3, 3)

	if s := engine(d, CtrlQueue); s.Activity != virtio.ActivityInactive {
		t.Fatalf("control queue not negotiated, yet its engine %+v", s)
	}
	h.Close()
	for _, s := range d.EngineStates()[:2] {
		if s.Activity != virtio.ActivityStopped {
			t.Fatalf("after reset: %+v", s)
		}
	}
}

// TestCountersNamed fails when a Stats field has no name in Counters
// (logs, dumps and metrics would miss it) or two names share a field.
func TestCountersNamed(t *testing.T) {
	s := new(Stats)
	if err := virtio.CheckCounters(s, s.Counters()); err != nil {
		t.Fatal(err)
	}
}
