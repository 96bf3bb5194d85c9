package virtio

import (
	"testing"
	"time"
)

// stampIRQ records when queue 0's notifications are sent.
type stampIRQ struct{ at chan time.Time }

func (s *stampIRQ) Signal(int) error    { s.at <- time.Now(); return nil }
func (s *stampIRQ) SignalConfig() error { return nil }
func (s *stampIRQ) NeedsReset() error   { return nil }

// TestIRQGapTimerPrecise: an owed notification goes soon after the gap
// has passed, not at the Go runtime's timer granularity (its timers fire
// about 1.1 ms late in an idle process, whatever the gap): the quickest
// of 20 rounds with a 200 µs gap must come within 800 µs.
func TestIRQGapTimerPrecise(t *testing.T) {
	const gap = 200 * time.Microsecond
	irq := &stampIRQ{at: make(chan time.Time, 4)}
	var g irqGap
	g.bind(irq, 0, gap)
	defer g.settle(false)
	if g.gap != gap {
		t.Skip("no timerfd on this system: the gap falls back to none")
	}
	best := time.Hour
	for range 20 {
		time.Sleep(2 * gap) // a quiet spell: the next one goes at once
		g.signal()
		first := <-irq.at
		if !g.signal() {
			t.Fatal("the second notification joined nothing yet it was not owed")
		}
		if g.signal() {
			t.Fatal("a third notification within the gap was owed again instead of joining the owed one")
		}
		select {
		case second := <-irq.at:
			d := second.Sub(first)
			if d < gap {
				t.Fatalf("owed notification %v after the first, before the gap %v", d, gap)
			}
			best = min(best, d)
		case <-time.After(5 * time.Second):
			t.Fatal("the owed notification was never sent")
		}
	}
	if best > 800*time.Microsecond {
		t.Fatalf("the quickest owed notification came %v after the first, want within 800µs of a %v gap", best, gap)
	}
	t.Logf("quickest owed notification: %v after the first (gap %v)", best, gap)
}
