package virtio

import (
	"encoding/binary"
	"testing"
	"time"
)

// resendGap binds no gap and a resend interval to memfdQueue's queue
// (EVENT_IDX or not), sends its decided notification and returns the
// gap, its interrupt and the driver's page.
func resendGap(t *testing.T, features uint64, resend time.Duration) (*irqGap, *stampIRQ, []byte) {
	t.Helper()
	q, _, host := memfdQueue(t, features)
	irq := &stampIRQ{at: make(chan time.Time, 4)}
	g := new(irqGap)
	g.bind(irq, 0, 0, resend, q)
	t.Cleanup(func() { g.settle(false) })
	if features != 0 && (g.clock == nil || g.clock.interval != resend) {
		t.Skip("no timerfd on this system: notifications are not checked")
	}
	g.signal(q.Decided(), false)
	<-irq.at
	return g, irq, host
}

const featureEventIdx = 1 << FeatureRingEventIdx

// TestIRQResendLost: a notification the driver still wants after the
// resend interval (its used_event did not move: it never ran) is sent
// again, once, and counted.
func TestIRQResendLost(t *testing.T) {
	const resend = 20 * time.Millisecond
	start := time.Now()
	g, irq, _ := resendGap(t, featureEventIdx, resend)
	select {
	case at := <-irq.at:
		if d := at.Sub(start); d < resend {
			t.Fatalf("sent again after %v, before the interval %v", d, resend)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the notification the driver still wanted was not sent again")
	}
	select {
	case <-irq.at:
		t.Fatal("sent a third time")
	case <-time.After(5 * resend):
	}
	if n := g.resent.Load(); n != 1 {
		t.Fatalf("%d counted as resent, want 1", n)
	}
}

// TestIRQResendNotWhenTaken: a driver that took the entries (it moved
// used_event to its last used index, as Linux does when its poll ends)
// gets nothing more.
func TestIRQResendNotWhenTaken(t *testing.T) {
	const resend = 20 * time.Millisecond
	g, irq, host := resendGap(t, featureEventIdx, resend)
	binary.LittleEndian.PutUint16(host[0x114:], 1) // used_event: past the entry published
	select {
	case <-irq.at:
		t.Fatal("sent again to a driver that had taken the entries")
	case <-time.After(5 * resend):
	}
	if n := g.resent.Load(); n != 0 {
		t.Fatalf("%d counted as resent", n)
	}
}

// TestIRQResendNeedsEventIdx: without EVENT_IDX the driver's flags
// cannot tell taken entries from lost notifications, so nothing is
// checked (and no timer is opened for it).
func TestIRQResendNeedsEventIdx(t *testing.T) {
	g, irq, _ := resendGap(t, 0, 20*time.Millisecond)
	if g.clock != nil || g.tfd != nil {
		t.Fatalf("resend clock %p, timer %v on a queue without EVENT_IDX", g.clock, g.tfd)
	}
	select {
	case <-irq.at:
		t.Fatal("sent again without EVENT_IDX")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestIRQResendInDumps: resent notifications show in the engine's state
// and dump attributes.
func TestIRQResendInDumps(t *testing.T) {
	var e Engine
	var g Engines
	g.Init("virtio-test", 1, &FeatureSet{}, Lane{Engine: &e, Queue: 0, Name: "rx"})
	e.gap.resent.Store(2)
	s := g.States()[0]
	if s.IRQResent != 2 {
		t.Fatalf("States reports %d resent", s.IRQResent)
	}
	a := s.Attrs()
	if last := a[len(a)-1]; last.Key != "irq_resent" || last.Value.Uint64() != 2 {
		t.Fatalf("attributes %v", a)
	}
}
