package netdev

import (
	"sync/atomic"
	"testing"
	"time"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestMQFlapBounded: a driver that flaps VQ_PAIRS_SET between 1 and 4
// pairs gets its backends switched (TUNSETQUEUE: a grace period under
// the host's RTNL lock each) only as often as the switch budget allows.
// With the budget's clock stopped, the command that would go over it is
// left unanswered and switches nothing; once the clock moves on it is
// answered, and the pairs are as it asked.
func TestMQFlapBounded(t *testing.T) {
	var now atomic.Int64
	old := pairClock
	pairClock = func() time.Duration { return time.Duration(now.Load()) }
	t.Cleanup(func() { pairClock = old })
	d, bes := newMQ(t, 4)
	h := activate(t, d, fMQ, virtiotest.Options{})
	cq := CtrlQueueOf(4)
	switches := func() int {
		n := 0
		for _, b := range bes {
			n += len(b.history())
		}
		return n
	}
	base := switches() // the activation's detaches
	budget := int(switchBudget.Size)
	for i := 0; ; i++ {
		if i > budget {
			t.Fatalf("%d VQ_PAIRS_SET answered at once, %d switches (budget %d)", i, switches()-base, budget)
		}
		want := []uint16{4, 1}[i%2]
		if _, err := h.Drivers[cq].Add(pairsSet(want)...); err != nil {
			t.Fatal(err)
		}
		h.Kick(cq)
		var answered bool
		deadline := time.Now().Add(200 * time.Millisecond)
		for !answered && time.Now().Before(deadline) {
			if _, answered = h.Drivers[cq].Used(); !answered {
				time.Sleep(time.Millisecond)
			}
		}
		if answered {
			continue
		}
		// Over the budget: nothing switched beyond it.
		if n := switches() - base; n > budget {
			t.Fatalf("%d switches while the budget is %d", n, budget)
		}
		now.Store(int64(time.Second))
		var u qt.Used
		waitUntil(t, "the held command's answer", func() bool {
			var ok bool
			u, ok = h.Drivers[cq].Used()
			return ok
		})
		if ack := h.Drivers[cq].Written(u)[0]; ack != ctrlOK || d.ActivePairs() != int(want) {
			t.Fatalf("after the wait: ack %d, %d pairs; want OK, %d", ack, d.ActivePairs(), want)
		}
		return
	}
}

// TestMQFrontendFlapBounded: a vhost-user frontend that serves the
// control queue restarts the device for each change of its guest's pair
// count (activations with 1 and with 4 pairs, alternately); the
// backends those activations attach come out of the switch budget too,
// the activation waiting (pairSleep) for it. Attaches beyond the budget
// need the budget's clock to move by the time they take to refill.
func TestMQFrontendFlapBounded(t *testing.T) {
	var now atomic.Int64
	oldClock, oldSleep := pairClock, pairSleep
	pairClock = func() time.Duration { return time.Duration(now.Load()) }
	pairSleep = func(d time.Duration) { now.Add(int64(d)) }
	t.Cleanup(func() { pairClock, pairSleep = oldClock, oldSleep })
	_, bes := newMQ(t, 4)
	var p pairSet
	bs := make([]Backend, len(bes))
	for k, b := range bes {
		bs[k] = b
	}
	p.init(bs)
	for i := range 300 {
		n := []int{1, 4}[i%2]
		if err := p.activate(n, n, false); err != nil {
			t.Fatal(err)
		}
	}
	attaches := 0
	for _, b := range bes {
		for _, on := range b.history() {
			if on {
				attaches++
			}
		}
	}
	rate := float64(switchBudget.Size) / float64(switchBudget.RefillTime) // per ms
	if allowed := float64(switchBudget.Size) + rate*float64(time.Duration(now.Load()).Milliseconds()+1); attaches != 450 || float64(attaches) > allowed {
		t.Fatalf("%d attaches (want 450) in %v of the budget's time: %.0f allowed", attaches, time.Duration(now.Load()), allowed)
	}
}
