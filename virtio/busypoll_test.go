package virtio_test

import (
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// pollRig is a rig (EVENT_IDX or not) whose engine busy-polls for window
// before it waits for a kick.
func pollRig(t *testing.T, features uint64, window time.Duration) (*rig, func() (uint64, uint64, uint64)) {
	t.Helper()
	r := newRig(t, &echo{}, features, 1)
	return r, virtio.SetPollWindow(&r.eng, window)
}

// TestBusyPollServesWithoutKick: while the engine polls, a buffer the
// driver adds is served without a kick, and (EVENT_IDX, or the
// NO_NOTIFY flag) the driver is told it need not send one. Without the
// poll the engine would have enabled notifications and waited for the
// kick this driver never sends.
func TestBusyPollServesWithoutKick(t *testing.T) {
	for _, c := range []struct {
		name     string
		features uint64
	}{{"flags", 0}, {"event-idx", qt.FeatureEventIdx}} {
		t.Run(c.name, func(t *testing.T) {
			r, counts := pollRig(t, c.features, time.Minute)
			r.start()
			defer r.close(t)
			r.kick(t)
			waitFor(t, func() bool { return r.drv.UsedIdx() == 1 })
			for i := 2; i <= 4; i++ {
				// Add once the engine polls the empty ring: added
				// sooner, a buffer can be found by the check the engine
				// makes after it publishes, before it polls (no hit
				// counted). A sleep is not enough: a starved engine
				// reached the poll more than 20 ms after publishing.
				_, _, checked := counts()
				waitFor(t, func() bool { _, _, c := counts(); return c > checked })
				if r.add(t) {
					t.Fatalf("buffer %d: the driver was asked to notify a polling engine", i)
				}
				waitFor(t, func() bool { return int(r.drv.UsedIdx()) == i })
			}
			if hits, _, _ := counts(); hits < 3 {
				t.Errorf("%d polls found work, want at least 3", hits)
			}
		})
	}
}

// TestBusyPollStopsAtReset: an engine in the middle of a long poll ends
// at the device's reset.
func TestBusyPollStopsAtReset(t *testing.T) {
	r, counts := pollRig(t, qt.FeatureEventIdx, time.Hour)
	r.start()
	r.kick(t)
	waitFor(t, func() bool { return r.drv.UsedIdx() == 1 })
	// Reset once the engine polls the empty ring: the buffer is used
	// (published) before the engine's last check for a reset, so a reset
	// the driver makes as soon as it sees the buffer can stop an engine
	// that never polled.
	_, _, checked := counts()
	waitFor(t, func() bool { _, _, c := counts(); return c > checked })
	r.close(t) // fails unless the engine stops within 5 s
	if _, misses, _ := counts(); misses != 1 {
		t.Errorf("%d polls ran out, want the one the reset ended", misses)
	}
}

// TestBusyPollOffWaitsForKick is the control: with no window, a buffer
// added without a kick waits for it, and the driver is asked for it.
func TestBusyPollOffWaitsForKick(t *testing.T) {
	r, counts := pollRig(t, qt.FeatureEventIdx, 0)
	r.start()
	defer r.close(t)
	r.kick(t)
	// Add once the engine waits for the kick (it enabled notifications
	// first): a sleep let a starved engine find the buffer before it
	// enabled them.
	waitFor(t, func() bool {
		s := r.eng.Status.Load()
		return s.Activity == virtio.ActivityWaitKick && s.NextUsed == 1
	})
	if !r.add(t) {
		t.Fatal("the driver was not asked to notify an engine that waits for a kick")
	}
	time.Sleep(50 * time.Millisecond)
	if r.drv.UsedIdx() != 1 {
		t.Fatal("served without a kick and without polling")
	}
	if hits, misses, _ := counts(); hits+misses != 0 {
		t.Errorf("polled %d times with no window", hits+misses)
	}
}
