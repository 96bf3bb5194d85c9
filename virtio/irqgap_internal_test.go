package virtio

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	g.bind(irq, 0, gap, nil)
	defer g.settle(false)
	if g.gap != gap {
		t.Skip("no timerfd on this system: the gap falls back to none")
	}
	best := time.Hour
	for range 20 {
		time.Sleep(2 * gap) // a quiet spell: the next one goes at once
		g.signal(0)
		first := <-irq.at
		if !g.signal(0) { // joining is TestIRQGapSpacesNotifications's (a longer gap)
			t.Fatal("the second notification joined nothing yet it was not owed")
		}
		select {
		case second := <-irq.at:
			// The gap counts from the first's decision, a moment before
			// its stamp, and a goroutine can be preempted in between:
			// half the gap is the bound that proves it was waited for.
			d := second.Sub(first)
			if d < gap/2 {
				t.Fatalf("owed notification %v after the first, well before the gap %v", d, gap)
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

// TestIRQGapInDumps: an engine whose notification waits for its gap says
// so in Engines.States and in its dump attributes, as does one that
// dropped owed ones; one that did neither does not add the keys.
func TestIRQGapInDumps(t *testing.T) {
	var e Engine
	var g Engines
	g.Init("virtio-test", 1, &FeatureSet{}, Lane{Engine: &e, Queue: 0, Name: "rx"})
	if s := g.States()[0]; s.IRQDeferred || len(s.Attrs()) != 4 {
		t.Fatalf("nothing owed: %+v, %v", s, s.Attrs())
	}
	e.gap.owed.Store(true)
	s := g.States()[0]
	if !s.IRQDeferred {
		t.Fatal("States does not report the owed notification")
	}
	if a := s.Attrs(); len(a) != 5 || a[4].Key != "irq_deferred" || !a[4].Value.Bool() {
		t.Fatalf("attributes %v", a)
	}
	e.gap.dropped.Store(3)
	s = g.States()[0]
	if s.IRQDropped != 3 {
		t.Fatalf("States reports %d dropped notifications, want 3", s.IRQDropped)
	}
	if a := s.Attrs(); len(a) != 6 || a[5].Key != "irq_dropped" || a[5].Value.Uint64() != 3 {
		t.Fatalf("attributes %v", a)
	}
}

// TestIRQGapUnpollableTimer: a timer file the netpoller cannot wait on
// (epoll refuses it past max_user_watches; os.NewFile hides that) turns
// the gap off instead of owing notifications nobody would send.
func TestIRQGapUnpollableTimer(t *testing.T) {
	defer func(f func() (*os.File, error)) { newTimerFile = f }(newTimerFile)
	// A timerfd opened blocking, which os.NewFile does not hand to the
	// netpoller, then made non-blocking behind its back: its reads say
	// EAGAIN and nothing can wait for them, as when epoll refuses it.
	newTimerFile = func() (*os.File, error) {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), "unpolled-timer")
		return f, unix.SetNonblock(fd, true)
	}
	irq := &stampIRQ{at: make(chan time.Time, 4)}
	var g irqGap
	g.bind(irq, 0, time.Second, nil)
	defer g.settle(false)
	for i := range 2 {
		g.signal(0)
		select {
		case <-irq.at:
		case <-time.After(5 * time.Second):
			t.Fatalf("notification %d owed to a timer that cannot fire", i+1)
		}
	}
}

// TestIRQGapNoAllocs: sending, owing (arming the timerfd) and joining
// allocate nothing: they run per publish on the data path.
func TestIRQGapNoAllocs(t *testing.T) {
	irq := &stampIRQ{at: make(chan time.Time, 1)}
	var g irqGap
	g.bind(irq, 0, time.Hour, nil)
	defer g.settle(false)
	if g.gap == 0 {
		t.Skip("no timerfd on this system")
	}
	n := testing.AllocsPerRun(200, func() {
		g.mu.Lock()
		g.last = time.Time{}
		g.owed.Store(false)
		g.mu.Unlock()
		g.signal(0) // sent
		<-irq.at
		g.signal(0) // owed: arms the timer
		g.signal(0) // joins
	})
	if n != 0 {
		t.Fatalf("%v allocations per send, owe and join", n)
	}
}
