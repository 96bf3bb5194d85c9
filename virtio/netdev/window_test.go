package netdev

import (
	"testing"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// TestWindowHoldTakeGiveBack walks the window through its life: chains
// held in pop order, the oldest taken by a frame and pushed, the rest
// given back after a Push and a Publish (held chains survive flushes),
// and nothing given back across a chain completed out of order.
func TestWindowHoldTakeGiveBack(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8})
	q := d.MustQueue(t)
	for range 6 {
		d.Add(qt.W(100), qt.W(200))
	}
	d.Kick()
	var w window
	pop := func() *queue.Chain {
		c, err := q.PopCached()
		if err != nil || c == nil {
			t.Fatalf("pop: %v %v", c, err)
		}
		return c
	}
	check := func(held int, space uint64) {
		t.Helper()
		if err := w.check(); err != nil {
			t.Fatal(err)
		}
		if w.count() != held || w.space != space {
			t.Fatalf("held %d (%d bytes), want %d (%d)", w.count(), w.space, held, space)
		}
	}
	for range 3 {
		w.hold(pop())
	}
	check(3, 900)
	if iov, space := w.iovecs(); len(iov) != 7 || space != 900 || len(iov[6]) != len(w.tail) {
		t.Fatalf("iovecs: %d segments, %d bytes", len(iov), space)
	}
	h, segs := w.oldest()
	w.take(1)
	q.Push(h.head, 10)
	q.Publish()
	check(2, 600)
	if len(segs) != 2 {
		t.Fatalf("oldest chain has %d segments", len(segs))
	}
	w.giveBack(q) // the two held chains, after a Push and a Publish
	check(0, 0)
	if q.NextAvail() != 1 {
		t.Fatalf("next avail %d after giving back two of three", q.NextAvail())
	}

	// A chain completed after the held ones (unusable, pushed at once):
	// the held ones can no longer be given back.
	w.hold(pop())
	w.hold(pop())
	q.Push(pop().Head, 0)
	w.noteCompleted()
	w.giveBack(q)
	check(2, 600)
	if q.NextAvail() != 4 {
		t.Fatalf("next avail %d", q.NextAvail())
	}
	w.release()
	check(0, 0)
}

// TestRxKeepsHeldChainsAcrossFlushes: a round that delivers many frames
// (several flushes of rxBatch) pops each buffer once: the buffers held
// for a maximum frame are not given back and walked again at every
// flush.
func TestRxKeepsHeldChainsAcrossFlushes(t *testing.T) {
	be := &memBackend{frame: frame(0, 64, 0, vnethdr.GSONone)}
	m := rxModes[1] // mergeable, 4 KiB buffers: a GSO frame needs 17 of them held
	s := newSync(t, be, m.acked, 256, 24<<20)
	m.post(t, s.rxd)
	s.rxd.Kick()
	const frames = 3 * rxBatch
	be.avail = frames
	before := s.rxq.Stats().Chains
	if r := s.d.pairs[0].rx.eng.Step(); r.Do != virtio.WaitBackend {
		t.Fatalf("step ended with %+v", r)
	}
	popped := s.rxq.Stats().Chains - before
	if held := s.d.pairs[0].rx.win.count(); popped != uint64(frames+held) || held < 17 {
		t.Fatalf("popped %d chains for %d frames with %d held: chains were walked again", popped, frames, held)
	}
	if got := s.d.Stats().RxPackets; got != frames {
		t.Fatalf("%d packets delivered", got)
	}
}
