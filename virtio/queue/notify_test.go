package queue_test

import (
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

func TestNeedEventFormula(t *testing.T) {
	for _, tc := range []struct {
		event, cur, old uint16
		want            bool
	}{
		{0, 1, 0, true},            // event == old
		{0, 0, 0, false},           // nothing moved
		{5, 5, 0, false},           // event == cur: not yet passed
		{4, 5, 0, true},            // event == cur-1
		{6, 5, 0, false},           // event ahead
		{0xffff, 2, 0xfffe, true},  // batch across wrap covers event
		{0xfffd, 2, 0xfffe, false}, // event behind old across wrap
		{1, 2, 0xfffe, true},
		{2, 2, 0xfffe, false},
		{0x7fff, 0x8000, 0, true},
	} {
		if got := queue.NeedEvent(tc.event, tc.cur, tc.old); got != tc.want {
			t.Errorf("needEvent(%#x, %#x, %#x) = %v", tc.event, tc.cur, tc.old, got)
		}
	}
}

// popPushAll pops everything available, pushes each with len 0 and
// publishes once.
func popPushAll(t *testing.T, q *queue.Queue) int {
	t.Helper()
	var c queue.Chain
	n := 0
	for {
		ok, err := q.Pop(&c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		q.Push(c.Head, 0)
		n++
	}
	q.Publish()
	return n
}

func TestEventIdxInterruptsAcrossWrap(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: qt.FeatureEventIdx})
	const start = 0xfffa
	d.Resume(start, start)
	q, _ := queue.New(8)
	q.SetNextAvail(start)
	q.SetNextUsed(start)
	if err := d.Configure(q); err != nil {
		t.Fatal(err)
	}
	add := func(n int) {
		for range n {
			if _, err := d.Add(qt.W(8)); err != nil {
				t.Fatal(err)
			}
		}
		d.Kick()
	}
	// Driver wants an interrupt once used.idx passes 0xfffc.
	d.SetUsedEvent(0xfffc)
	add(2)
	popPushAll(t, q) // used: fffa -> fffc; event fffc not in [fffa, fffc)
	if q.NeedsInterrupt() {
		t.Fatal("interrupt before used_event passed")
	}
	add(1)
	popPushAll(t, q) // fffc -> fffd: covers fffc
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt when used.idx passed used_event")
	}
	if q.NeedsInterrupt() {
		t.Fatal("second interrupt with nothing new published")
	}
	d.AllUsed()
	d.SetUsedEvent(0x0001) // across the wrap
	add(3)
	popPushAll(t, q) // fffd -> 0000
	if q.NeedsInterrupt() {
		t.Fatal("interrupt before wrapped used_event")
	}
	add(3)
	popPushAll(t, q) // 0000 -> 0003 covers 0001
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt after wrapped used_event")
	}
	if got := d.UsedIdx(); got != 3 {
		t.Fatalf("used.idx %#x", got)
	}
	if got := len(d.AllUsed()); got != 6 {
		t.Fatalf("driver read %d used", got)
	}
}

func TestNoInterruptFlagWithoutEventIdx(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8})
	q := d.MustQueue(t)
	d.SetUsedEvent(0x1234) // must be ignored without EVENT_IDX
	d.Add(qt.W(4))
	d.Kick()
	popPushAll(t, q)
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt with NO_INTERRUPT clear")
	}
	d.SetNoInterrupt(true)
	d.Add(qt.W(4))
	d.Kick()
	popPushAll(t, q)
	if q.NeedsInterrupt() {
		t.Fatal("interrupt despite NO_INTERRUPT")
	}
	if q.NeedsInterrupt() {
		t.Fatal("interrupt with nothing published")
	}
}

func TestBatchingPublishesOnce(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 16, Features: qt.FeatureEventIdx})
	q := d.MustQueue(t)
	d.SetUsedEvent(0)
	for range 5 {
		d.Add(qt.W(16))
	}
	d.Kick()
	var c queue.Chain
	var heads []uint16
	for range 5 {
		mustPop(t, q, &c)
		heads = append(heads, c.Head)
		q.Push(c.Head, uint32(len(heads)))
		if d.PendingUsed() != 0 {
			t.Fatal("Push published")
		}
	}
	if !q.Publish() || d.UsedIdx() != 5 {
		t.Fatalf("used.idx %d", d.UsedIdx())
	}
	if !q.NeedsInterrupt() || q.NeedsInterrupt() {
		t.Fatal("want exactly one interrupt for the batch")
	}
	for i, u := range d.AllUsed() {
		if u.ID != uint32(heads[i]) || u.Len != uint32(i+1) {
			t.Fatalf("used[%d] = %+v", i, u)
		}
	}
}

func TestNotificationSuppressionFlags(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8})
	q := d.MustQueue(t)
	q.DisableNotifications()
	if !d.NoNotify() {
		t.Fatal("NO_NOTIFY not set")
	}
	d.Add(qt.W(4))
	if d.Kick() {
		t.Fatal("driver would kick despite NO_NOTIFY")
	}
	// The race: the buffer arrived while notifications were off.
	if !q.EnableNotifications() {
		t.Fatal("EnableNotifications missed the pending buffer")
	}
	if d.NoNotify() {
		t.Fatal("NO_NOTIFY still set")
	}
	popPushAll(t, q)
	if q.EnableNotifications() {
		t.Fatal("EnableNotifications reports work on an empty ring")
	}
	d.Add(qt.W(4))
	if !d.Kick() {
		t.Fatal("driver would not kick with notifications enabled")
	}
}

func TestNotificationSuppressionEventIdx(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: qt.FeatureEventIdx})
	q := d.MustQueue(t)
	d.Add(qt.W(4))
	d.Add(qt.W(4))
	if !d.Kick() { // avail_event 0 is crossed by 0 -> 2
		t.Fatal("first kick suppressed")
	}
	q.DisableNotifications()
	popPushAll(t, q)
	d.Add(qt.W(4))
	if d.Kick() {
		t.Fatal("kick while device polls (avail_event stale)")
	}
	if !q.EnableNotifications() {
		t.Fatal("missed the buffer added while polling")
	}
	if d.AvailEvent() != 2 {
		t.Fatalf("avail_event %d, want 2", d.AvailEvent())
	}
	popPushAll(t, q)
	if q.EnableNotifications() || d.AvailEvent() != 3 {
		t.Fatalf("avail_event %d", d.AvailEvent())
	}
	d.Add(qt.W(4))
	if !d.Kick() {
		t.Fatal("no kick after enabling")
	}
}
