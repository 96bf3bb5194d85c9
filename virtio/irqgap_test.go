package virtio_test

import (
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
)

// gapRig is a rig whose engine spaces its notifications gap apart.
func gapRig(t *testing.T, gap time.Duration) (*rig, *echo) {
	t.Helper()
	h := &echo{}
	r := newRig(t, h, 0, 1) // no EVENT_IDX: the driver asks for every notification
	r.eng.Release()
	r.eng.Bind(virtio.EngineConfig{Handler: h, Queue: virtio.Queue{Ring: r.q, Kick: r.kr}, IRQ: r.irq,
		Stopping: &r.stopping, Stop: r.stop, Batch: 1, IRQGap: gap})
	return r, h
}

// waitCount waits until queue 0 got n notifications and returns when it
// saw the n-th; it fails after limit.
func waitCount(t *testing.T, r *rig, n uint64, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for r.irq.Count(0) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications after %v, want %d", r.irq.Count(0), limit, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Now()
}

// firstOfGap kicks a quiet queue: its notification goes at once, not
// after the gap. It returns when this goroutine saw it sent.
func firstOfGap(t *testing.T, r *rig, gap time.Duration) time.Time {
	t.Helper()
	r.kick(t)
	first := waitCount(t, r, 1, gap/2)
	waitFor(t, func() bool { return r.drv.UsedIdx() == 1 })
	return first
}

// TestIRQGapSpacesNotifications: with a gap, the first notification
// after a quiet spell goes at once; those the driver asks for within the
// gap become one, sent by the timer when the gap has passed, also while
// the engine waits for a kick (a lost notification would leave a driver
// that waits for it hung), and never sooner.
func TestIRQGapSpacesNotifications(t *testing.T) {
	const gap = 300 * time.Millisecond
	r, h := gapRig(t, gap)
	r.start()
	defer r.close(t)

	first := firstOfGap(t, r, gap)
	for range 3 { // within the gap: one owed notification
		r.kick(t)
	}
	waitFor(t, func() bool { return r.drv.UsedIdx() == 4 })
	if n := r.irq.Count(0); n != 1 {
		t.Fatalf("%d notifications within the gap, want 1", n)
	}
	second := waitCount(t, r, 2, 5*time.Second) // the engine waits for a kick meanwhile
	// Both times are when this goroutine saw the count change, which may
	// be late under load: half the gap is the bound (irqgap_internal_test
	// stamps inside Signal and checks the whole gap).
	if d := second.Sub(first); d < gap/2 {
		t.Errorf("second notification %v after the first, want about the gap %v", d, gap)
	}
	time.Sleep(gap + 50*time.Millisecond)
	if n := r.irq.Count(0); n != 2 {
		t.Errorf("%d notifications, want 2: the owed one was sent once", n)
	}
	if h.interrupts != 2 {
		t.Errorf("engine counted %d interrupts, want 2 (one sent, one owed; the others joined it)", h.interrupts)
	}
}

// TestIRQGapOwedSentAtStop: a notification owed when the engine stops is
// sent then, not dropped and not left to the timer after the engine
// ended.
func TestIRQGapOwedSentAtStop(t *testing.T) {
	const gap = 400 * time.Millisecond
	r, _ := gapRig(t, gap)
	r.start()
	firstOfGap(t, r, gap)
	r.kick(t)
	waitFor(t, func() bool { return r.drv.UsedIdx() == 2 })
	stopped := time.Now()
	r.close(t)
	if n := r.irq.Count(0); n != 2 {
		t.Fatalf("%d notifications after the stop, want 2 (the owed one sent at the stop)", n)
	}
	if d := time.Since(stopped); d >= gap {
		t.Fatalf("stop took %v: it waited for the gap", d)
	}
	time.Sleep(gap + 50*time.Millisecond)
	if n := r.irq.Count(0); n != 2 {
		t.Errorf("%d notifications after the gap, want 2: the timer sent one after the engine ended", n)
	}
}

// TestIRQGapZeroSendsAtOnce: without a gap every notification the
// driver asks for is sent.
func TestIRQGapZeroSendsAtOnce(t *testing.T) {
	r, _ := gapRig(t, 0)
	r.start()
	defer r.close(t)
	for i := 1; i <= 5; i++ {
		r.kick(t)
		waitCount(t, r, uint64(i), 5*time.Second)
	}
}

// TestIRQGapDropsUnwanted: an owed notification the driver no longer
// wants when the gap has passed (it set NO_INTERRUPT meanwhile, as a
// driver does while it polls the ring) is not sent, and it does not
// count as sent: the next request after the gap goes at once.
func TestIRQGapDropsUnwanted(t *testing.T) {
	const gap = 300 * time.Millisecond
	r, _ := gapRig(t, gap)
	r.start()
	defer r.close(t)

	firstOfGap(t, r, gap)
	r.kick(t) // within the gap: owed
	waitFor(t, func() bool { return r.drv.UsedIdx() == 2 })
	r.drv.SetNoInterrupt(true)
	time.Sleep(gap + 100*time.Millisecond)
	if n := r.irq.Count(0); n != 1 {
		t.Fatalf("%d notifications, want 1: the owed one went although the driver turned them off", n)
	}
	r.drv.SetNoInterrupt(false)
	r.kick(t)
	waitCount(t, r, 2, gap/2) // at once: the last one sent is over a gap old
}
