package queue_test

import (
	"errors"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// serveUntilIdle runs a device's loop over q (pop, push, publish,
// re-enable notifications, again while EnableNotifications reports
// more) without the driver doing anything, and reports whether it went
// idle (or broke the queue) within limit pops.
func serveUntilIdle(q *queue.Queue, limit int) bool {
	var c queue.Chain
	for pops := 0; pops < limit; {
		ok, err := q.Pop(&c)
		switch {
		case err == queue.ErrBroken:
			return true
		case ok:
			q.Push(c.Head, 0)
			pops++
		case errors.Is(err, queue.ErrMalformedChain):
			pops++
		default:
			q.Publish()
			q.NeedsInterrupt()
			if !q.EnableNotifications() {
				return true
			}
		}
	}
	return false
}

// overlappedRing is a split ring whose used ring lies on its avail ring
// (used.idx is avail.idx): allowed by Validate, and harmless as long as
// the used index the device publishes is never ahead of the avail index
// it consumed. Descriptor 0 is a valid one-byte buffer.
func overlappedRing(t *testing.T, size uint16) *qt.Driver {
	const base = 1 << 20
	d := qt.MustNew(t, qt.Config{Size: size, MemBase: base, AvailAddr: base + 0x1000, UsedAddr: base + 0x1000, DataAddr: base + 0x4000})
	d.SetDesc(0, qt.Desc{Addr: d.Alloc(1), Len: 1})
	return d
}

// TestSkippedHeadsCannotPutUsedAheadOfAvail: entries naming a head out
// of range are skipped without a used element, so each one left the used
// index one further behind the avail index. After 2^16-1 of them it was
// one ahead (16-bit), and with the used ring over the avail ring each
// Publish then made one more entry available: the device fed itself
// forever, no driver needed. The queue must break first (or, failing
// that, go idle).
func TestSkippedHeadsCannotPutUsedAheadOfAvail(t *testing.T) {
	const size = 4
	d := overlappedRing(t, size)
	q := d.MustQueue(t)
	var c queue.Chain
	skipped := 0
	for idx := 0; idx < 1<<16-1 && !q.Broken(); idx++ {
		d.AddHead(size) // out of range
		d.Kick()
		switch _, err := q.Pop(&c); err {
		case queue.ErrHeadIndex:
			skipped++
		case queue.ErrBroken:
		default:
			t.Fatalf("entry %d: %v", idx, err)
		}
	}
	if skipped != 1<<15-1 {
		t.Errorf("%d entries skipped before the queue broke, want 32767", skipped)
	}
	d.AddHead(0)
	d.Kick()
	if !serveUntilIdle(q, 1<<20) {
		t.Fatal("the device kept popping entries its own used index made available")
	}
}

// TestResumedUsedIndexAheadOfAvail: a queue resumed (vhost-user takes
// the used index from guest memory, which the guest writes) with the
// used index ahead of the avail index fed itself the same way.
func TestResumedUsedIndexAheadOfAvail(t *testing.T) {
	const size = 4
	d := overlappedRing(t, size)
	d.Resume(0, 1) // the shared word ends up 1
	for i := range uint16(size) {
		d.SetDesc(i, qt.Desc{Addr: d.Config().DataAddr, Len: 1})
	}
	q, err := queue.New(size)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetNextAvail(0); err != nil {
		t.Fatal(err)
	}
	if err := q.SetNextUsed(1); err != nil {
		t.Fatal(err)
	}
	if err := d.Configure(q); err != nil {
		return // refused: fine
	}
	if !serveUntilIdle(q, 1<<20) {
		t.Fatal("the device kept popping entries its own used index made available")
	}
}

// TestValidateUsedLag: a queue resumes with its used index at most 32767
// entries behind its avail index (16-bit), never ahead.
func TestValidateUsedLag(t *testing.T) {
	for _, tc := range []struct {
		avail, used uint16
		ok          bool
	}{
		{0, 0, true},
		{0x7fff, 0, true},
		{0x8000, 0, false},
		{0, 1, false},
		{3, 0xfffc, true},
		{0xfffc, 3, false},
	} {
		d := qt.MustNew(t, qt.Config{Size: 8})
		q, _ := queue.New(8)
		q.SetNextAvail(tc.avail)
		q.SetNextUsed(tc.used)
		if err := d.Configure(q); (err == nil) != tc.ok {
			t.Errorf("avail %#x used %#x: %v", tc.avail, tc.used, err)
		}
	}
}
