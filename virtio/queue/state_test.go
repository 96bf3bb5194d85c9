package queue_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// checkRing compares q.RingState with want and with the driver's own view
// of the same words.
func checkRing(t *testing.T, step string, q *queue.Queue, d *qt.Driver, want queue.RingState) {
	t.Helper()
	got := q.RingState()
	if got != want {
		t.Fatalf("%s: RingState\n got %+v\nwant %+v", step, got, want)
	}
	if got.UsedIdx != d.UsedIdx() || got.NoNotify() != d.NoNotify() {
		t.Fatalf("%s: used_idx %d no_notify %v, the driver reads %d %v", step, got.UsedIdx, got.NoNotify(), d.UsedIdx(), d.NoNotify())
	}
	if got.EventIdx && got.AvailEvent != d.AvailEvent() {
		t.Fatalf("%s: avail_event %d, the driver reads %d", step, got.AvailEvent, d.AvailEvent())
	}
}

func newQueue(t *testing.T, size uint16) *queue.Queue {
	t.Helper()
	q, err := queue.New(size)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func addN(t *testing.T, d *qt.Driver, n int) {
	t.Helper()
	for range n {
		if _, err := d.Add(qt.W(64)); err != nil {
			t.Fatal(err)
		}
	}
	d.Kick()
}

func popPush(t *testing.T, q *queue.Queue, n int) {
	t.Helper()
	var c queue.Chain
	for range n {
		if ok, err := q.Pop(&c); !ok || err != nil {
			t.Fatalf("pop: %v %v", ok, err)
		}
		q.Push(c.Head, 0)
	}
}

// TestRingStateFlags follows the ring words through a round without
// EVENT_IDX: avail.idx as the driver kicks, used.flags NO_NOTIFY as the
// device disables notifications, used.idx only once the device publishes,
// avail.flags NO_INTERRUPT as the driver disables interrupts.
func TestRingStateFlags(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8})
	q := newQueue(t, 8)
	if s := q.RingState(); s != (queue.RingState{Size: 8}) {
		t.Fatalf("queue not ready: %+v", s)
	}
	if err := d.Configure(q); err != nil {
		t.Fatal(err)
	}
	want := queue.RingState{Size: 8, Ready: true}
	checkRing(t, "fresh", q, d, want)

	addN(t, d, 3)
	want.AvailIdx = 3
	checkRing(t, "3 available", q, d, want)

	q.DisableNotifications()
	want.UsedFlags = 1
	checkRing(t, "notifications disabled", q, d, want)
	if !q.RingState().NoNotify() {
		t.Fatal("NoNotify false with VIRTQ_USED_F_NO_NOTIFY set")
	}

	popPush(t, q, 2)
	checkRing(t, "pushed, not published", q, d, want)
	q.Publish()
	want.UsedIdx = 2
	checkRing(t, "published", q, d, want)

	d.DisableInterrupts()
	want.AvailFlags = 1
	checkRing(t, "interrupts disabled", q, d, want)
	if !q.RingState().NoInterrupt() {
		t.Fatal("NoInterrupt false with VIRTQ_AVAIL_F_NO_INTERRUPT set")
	}

	if !q.EnableNotifications() { // one chain still available
		t.Fatal("EnableNotifications missed the third chain")
	}
	want.UsedFlags = 0
	checkRing(t, "notifications enabled", q, d, want)

	q.Reset()
	if s := q.RingState(); s != (queue.RingState{Size: 8}) {
		t.Fatalf("after Reset: %+v", s)
	}
}

// TestRingStateEventIdx follows used_event and avail_event across the
// 16-bit wrap: avail_event is the device's next avail index once it
// re-enables notifications, used_event what the driver wrote.
func TestRingStateEventIdx(t *testing.T) {
	var start uint16 = 0xfffe
	d := qt.MustNew(t, qt.Config{Size: 8, Features: qt.FeatureEventIdx})
	d.Resume(start, start)
	q := newQueue(t, 8)
	q.SetNextAvail(start)
	q.SetNextUsed(start)
	if err := d.Configure(q); err != nil {
		t.Fatal(err)
	}
	want := queue.RingState{Size: 8, Ready: true, EventIdx: true, AvailIdx: start, UsedIdx: start}
	checkRing(t, "fresh", q, d, want)

	d.SetUsedEvent(start + 2)
	addN(t, d, 4)
	want.UsedEvent, want.AvailIdx = start+2, start+4
	checkRing(t, "4 available", q, d, want)

	q.DisableNotifications() // with EVENT_IDX: no flag, avail_event stays
	checkRing(t, "notifications disabled", q, d, want)

	popPush(t, q, 3)
	q.Publish()
	want.UsedIdx = start + 3
	checkRing(t, "3 used", q, d, want)
	if !q.NeedsInterrupt() {
		t.Fatal("used_event passed without an interrupt")
	}

	if !q.EnableNotifications() {
		t.Fatal("EnableNotifications missed the fourth chain")
	}
	want.AvailEvent = start + 3
	checkRing(t, "notifications enabled", q, d, want)
	if q.NextAvail() != want.AvailEvent || q.NextUsed() != want.UsedIdx {
		t.Fatalf("NextAvail %d NextUsed %d", q.NextAvail(), q.NextUsed())
	}
	popPush(t, q, 1)
	q.Publish()
	q.EnableNotifications()
	want.UsedIdx, want.AvailEvent = start+4, start+4 // 2 and 2: wrapped
	checkRing(t, "wrapped", q, d, want)
}

// TestRingStateLog checks the slog form: the event words only with
// EVENT_IDX, nothing but size and ready for a queue that is not ready.
func TestRingStateLog(t *testing.T) {
	line := func(s queue.RingState) string {
		var b bytes.Buffer
		slog.New(slog.NewTextHandler(&b, nil)).Info("q", "ring", s)
		return b.String()
	}
	s := queue.RingState{Size: 256, Ready: true, AvailIdx: 7, AvailFlags: 1, UsedIdx: 5, UsedFlags: 1, UsedEvent: 9, AvailEvent: 3}
	got := line(s)
	for _, w := range []string{"ring.size=256", "ring.ready=true", "ring.avail_idx=7", "ring.used_idx=5",
		"ring.no_interrupt=true", "ring.no_notify=true", "ring.event_idx=false"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %s in %q", w, got)
		}
	}
	if strings.Contains(got, "used_event") || strings.Contains(got, "avail_event") {
		t.Errorf("event words without EVENT_IDX: %q", got)
	}
	s.EventIdx = true
	got = line(s)
	if !strings.Contains(got, "ring.used_event=9") || !strings.Contains(got, "ring.avail_event=3") {
		t.Errorf("event words missing: %q", got)
	}
	if got := line(queue.RingState{Size: 64}); strings.Contains(got, "avail_idx") || !strings.Contains(got, "ring.ready=false") {
		t.Errorf("not ready: %q", got)
	}
}

// TestRingStateConcurrent reads the ring words from another goroutine
// while the device and the driver work the ring, as a dump does (run it
// with -race: RingState must touch nothing the device writes).
func TestRingStateConcurrent(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 64, Features: qt.FeatureEventIdx})
	q := newQueue(t, 64)
	if err := d.Configure(q); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s := q.RingState(); !s.Ready || s.Size != 64 {
				t.Errorf("RingState %+v", s)
				return
			}
		}
	}()
	var c queue.Chain
	for range 2000 {
		if d.FreeDescs() > 0 {
			addN(t, d, 1)
		}
		if ok, _ := q.Pop(&c); ok {
			q.Push(c.Head, 0)
			q.Publish()
			q.EnableNotifications()
		}
		for {
			if _, ok := d.Used(); !ok {
				break
			}
		}
	}
	close(stop)
	wg.Wait()
}

// TestRingStatePacked follows a packed ring's event words and the
// descriptors at their off_wraps through a round with EVENT_IDX: the
// device asks for a kick at slot 0 wrap 1 and the driver makes a buffer
// available there (a kick owed), the driver asks for an interrupt at the
// same position and the device uses the buffer (an interrupt owed); the
// ring wraps and the same slot, now at wrap 0, is neither.
func TestRingStatePacked(t *testing.T) {
	d := qt.MustNewPacked(t, qt.Config{Size: 4, Features: qt.FeatureEventIdx})
	q := d.MustQueue(t)
	s := q.RingState()
	if !s.Packed || s.AvailAtDeviceEvent {
		t.Fatalf("fresh: %+v", s)
	}
	q.EnableNotifications()
	if s = q.RingState(); s.UsedFlags != queue.EventFlagsDesc || s.AvailEvent != 0x8000 || s.AvailAtDeviceEvent {
		t.Fatalf("device waits at 0/w1: %+v", s)
	}
	if _, err := d.Add(qt.W(64)); err != nil {
		t.Fatal(err)
	}
	d.Kick()
	if s = q.RingState(); !s.AvailAtDeviceEvent {
		t.Fatalf("a buffer at the device's off_wrap: %+v", s)
	}
	d.EnableInterrupts()
	if s = q.RingState(); s.AvailFlags != queue.EventFlagsDesc || s.UsedEvent != 0x8000 || s.UsedAtDriverEvent {
		t.Fatalf("driver waits at 0/w1, nothing used: %+v", s)
	}
	popPush(t, q, 1)
	q.Publish()
	if s = q.RingState(); !s.UsedAtDriverEvent || s.AvailAtDeviceEvent {
		t.Fatalf("used at the driver's off_wrap: %+v", s)
	}
	// Around the ring: slot 0's descriptor is the one used at wrap 1, so
	// off_wraps at slot 0 wrap 0 see neither an available nor a used one.
	d.SetDriverEvent(qt.EventDesc, 0)
	if s = q.RingState(); s.UsedAtDriverEvent {
		t.Fatalf("0/w0 after wrap 1's use: %+v", s)
	}
	// An off_wrap outside the ring reads nothing.
	d.SetDriverEvent(qt.EventDesc, 9)
	if s = q.RingState(); s.UsedAtDriverEvent {
		t.Fatalf("off_wrap slot 9 of 4: %+v", s)
	}
}

// TestPackedPos: slot and wrap counter as dumps print them.
func TestPackedPos(t *testing.T) {
	for p, want := range map[uint16]string{0x8040: "64/w1", 0x40: "64/w0", 0: "0/w0", 0xffff: "32767/w1"} {
		if got := queue.PackedPos(p); got != want {
			t.Errorf("PackedPos(%#x) = %q, want %q", p, got, want)
		}
	}
}
