package netdev

import (
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestIRQGap: Options.RxIRQGap and TxIRQGap reach the active pair's
// receive and transmit engines (virtio's TestIRQGap* test what an engine
// does with its gap), and the device still moves frames both ways.
func TestIRQGap(t *testing.T) {
	const rxGap, txGap = 40 * time.Microsecond, 70 * time.Microsecond
	d, be0 := newDevice(t, Options{RxIRQGap: rxGap, TxIRQGap: txGap})
	h := activate(t, d, fMrg|fEvent, virtiotest.Options{})
	if rx, tx := d.pairs[0].rx.eng.IRQGap(), d.pairs[0].tx.eng.IRQGap(); rx != rxGap || tx != txGap {
		t.Errorf("rx gap %v, tx gap %v; want %v, %v", rx, tx, rxGap, txGap)
	}
	postRx(t, h, 64, 1536)
	be0.Inject(frame(0, 100, 0, 0))
	receive(t, h, 1, true)
	waitUntil(t, "the rx interrupt", func() bool { return h.IRQ.Count(RxQueue) == 1 })
	sendTx(t, h, frame(1, 100, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "tx", func() bool { return len(be0.Sent()) == 1 })
	waitUntil(t, "the tx interrupt", func() bool { return h.IRQ.Count(TxQueue) == 1 })
}

// TestIRQGapRange: New refuses a negative gap or one over MaxIRQGap.
func TestIRQGapRange(t *testing.T) {
	for _, o := range []Options{{RxIRQGap: -1}, {TxIRQGap: MaxIRQGap + 1}} {
		if _, err := New(newFake(), o); err == nil || !strings.Contains(err.Error(), "interrupt gap") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// TestTxIRQGapSmallFramesOnly: the transmit gap holds the completions of
// small frames (txUrgentFrame bytes or less) only: a second small frame
// inside the gap gets no interrupt, and a large frame's completion is
// interrupted at once, taking the owed one with it (TCP's small-queue
// budget waits for it).
func TestTxIRQGapSmallFramesOnly(t *testing.T) {
	irqGapLimit = time.Hour
	t.Cleanup(func() { irqGapLimit = MaxIRQGap })
	d, be0 := newDevice(t, Options{TxIRQGap: time.Hour})
	h := activate(t, d, fMrg, virtiotest.Options{}) // no EVENT_IDX: the driver wants every notification
	send := func(n, size int) {
		t.Helper()
		sendTx(t, h, frame(n, size, 0, 0), nil, false)
		h.Kick(TxQueue)
		waitUntil(t, "the frame sent", func() bool { return len(be0.Sent()) == n })
	}
	send(1, 60)
	waitUntil(t, "the first interrupt (at once)", func() bool { return h.IRQ.Count(TxQueue) == 1 })
	send(2, txUrgentFrame)
	time.Sleep(50 * time.Millisecond)
	if n := h.IRQ.Count(TxQueue); n != 1 {
		t.Fatalf("%d transmit interrupts after a small frame inside the gap, want 1 (the gap holds it)", n)
	}
	send(3, txUrgentFrame+1)
	waitUntil(t, "the large frame's interrupt (at once)", func() bool { return h.IRQ.Count(TxQueue) == 2 })
}
