package queue_test

import (
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// addUse makes n buffers available and has the device use and publish
// them (no decision).
func addUse(t *testing.T, d *qt.Driver, q *queue.Queue, n int) {
	t.Helper()
	for range n {
		if _, err := d.Add(qt.W(8)); err != nil {
			t.Fatal(err)
		}
	}
	d.Kick()
	if got := popPushAll(t, q); got != n {
		t.Fatalf("used %d buffers, want %d", got, n)
	}
	d.AllUsed() // the driver takes them back (its suppression words untouched)
}

// TestStillWantsSplit: asked again, a split ring's driver wants the held
// notification until it moves used_event past the published entries (or
// sets NO_INTERRUPT); entries published after the decision count too; a
// span of 2^16 entries or more is always wanted (the 16-bit test would
// wrap).
func TestStillWantsSplit(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: qt.FeatureEventIdx})
	q := d.MustQueue(t)
	d.SetUsedEvent(0)
	addUse(t, d, q, 1) // used.idx 0 -> 1, passes used_event 0
	if !q.NeedsInterrupt() {
		t.Fatal("no notification decided")
	}
	from := q.Decided()
	if !q.StillWants(from) {
		t.Fatal("the driver did not move: the notification is no longer wanted")
	}
	d.SetUsedEvent(1) // it consumed entry 0 and asks about the next one
	if q.StillWants(from) {
		t.Fatal("used_event moved past the published entries: still wanted")
	}
	addUse(t, d, q, 1) // used.idx 2 passes used_event 1
	if !q.StillWants(from) {
		t.Fatal("an entry published later passed used_event: not wanted")
	}
	d.SetUsedEvent(2)
	if q.StillWants(from) {
		t.Fatal("used_event past both entries: still wanted")
	}
	// 2^16 more entries: used.idx is back where it was, so the position
	// test alone would say used_event (just ahead) was not passed.
	for range 1 << 13 {
		addUse(t, d, q, 8)
	}
	d.SetUsedEvent(q.NextUsed() + 5)
	if !q.StillWants(from) {
		t.Fatal("2^16 entries since the decision: not wanted")
	}
}

// TestStillWantsFlags: without EVENT_IDX the driver's NO_INTERRUPT flag
// decides.
func TestStillWantsFlags(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8})
	q := d.MustQueue(t)
	addUse(t, d, q, 2)
	if !q.NeedsInterrupt() {
		t.Fatal("no notification decided")
	}
	from := q.Decided()
	d.SetNoInterrupt(true)
	if q.StillWants(from) {
		t.Fatal("NO_INTERRUPT set: still wanted")
	}
	d.SetNoInterrupt(false)
	if !q.StillWants(from) {
		t.Fatal("NO_INTERRUPT clear: not wanted")
	}
}

// TestStillWantsPacked: a packed ring's driver event: DISABLE never,
// ENABLE always, DESC while off_wrap lies within the entries published
// since the decision, so always once they span two laps (where the
// position alone would look as if nothing had moved).
func TestStillWantsPacked(t *testing.T) {
	const size = 5
	d, q := packedPair(t, qt.Config{Size: size, Features: qt.FeatureEventIdx})
	var c queue.Chain
	use := func(n int) {
		t.Helper()
		for range n {
			packedUseOne(t, d, q, &c)
		}
	}
	d.SetDriverEvent(qt.EventEnable, 0)
	start := q.NextUsed()
	use(2)
	if !q.NeedsInterrupt() {
		t.Fatal("ENABLE: no notification decided")
	}
	from := q.Decided()
	if !q.StillWants(from) {
		t.Fatal("ENABLE: not wanted")
	}
	d.DisableInterrupts()
	if q.StillWants(from) {
		t.Fatal("DISABLE: still wanted")
	}
	d.SetDriverEvent(qt.EventDesc, advancePos(start, 1, size)) // the second entry
	if !q.StillWants(from) {
		t.Fatal("DESC within the published entries: not wanted")
	}
	d.SetDriverEvent(qt.EventDesc, advancePos(start, 2, size)) // the next one to come
	if q.StillWants(from) {
		t.Fatal("DESC past the published entries: still wanted")
	}
	use(2 * size) // two laps: the position is back at the same slot and wrap
	d.SetDriverEvent(qt.EventDesc, advancePos(q.NextUsed(), 1, size))
	if !q.StillWants(from) {
		t.Fatal("two laps since the decision: not wanted")
	}
}

// TestStillWantsSplitAcrossWrap: a span that crosses used.idx's 16-bit
// wrap (a queue resumed near it, as after a vhost-user reconnect) is
// tested modulo 2^16: used_event past the wrap but within the span is
// wanted, one at the span's end or behind its start is not.
func TestStillWantsSplitAcrossWrap(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: qt.FeatureEventIdx})
	const start = 0xfffe
	d.Resume(start, start)
	q, _ := queue.New(8)
	if q.SetNextAvail(start) != nil || q.SetNextUsed(start) != nil || d.Configure(q) != nil {
		t.Fatal("the queue does not resume at 0xfffe")
	}
	d.SetUsedEvent(start)
	addUse(t, d, q, 1) // 0xfffe -> 0xffff
	if !q.NeedsInterrupt() {
		t.Fatal("no notification decided")
	}
	from := q.Decided()
	addUse(t, d, q, 3) // 0xffff -> 0x0002: the span is [0xfffe, 0x0002)
	for _, tc := range []struct {
		event uint16
		want  bool
	}{{0xfffe, true}, {0x0000, true}, {0x0001, true}, {0x0002, false}, {0xfffd, false}, {0x8000, false}} {
		d.SetUsedEvent(tc.event)
		if got := q.StillWants(from); got != tc.want {
			t.Errorf("used_event %#04x: wanted %v, want %v", tc.event, got, tc.want)
		}
	}
}
