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
	if g.clock != nil || g.resend != 0 {
		t.Fatalf("bound to clock %p with interval %v without a timer", g.clock, g.resend)
	}
	g.signal(q.Decided())
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
