package vhostuser_test

import (
	"fmt"
	"testing"
	"time"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// roundTrip is batch guest frames out through the transport and back in:
// the backend echoes transmitted frames to the receive side.
type roundTrip struct {
	g          *guest
	txBuf      vut.Buf   // one frame, sent batch times (the device only reads it)
	rxBufs     []vut.Buf // batch receive buffers
	frameBytes int
}

func newRoundTrip(tb testing.TB, batch int) *roundTrip {
	h := newHarness(tb)
	h.be.SetEcho(true)
	g := h.connectUML(0)
	f := frame(0x5a)
	tx := g.buf()
	copy(g.m.Bytes(tx, uint64(len(f))), f)
	r := &roundTrip{g: g, txBuf: vut.Buf{Addr: tx, Len: uint32(len(f))}, frameBytes: len(f)}
	for range batch {
		r.rxBufs = append(r.rxBufs, vut.Buf{Addr: g.buf(), Len: 2048, Write: true})
	}
	return r
}

// once posts the receive buffers, sends the batch and waits until every
// frame is back and every transmit buffer completed.
func (r *roundTrip) once(tb testing.TB) {
	g := r.g
	for _, b := range r.rxBufs {
		if _, err := g.rx.Add(b); err != nil {
			tb.Fatal(err)
		}
	}
	g.rx.PublishAndNotify()
	for range r.rxBufs {
		if _, err := g.tx.Add(r.txBuf); err != nil {
			tb.Fatal(err)
		}
	}
	g.tx.PublishAndNotify()
	for range r.rxBufs {
		if _, n, err := g.rx.WaitUsed(5 * time.Second); err != nil || int(n) != r.frameBytes {
			tb.Fatalf("RX: %d bytes, %v", n, err)
		}
	}
	for range r.rxBufs {
		if _, _, err := g.tx.WaitUsed(5 * time.Second); err != nil {
			tb.Fatalf("TX completion: %v", err)
		}
	}
}

// TestRoundTripAllocs: once warm, frames out and back through the
// transport, the device and the guest's rings allocate nothing, in any
// goroutine, one at a time or in batches.
func TestRoundTripAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on every synchronisation")
	}
	for _, batch := range []int{1, 32} {
		r := newRoundTrip(t, batch)
		for range 300 {
			r.once(t)
		}
		if n := testing.AllocsPerRun(200, func() { r.once(t) }); n > 0 {
			t.Fatalf("batch %d: %.2f allocations per round trip", batch, n)
		}
	}
}

// BenchmarkRoundTrip: guest TX -> backend (echo) -> guest RX, with the
// interrupts (pipe call fds, as UML uses) and kicks a real frontend sees;
// one frame in flight, or 32 (ns/op is per batch; ns/frame per frame).
func BenchmarkRoundTrip(b *testing.B) {
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			r := newRoundTrip(b, batch)
			for range 300 {
				r.once(b)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.once(b)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/frame")
		})
	}
}
