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
