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
// after the gap. It returns when it kicked (before the engine could
// decide anything: every bound from the gap counts from it) and when
// this goroutine saw the notification sent. "At once" is timed from the
// engine's publish of the buffer, which it decides the notification
// right after, not from the kick: an engine starved before it ran took
// longer than half the gap to wake.
func firstOfGap(t *testing.T, r *rig, gap time.Duration) (kicked, first time.Time) {
	t.Helper()
	kicked = time.Now()
	r.kick(t)
	waitFor(t, func() bool { return r.drv.UsedIdx() == 1 })
	return kicked, waitCount(t, r, 1, gap/2)
}

// withGaps runs try with gap, then twice as long while it reports that
// this goroutine was too slow to tell (a step meant to come within the
// gap came after it), and fails if every try was.
func withGaps(t *testing.T, gap time.Duration, try func(gap time.Duration) (slow string)) {
	t.Helper()
	for range 4 {
		slow := try(gap)
		if slow == "" {
			return
		}
		t.Logf("gap %v: %s; again with twice the gap", gap, slow)
		gap *= 2
	}
	t.Fatal("too slow to tell with every gap")
}

// TestIRQGapSpacesNotifications: with a gap, the first notification
// after a quiet spell goes at once; those the driver asks for within the
// gap become one, sent by the timer when the gap has passed, also while
// the engine waits for a kick (a lost notification would leave a driver
// that waits for it hung), and never sooner.
func TestIRQGapSpacesNotifications(t *testing.T) {
	withGaps(t, 300*time.Millisecond, func(gap time.Duration) string {
		r, h := gapRig(t, gap)
		r.start()
		defer r.close(t)

		kicked, _ := firstOfGap(t, r, gap)
		for range 3 { // within the gap: one owed notification
			r.kick(t)
		}
		waitFor(t, func() bool { return r.drv.UsedIdx() == 4 })
		if n := r.irq.Count(0); n != 1 {
			if d := time.Since(kicked); d >= gap {
				return "the kicks were served " + d.String() + " after the first"
			}
			t.Fatalf("%d notifications within the gap, want 1", n)
		}
		second := waitCount(t, r, 2, 5*time.Second) // the engine waits for a kick meanwhile
		// The gap counts from the first's decision, after kicked.
		if d := second.Sub(kicked); d < gap {
			t.Errorf("second notification %v after the first's kick, want the gap %v", d, gap)
		}
		time.Sleep(gap + 50*time.Millisecond)
		if n := r.irq.Count(0); n != 2 {
			t.Errorf("%d notifications, want 2: the owed one was sent once", n)
		}
		if h.interrupts != 2 {
			t.Errorf("engine counted %d interrupts, want 2 (one sent, one owed; the others joined it)", h.interrupts)
		}
		return ""
	})
}

// TestIRQGapOwedSentAtStop: a notification owed when the engine stops is
// sent then, not dropped and not left to the timer after the engine
// ended.
func TestIRQGapOwedSentAtStop(t *testing.T) {
	withGaps(t, 400*time.Millisecond, func(gap time.Duration) string {
		r, _ := gapRig(t, gap)
		r.start()
		kicked, _ := firstOfGap(t, r, gap)
		r.kick(t)
		waitFor(t, func() bool { return r.drv.UsedIdx() == 2 })
		r.close(t)
		// The timer sends it a gap after the first's decision, after
		// kicked: sent sooner, it was sent at the stop.
		d := time.Since(kicked)
		if n := r.irq.Count(0); n != 2 {
			t.Fatalf("%d notifications after the stop, want 2 (the owed one sent at the stop)", n)
		}
		if d >= gap {
			return "the stop ended " + d.String() + " after the first kick"
		}
		time.Sleep(gap + 50*time.Millisecond)
		if n := r.irq.Count(0); n != 2 {
			t.Errorf("%d notifications after the gap, want 2: the timer sent one after the engine ended", n)
		}
		return ""
	})
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
	withGaps(t, 300*time.Millisecond, func(gap time.Duration) string {
		r, _ := gapRig(t, gap)
		r.start()
		defer r.close(t)

		kicked, _ := firstOfGap(t, r, gap)
		r.kick(t) // within the gap: owed
		waitFor(t, func() bool { return r.drv.UsedIdx() == 2 })
		r.drv.SetNoInterrupt(true)
		if d := time.Since(kicked); d >= gap {
			return "notifications were turned off " + d.String() + " after the first kick"
		}
		time.Sleep(gap + 100*time.Millisecond)
		if n := r.irq.Count(0); n != 1 {
			t.Fatalf("%d notifications, want 1: the owed one went although the driver turned them off", n)
		}
		r.drv.SetNoInterrupt(false)
		r.kick(t)
		// At once (the last one sent is over a gap old): timed from the
		// engine's publish, as in firstOfGap.
		waitFor(t, func() bool { return r.drv.UsedIdx() == 3 })
		waitCount(t, r, 2, gap/2)
		return ""
	})
}
