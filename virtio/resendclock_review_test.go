package virtio

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestResendClockRefusedTimer: a gap whose resend clock the system
// refuses (no timerfd: out of descriptors) checks nothing and unbinds
// without a fault, bound alone or through Engines, and again on a
// rebind.
func TestResendClockRefusedTimer(t *testing.T) {
	defer func(f func() (*os.File, error)) { newTimerFile = f }(newTimerFile)
	newTimerFile = func() (*os.File, error) { return nil, errors.New("no timerfd for this test") }

	q, _, _ := memfdQueue(t, featureEventIdx)
	irq := &indexIRQ{sent: make(chan int, 4)}
	var g irqGap
	g.bind(irq, 0, 0, time.Millisecond, q)
	if g.clock != nil {
		t.Fatalf("bound to clock %p without a timer", g.clock)
	}
	g.signal(q.Decided(), false)
	expectSent(t, irq, 0, "the notification")
	g.bind(irq, 0, 0, time.Millisecond, q) // a Bind without Release
	g.settle(false)

	var e0, e1 Engine
	var eng Engines
	eng.Init("virtio-test", 2, &FeatureSet{},
		Lane{Engine: &e0, Queue: 0, Name: "rx", IRQResend: time.Millisecond},
		Lane{Engine: &e1, Queue: 1, Name: "tx", IRQResend: time.Millisecond})
	queues := make([]Queue, 2)
	for i := range queues {
		queues[i].Ring, _, _ = memfdQueue(t, featureEventIdx)
	}
	if err := eng.Bind(queues, irq); err != nil {
		t.Fatal(err)
	}
	eng.Stop(nil)
}

// TestResendClockExpiryBeforeSend: the clock's goroutine that read an
// expiry (the device was quiet for the interval) and then meets a
// notification sent meanwhile, which armed the clock again, leaves it to
// that later expiry: checked at once, it would be sent again before the
// driver could take it, and its check used up, a notification the
// frontend lost would never be checked.
func TestResendClockExpiryBeforeSend(t *testing.T) {
	const interval = 50 * time.Millisecond
	a, _, irq, clock := sharedPair(t, interval)
	a.signal(a.q.Decided(), false)
	expectSent(t, irq, 0, "the notification")
	sent := time.Now()
	clock.fire() // the expiry read just before the send above
	select {
	case i := <-irq.sent:
		if time.Since(sent) < interval {
			t.Fatalf("queue %d's notification was checked and sent again at once", i)
		}
		// A test goroutine preempted for the interval: the check was due.
		t.Logf("sent again after %v", time.Since(sent))
	default:
		expectSent(t, irq, 0, "the check once the device was quiet")
		if d := time.Since(sent); d < interval {
			t.Fatalf("sent again after %v, before the interval %v", d, interval)
		}
	}
	if n := a.resent.Load(); n != 1 {
		t.Fatalf("counted as resent: %d, want 1", n)
	}
}
