package netdev

// The receive buffer window: the guest buffers the device holds for the
// next frames.

import (
	"fmt"

	"github.com/flintvm/flint/virtio/queue"
)

// heldChain is what the device keeps of a popped receive chain: a
// snapshot taken when it was popped (its segments are in window.segv).
// The queue's cached Chain is not kept: a hostile driver can make the
// same head available twice, and the re-walk would change it under the
// device's feet.
type heldChain struct {
	head uint16
	wlen uint32 // writable bytes
	nseg int32  // writable segments
	cost int32  // ring descriptors it occupies (estimate, see descCost)
}

// window is the receive chains the device popped and no frame used yet,
// oldest first, with their writable segments laid out in one array so
// that readv gets a slice of it rather than an iovec array rebuilt per
// frame. Frames use chains from the front (take), new chains join at the
// back (hold); a used chain is pushed by the caller, and a held chain is
// never pushed, so held chains survive every flush as they are: they are
// walked once, when popped.
//
// Invariants (check verifies them):
//   - held[h0:] are the held chains in pop order and segv[s0:] their
//     writable segments in the same order: the nseg of held[h0:] add up
//     to len(segv)-s0, and each chain's segments hold its wlen bytes.
//   - space is the sum of their wlen, descs the sum of their cost.
//   - The newest fresh held chains (fresh <= held) are the last fresh
//     entries the queue popped, with nothing the queue or the device
//     completed popped after them: queue.Undo(fresh) gives back exactly
//     those. A chain completed out of order (malformed, unusable)
//     resets fresh to 0 (noteCompleted): the chains before it stay
//     held until frames use them.
//   - segv[len(segv)] (inside the capacity) is free for iovecs to put
//     the overflow tail there; cut is a separate array used only when
//     the held segments exceed maxIovecs.
type window struct {
	held  []heldChain
	h0    int
	segv  [][]byte
	s0    int
	fresh int
	space uint64
	descs int

	cut  [][]byte // iovecs when segv[s0:] exceeds maxIovecs
	tail [64]byte // readv overflow: a frame reaching it did not fit
}

// count is the number of held chains.
func (w *window) count() int { return len(w.held) - w.h0 }

// hold adds a popped chain (a snapshot of it) at the back.
func (w *window) hold(c *queue.Chain) {
	h := heldChain{head: c.Head, wlen: c.WriteLen, nseg: int32(len(c.Writable)), cost: int32(descCost(c))}
	w.held = append(w.held, h)
	w.segv = append(w.segv, c.Writable...)
	w.fresh++
	w.space += uint64(h.wlen)
	w.descs += int(h.cost)
}

// noteCompleted records that a chain popped after every held one was
// completed without being held: none of them can be given back now.
func (w *window) noteCompleted() { w.fresh = 0 }

// descCost estimates the ring descriptors c occupies.
func descCost(c *queue.Chain) int {
	if c.Indirect {
		return 1
	}
	return len(c.Readable) + len(c.Writable)
}

// oldest is the oldest held chain and its writable segments; the window
// must not be empty.
func (w *window) oldest() (heldChain, [][]byte) {
	h := w.held[w.h0]
	return h, w.segv[w.s0 : w.s0+int(h.nseg)]
}

// at is the k-th held chain, oldest first.
func (w *window) at(k int) heldChain { return w.held[w.h0+k] }

// iovecs returns the iovec array for the next readv and the writable
// bytes in it: the segments of all held chains (without mergeable
// buffers exactly one chain is held), then the overflow tail. With more
// segments than one readv takes, it uses whole chains up to the limit,
// in the separate cut array (the tail must not overwrite a segment of a
// later chain).
func (w *window) iovecs() ([][]byte, uint64) { return w.iovecsTail(w.tail[:]) }

// iovecsTail is iovecs with tail as the overflow (the receive engine's
// bounce buffer when it reads while starved).
func (w *window) iovecsTail(tail []byte) ([][]byte, uint64) {
	end := len(w.segv)
	if end-w.s0 >= maxIovecs {
		cut, space, at := w.cut[:0], uint64(0), w.s0
		for _, h := range w.held[w.h0:] {
			if len(cut)+int(h.nseg) >= maxIovecs {
				break
			}
			cut = append(cut, w.segv[at:at+int(h.nseg)]...)
			at += int(h.nseg)
			space += uint64(h.wlen)
		}
		w.cut = append(cut, tail)
		return w.cut, space
	}
	return w.withTail(end, tail), w.space
}

// withTail is segv[s0:end] followed by tail, in place: the tail goes
// past len(segv), where the next hold overwrites it.
func (w *window) withTail(end int, tail []byte) [][]byte {
	if end == cap(w.segv) {
		w.segv = append(w.segv, nil)[:end]
	}
	iov := w.segv[w.s0 : end+1]
	iov[end-w.s0] = tail
	return iov
}

// segsFrom is the writable segments of the held chains from the k-th
// oldest on.
func (w *window) segsFrom(k int) [][]byte {
	at := w.s0
	for _, h := range w.held[w.h0 : w.h0+k] {
		at += int(h.nseg)
	}
	return w.segv[at:]
}

// take removes the k oldest held chains (a frame used them; the caller
// pushes them).
func (w *window) take(k int) {
	for _, h := range w.held[w.h0 : w.h0+k] {
		w.space -= uint64(h.wlen)
		w.s0 += int(h.nseg)
		w.descs -= int(h.cost)
	}
	w.h0 += k
	w.fresh = min(w.fresh, w.count())
	if w.h0 == len(w.held) || w.h0 >= 64 {
		w.compact()
	}
}

// compact moves the windows to the start of their arrays.
func (w *window) compact() {
	n := copy(w.held, w.held[w.h0:])
	w.held, w.h0 = w.held[:n], 0
	m := copy(w.segv, w.segv[w.s0:])
	clear(w.segv[m:])
	w.segv, w.s0 = w.segv[:m], 0
}

// giveBack returns the fresh held chains to q (queue.Undo), newest
// first, so the queue's next-avail index counts only chains the device
// used or completed. The others stay held, to be used first.
func (w *window) giveBack(q *queue.Queue) {
	n := q.Undo(w.fresh)
	keep := len(w.held) - n
	segs := len(w.segv)
	for _, h := range w.held[keep:] {
		w.space -= uint64(h.wlen)
		segs -= int(h.nseg)
		w.descs -= int(h.cost)
	}
	clear(w.segv[segs:])
	w.held, w.segv = w.held[:keep], w.segv[:segs]
	w.fresh = 0
	w.compact()
}

// reset empties the window (a new activation); release also drops every
// reference to guest memory.
func (w *window) reset() {
	w.held, w.segv = w.held[:0], w.segv[:0]
	w.h0, w.s0, w.fresh, w.space, w.descs = 0, 0, 0, 0, 0
}

func (w *window) release() {
	clear(w.segv[:cap(w.segv)])
	clear(w.cut[:cap(w.cut)])
	w.cut = w.cut[:0]
	w.reset()
}

// check verifies the invariants above (for tests and fuzzing).
func (w *window) check() error {
	var space uint64
	segs, descs := 0, 0
	for _, h := range w.held[w.h0:] {
		if h.wlen < HdrLen {
			return fmt.Errorf("held chain with %d writable bytes", h.wlen)
		}
		var n uint64
		for _, b := range w.segv[w.s0+segs : w.s0+segs+int(h.nseg)] {
			n += uint64(len(b))
		}
		if n != uint64(h.wlen) {
			return fmt.Errorf("held chain segments hold %d bytes, snapshot says %d", n, h.wlen)
		}
		space += uint64(h.wlen)
		segs += int(h.nseg)
		descs += int(h.cost)
	}
	if space != w.space || segs != len(w.segv)-w.s0 || descs != w.descs || w.fresh > w.count() || w.fresh < 0 {
		return fmt.Errorf("window sums: space %d/%d segs %d/%d descs %d/%d fresh %d held %d",
			space, w.space, segs, len(w.segv)-w.s0, descs, w.descs, w.fresh, w.count())
	}
	return nil
}
