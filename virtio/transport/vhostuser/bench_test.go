package vhostuser_test

import (
	"testing"
	"time"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// roundTrip is one guest frame out through the transport and back in:
// the backend echoes transmitted frames to the receive side.
type roundTrip struct {
	g          *guest
	txBuf      []vut.Buf
	rxBuf      []vut.Buf
	frameBytes int
}

func newRoundTrip(tb testing.TB) *roundTrip {
	h := newHarness(tb)
	h.be.echo = true
	g := h.connectUML(0)
	f := frame(0x5a)
	tx := g.buf()
	copy(g.m.Bytes(tx, uint64(len(f))), f)
	return &roundTrip{
		g:          g,
		txBuf:      []vut.Buf{{Addr: tx, Len: uint32(len(f))}},
		rxBuf:      []vut.Buf{{Addr: g.buf(), Len: 2048, Write: true}},
		frameBytes: len(f),
	}
}

func (r *roundTrip) once(tb testing.TB) {
	g := r.g
	if _, err := g.rx.Add(r.rxBuf...); err != nil {
		tb.Fatal(err)
	}
	g.rx.PublishAndNotify()
	if _, err := g.tx.Add(r.txBuf...); err != nil {
		tb.Fatal(err)
	}
	g.tx.PublishAndNotify()
	if _, n, err := g.rx.WaitUsed(5 * time.Second); err != nil || int(n) != r.frameBytes {
		tb.Fatalf("RX: %d bytes, %v", n, err)
	}
	if _, _, err := g.tx.WaitUsed(5 * time.Second); err != nil {
		tb.Fatalf("TX completion: %v", err)
	}
}

// TestRoundTripAllocs: once warm, a frame out and back through the
// transport, the device and the guest's rings allocates nothing, in any
// goroutine.
func TestRoundTripAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on every synchronisation")
	}
	r := newRoundTrip(t)
	for range 300 {
		r.once(t)
	}
	if n := testing.AllocsPerRun(500, func() { r.once(t) }); n > 0 {
		t.Fatalf("%.2f allocations per round trip", n)
	}
}

// BenchmarkRoundTrip: guest TX -> backend (echo) -> guest RX, one frame
// in flight, with the interrupts (pipe call fds, as UML uses) and kicks a
// real frontend sees.
func BenchmarkRoundTrip(b *testing.B) {
	r := newRoundTrip(b)
	for range 300 {
		r.once(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.once(b)
	}
}
