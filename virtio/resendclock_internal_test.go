package virtio

import (
	"testing"
	"time"
)

// indexIRQ records which queue each notification was for.
type indexIRQ struct{ sent chan int }

func (s *indexIRQ) Signal(i int) error  { s.sent <- i; return nil }
func (s *indexIRQ) SignalConfig() error { return nil }
func (s *indexIRQ) NeedsReset() error   { return nil }

// sharedPair binds two gaps, queues 0 and 1 on EVENT_IDX rings whose
// driver never moves used_event (every notification stays wanted), to
// one resend clock.
func sharedPair(t *testing.T, interval time.Duration) (a, b *irqGap, irq *indexIRQ, clock *resendClock) {
	t.Helper()
	clock = newResendClock(interval)
	if clock == nil {
		t.Skip("no timerfd on this system: notifications are not checked")
	}
	t.Cleanup(clock.close)
	irq = &indexIRQ{sent: make(chan int, 256)}
	a, b = new(irqGap), new(irqGap)
	for i, g := range []*irqGap{a, b} {
		q, _, _ := memfdQueue(t, featureEventIdx)
		g.bindShared(irq, i, 0, interval, q, clock)
		t.Cleanup(func() { g.settle(false) })
		if g.clock != clock || g.ownClock {
			t.Fatalf("gap %d: clock %p (own %v), want the shared %p", i, g.clock, g.ownClock, clock)
		}
	}
	return a, b, irq, clock
}

// expectSent waits for a notification for queue want.
func expectSent(t *testing.T, irq *indexIRQ, want int, what string) {
	t.Helper()
	select {
	case got := <-irq.sent:
		if got != want {
			t.Fatalf("%s: notification for queue %d, want %d", what, got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no notification for queue %d", what, want)
	}
}

// TestResendClockOneCheckPerDevice: queue 0's notification is not
// checked while queue 1 keeps notifying more often than the interval
// (the frontend that loses them takes every queue on one interrupt, so
// each later notification would have brought it); once the device is
// quiet for the interval, both queues' last notifications, still
// wanted, are sent again, once each. A clock per queue would resend
// queue 0's during queue 1's notifications.
func TestResendClockOneCheckPerDevice(t *testing.T) {
	const interval = 100 * time.Millisecond
	const step = interval / 10
	for attempt := 1; ; attempt++ {
		a, b, irq, _ := sharedPair(t, interval)
		a.signal(a.q.Decided(), false)
		expectSent(t, irq, 0, "queue 0's notification")
		last, quiet := time.Now(), true
		for start := last; time.Since(start) < 5*interval && quiet; {
			time.Sleep(step)
			b.signal(b.q.Decided(), false)
			expectSent(t, irq, 1, "queue 1's notification")
			// A sleep stretched past the interval on a loaded machine is
			// a quiet device: a check then is right, and the attempt is
			// void.
			now := time.Now()
			quiet = now.Sub(last) < interval/2
			last = now
			select {
			case got := <-irq.sent:
				if quiet {
					t.Fatalf("queue %d's notification was sent again while queue 1 kept notifying", got)
				}
			default:
			}
		}
		if !quiet {
			if attempt == 5 {
				t.Skip("the machine never let queue 1 notify within half the interval")
			}
			t.Logf("attempt %d: a gap of half the interval between queue 1's notifications; again", attempt)
			continue
		}
		got := map[int]int{}
		for range 2 {
			select {
			case i := <-irq.sent:
				got[i]++
			case <-time.After(5 * time.Second):
				t.Fatalf("once quiet, sent again: %v; want queues 0 and 1 once each", got)
			}
		}
		if got[0] != 1 || got[1] != 1 {
			t.Fatalf("once quiet, sent again: %v; want queues 0 and 1 once each", got)
		}
		select {
		case i := <-irq.sent:
			t.Fatalf("queue %d's notification sent a third time", i)
		case <-time.After(3 * interval):
		}
		if a.resent.Load() != 1 || b.resent.Load() != 1 {
			t.Fatalf("counted as resent: %d and %d, want 1 and 1", a.resent.Load(), b.resent.Load())
		}
		return
	}
}

// TestResendClockOfPastActivation: a clock the gap no longer belongs to
// (a past activation's timer firing late) checks nothing; the gap's own
// clock does.
func TestResendClockOfPastActivation(t *testing.T) {
	a, _, irq, clock := sharedPair(t, time.Hour)
	a.signal(a.q.Decided(), false)
	expectSent(t, irq, 0, "the notification")
	a.mu.Lock()
	a.last = a.last.Add(-time.Hour) // sent an interval ago: a check is due
	a.mu.Unlock()
	past := newResendClock(time.Hour)
	if past == nil {
		t.Skip("no second timerfd")
	}
	defer past.close()
	a.recheck(past)
	select {
	case i := <-irq.sent:
		t.Fatalf("a past clock's check sent queue %d's notification again", i)
	case <-time.After(20 * time.Millisecond):
	}
	a.recheck(clock)
	expectSent(t, irq, 0, "the gap's own clock's check")
}

// TestEnginesShareResendClock: the lanes an Engines starts with a resend
// interval check through one clock, which Stop closes; a lane with
// another interval has one of its own.
func TestEnginesShareResendClock(t *testing.T) {
	var e0, e1, e2 Engine
	var g Engines
	g.Init("virtio-test", 3, &FeatureSet{},
		Lane{Engine: &e0, Queue: 0, Name: "rx", IRQResend: time.Hour},
		Lane{Engine: &e1, Queue: 1, Name: "tx", IRQResend: time.Hour},
		Lane{Engine: &e2, Queue: 2, Name: "ctl", IRQResend: time.Minute})
	queues := make([]Queue, 3)
	for i := range queues {
		queues[i].Ring, _, _ = memfdQueue(t, featureEventIdx)
	}
	if err := g.Bind(queues, &indexIRQ{sent: make(chan int, 4)}); err != nil {
		t.Fatal(err)
	}
	shared := e0.gap.clock
	if shared == nil {
		g.Stop(nil)
		t.Skip("no timerfd on this system: notifications are not checked")
	}
	if e1.gap.clock != shared || g.clock != shared || e0.gap.ownClock || e1.gap.ownClock {
		t.Fatalf("clocks %p %p (Engines %p): want one shared", shared, e1.gap.clock, g.clock)
	}
	if e2.gap.clock == shared || !e2.gap.ownClock {
		t.Fatal("the lane with another interval joined the shared clock")
	}
	g.Stop(nil)
	if shared.arm() {
		t.Fatal("the shared clock still arms after Stop")
	}
	if e0.gap.clock != nil || e2.gap.clock != nil || g.clock != nil {
		t.Fatal("a clock is still bound after Stop")
	}
}

// TestResendClockNoAllocs: a notification that arms the device's clock
// allocates nothing (it runs per publish on the data path).
func TestResendClockNoAllocs(t *testing.T) {
	a, _, irq, _ := sharedPair(t, time.Hour)
	n := testing.AllocsPerRun(200, func() {
		a.signal(a.q.Decided(), false)
		<-irq.sent
	})
	if n != 0 {
		t.Fatalf("%v allocations per notification", n)
	}
	if !a.check {
		t.Fatal("the notification was not put up for a check")
	}
}
