package queue_test

import (
	"errors"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// popOne makes head available, pops it and returns Pop's answer.
func popOne(d *qt.Driver, q *queue.Queue, c *queue.Chain, head uint16) (bool, error) {
	d.AddHead(head)
	d.Kick()
	return q.Pop(c)
}

// oneBufRing returns a ring of size with every ring feature, whose
// descriptor 0 is a writable buffer of n bytes at buf.
func oneBufRing(t *testing.T, size uint16, n uint32) (d *qt.Driver, q *queue.Queue, buf uint64) {
	d = qt.MustNew(t, qt.Config{Size: size, Features: allRing})
	q = d.MustQueue(t)
	buf = d.Alloc(uint64(n))
	d.SetDesc(0, qt.Desc{Addr: buf, Len: n, Flags: qt.DescWrite})
	return d, q, buf
}

// linkDescs points descriptors [0, n) of the table at one another in
// order, each an empty readable buffer at addr, the last one without
// NEXT.
func linkDescs(d *qt.Driver, n int, addr uint64) {
	descs := make([]qt.Desc, n)
	for i := range descs {
		descs[i] = qt.Desc{Addr: addr, Flags: qt.DescNext, Next: uint16(i + 1)}
	}
	descs[n-1].Flags = 0
	d.WriteDescs(d.Config().DescAddr, descs...)
}

// TestQueueSizeOne runs the smallest split ring: one descriptor, one
// avail slot, one used slot, so every index wraps at every step.
func TestQueueSizeOne(t *testing.T) {
	d, q, buf := oneBufRing(t, 1, 8)
	var c queue.Chain
	for i := range 70000 { // past the 16-bit wrap of every index
		if ok, err := popOne(d, q, &c, 0); !ok || err != nil || c.WriteLen != 8 {
			t.Fatalf("pop %d: %v %v, %d bytes", i, ok, err, c.WriteLen)
		}
		if q.Undo(2) != 1 {
			t.Fatalf("pop %d: Undo gave back other than the one chain", i)
		}
		mustPop(t, q, &c)
		q.Push(c.Head, 8)
		q.Publish()
	}
	d.SetDesc(0, qt.Desc{Addr: buf, Len: 8, Flags: qt.DescNext, Next: 0})
	if _, err := popOne(d, q, &c, 0); err != queue.ErrChainLoop {
		t.Fatalf("a descriptor chained to itself: %v", err)
	}
	d.SetDesc(0, qt.Desc{Addr: buf, Len: 8, Flags: qt.DescNext, Next: 1})
	if _, err := popOne(d, q, &c, 0); err != queue.ErrDescIndex {
		t.Fatalf("next 1 in a table of 1: %v", err)
	}
	if _, err := popOne(d, q, &c, 1); err != queue.ErrHeadIndex {
		t.Fatalf("head 1: %v", err)
	}
	d.AddHead(0)
	d.AddHead(0)
	d.Kick()
	if _, err := q.Pop(&c); err != queue.ErrBroken {
		t.Fatalf("two entries on a ring of one: %v", err)
	}
}

// TestQueueSizeMax walks the longest chains the largest split ring
// allows: every descriptor of the table in one chain is accepted and one
// more (a loop) is not, and that chain may end in an indirect table of
// 65536 entries. The avail index may run exactly a whole ring ahead.
func TestQueueSizeMax(t *testing.T) {
	const size = queue.MaxSize
	d := qt.MustNew(t, qt.Config{Size: size, Features: allRing, DataSize: 16<<16 + 4096})
	q := d.MustQueue(t)
	table := d.Alloc(16 << 16)
	buf := d.Alloc(64)
	var c queue.Chain

	linkDescs(d, size, buf)
	d.SetDesc(size-1, qt.Desc{Addr: buf, Len: 64, Flags: qt.DescWrite})
	if ok, err := popOne(d, q, &c, 0); !ok || err != nil || c.Descs() != size || c.WriteLen != 64 {
		t.Fatalf("chain of the whole table: %v %v, %d descriptors", ok, err, c.Descs())
	}
	q.Push(c.Head, 0)

	d.SetDesc(size-1, qt.Desc{Addr: buf, Flags: qt.DescNext, Next: 0})
	if _, err := popOne(d, q, &c, 0); err != queue.ErrChainLoop {
		t.Fatalf("whole table looping: %v", err)
	}

	ind := make([]qt.Desc, 1<<16)
	for i := range ind {
		ind[i] = qt.Desc{Addr: buf, Flags: qt.DescNext, Next: uint16(i + 1)}
	}
	ind[len(ind)-1] = qt.Desc{Addr: buf, Len: 1, Flags: qt.DescWrite}
	d.WriteDescs(table, ind...)
	d.SetDesc(size-1, qt.Desc{Addr: table, Len: 16 << 16, Flags: qt.DescIndirect})
	if ok, err := popOne(d, q, &c, 0); !ok || err != nil || c.Descs() != size+1<<16 || c.WriteLen != 1 {
		t.Fatalf("whole table then a full indirect table: %v %v, %d descriptors", ok, err, c.Descs())
	}
	q.Push(c.Head, 0)

	ind[len(ind)-1] = qt.Desc{Addr: buf, Flags: qt.DescNext, Next: 0}
	d.WriteDescs(table, ind...)
	if _, err := popOne(d, q, &c, 0); err != queue.ErrChainLoop {
		t.Fatalf("full indirect table looping: %v", err)
	}

	d.SetDesc(0, qt.Desc{Addr: buf, Len: 1})
	for range size {
		d.AddHead(0)
	}
	d.Kick()
	for i := range size {
		if ok, err := q.Pop(&c); !ok || err != nil {
			t.Fatalf("entry %d of a whole ring: %v %v", i, ok, err)
		}
		q.Push(c.Head, 0)
	}
	q.Publish()
	d.SetAvailIdx(d.AvailIdx() + size + 1)
	if _, err := q.Pop(&c); !errors.Is(err, queue.ErrBroken) {
		t.Fatalf("avail.idx a ring and one ahead: %v", err)
	}
}

// TestUndoThenRewrittenEntry gives chains back and lets the driver
// rewrite their avail entries before the device pops them
// again: each second pop walks what is there now, with every check, and
// a malformed entry there still ends Undo's reach.
func TestUndoThenRewrittenEntry(t *testing.T) {
	d, q, buf := oneBufRing(t, 4, 16)
	var c queue.Chain
	d.SetDesc(1, qt.Desc{Addr: buf, Len: 4, Flags: qt.DescNext, Next: 1})
	for range 3 {
		d.AddHead(0)
	}
	d.Kick()
	for range 3 {
		mustPop(t, q, &c)
	}
	if q.Undo(2) != 2 {
		t.Fatal("Undo did not give back the two newest chains")
	}
	slot := d.Bytes(d.Config().AvailAddr+6, 4)
	slot[0], slot[2] = 7, 1 // head 7 (out of range), then head 1 (a loop)
	if _, err := q.Pop(&c); err != queue.ErrHeadIndex {
		t.Fatalf("re-pop of an entry rewritten to head 7: %v", err)
	}
	if _, err := q.Pop(&c); err != queue.ErrChainLoop {
		t.Fatalf("re-pop of an entry rewritten to a loop: %v", err)
	}
	if q.Undo(2) != 0 {
		t.Fatal("Undo stepped back over malformed entries")
	}
	q.Publish()
	if u := d.AllUsed(); len(u) != 1 || u[0].ID != 1 || u[0].Len != 0 {
		t.Fatalf("used elements %+v, want only the loop completed, empty", u)
	}
}
