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
	waitUntil(t, "the counters published", func() bool { return stats(d).TxPackets == 3 })
	if st := stats(d); st.TxInterrupts != 2 { // the owed one was counted when it was owed
		t.Errorf("tx_interrupts %d for 2 notifications sent", st.TxInterrupts)
	}
}

// TestTxIRQGapUrgentEventIdx: with EVENT_IDX (what Linux negotiates) the
// driver's used_event stays in the span of the notification the gap
// owes, since it has not been told of it; a large frame completed in a
// later flush is outside that span, so the queue alone says "no
// interrupt" for it. Its urgency must still send the owed notification
// at once, or the large frame's completion waits out the gap (here an
// hour). Each notification is counted once (tx_interrupts).
func TestTxIRQGapUrgentEventIdx(t *testing.T) {
	irqGapLimit = time.Hour
	t.Cleanup(func() { irqGapLimit = MaxIRQGap })
	d, be0 := newDevice(t, Options{TxIRQGap: time.Hour})
	h := activate(t, d, fMrg|fEvent, virtiotest.Options{})
	drv := h.Drivers[TxQueue]
	send := func(n, size int) {
		t.Helper()
		sendTx(t, h, frame(n, size, 0, 0), nil, false)
		h.Kick(TxQueue)
		waitUntil(t, "the frame sent", func() bool { return len(be0.Sent()) == n })
	}
	send(1, 60) // used_event 0: the first completion wants one, sent at once
	waitUntil(t, "the first interrupt (at once)", func() bool { return h.IRQ.Count(TxQueue) == 1 })
	drv.SetUsedEvent(1) // the driver took entry 0 and asks about the next
	send(2, 60)         // inside the gap: owed
	time.Sleep(20 * time.Millisecond)
	if n := h.IRQ.Count(TxQueue); n != 1 {
		t.Fatalf("%d transmit interrupts after a small frame inside the gap, want 1", n)
	}
	send(3, txUrgentFrame+1) // used_event is still 1: the driver was not notified
	if !h.IRQ.Wait(5*time.Second, func() bool { return h.IRQ.Count(TxQueue) == 2 }) {
		t.Fatalf("%d transmit interrupts after a large frame, want 2: the owed one waits for the gap", h.IRQ.Count(TxQueue))
	}
	waitUntil(t, "the counters published", func() bool { return stats(d).TxPackets == 3 })
	if st := stats(d); st.TxInterrupts != 2 {
		t.Errorf("tx_interrupts %d for 2 notifications sent", st.TxInterrupts)
	}
}

// TestTxIRQGapUrgentDropped: a large frame the backend refuses (dropped,
// counted in tx_errors) is still freed by the driver on its completion,
// which returns its socket's small-queue budget as a sent one's does: its
// completion skips the gap too.
func TestTxIRQGapUrgentDropped(t *testing.T) {
	irqGapLimit = time.Hour
	t.Cleanup(func() { irqGapLimit = MaxIRQGap })
	d, be0 := newDevice(t, Options{TxIRQGap: time.Hour})
	h := activate(t, d, fMrg, virtiotest.Options{})
	sendTx(t, h, frame(1, 60, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "the first interrupt (at once)", func() bool { return h.IRQ.Count(TxQueue) == 1 })
	be0.Close()
	sendTx(t, h, frame(2, 60, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "the small frame dropped", func() bool { return stats(d).TxErrors == 1 })
	sendTx(t, h, frame(3, txUrgentFrame+1, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "the large frame dropped", func() bool { return stats(d).TxErrors == 2 })
	if !h.IRQ.Wait(5*time.Second, func() bool { return h.IRQ.Count(TxQueue) == 2 }) {
		t.Fatalf("%d transmit interrupts after a dropped large frame, want 2", h.IRQ.Count(TxQueue))
	}
}
