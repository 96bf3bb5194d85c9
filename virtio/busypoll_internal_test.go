package virtio

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestBusyPollAdapts: long waits halve the window down to nothing, short
// ones bring it back from max/8 up to max, and MaxPoll caps it.
func TestBusyPollAdapts(t *testing.T) {
	var p busyPoll
	p.bind(800 * time.Microsecond)
	steps := []struct {
		park time.Duration
		want time.Duration
	}{
		{10 * time.Millisecond, 400 * time.Microsecond},
		{10 * time.Millisecond, 200 * time.Microsecond},
		{10 * time.Millisecond, 100 * time.Microsecond},
		{10 * time.Millisecond, 0},
		{10 * time.Millisecond, 0},
		{700 * time.Microsecond, 100 * time.Microsecond}, // 0 + 700 µs: a max window would have caught it
		{10 * time.Microsecond, 200 * time.Microsecond},
		{10 * time.Microsecond, 400 * time.Microsecond},
		{10 * time.Microsecond, 800 * time.Microsecond},
		{0, 800 * time.Microsecond},
		{time.Microsecond, 400 * time.Microsecond}, // 800 + 1 µs > max: the poll was too short anyway
	}
	for i, s := range steps {
		p.parked(s.park)
		if p.win != s.want {
			t.Fatalf("step %d (park %v): window %v, want %v", i, s.park, p.win, s.want)
		}
	}
	p.bind(time.Hour)
	if p.max != MaxPoll || p.win != MaxPoll {
		t.Errorf("bind(1h): max %v, window %v, want both %v", p.max, p.win, MaxPoll)
	}
	p.bind(-time.Second)
	if p.on() {
		t.Error("a negative window polls")
	}
	p.parked(time.Microsecond)
	if p.win != 0 {
		t.Errorf("off, a short park opened a window of %v", p.win)
	}
}

// TestBusyPollSpin: spin stops at ready, runs out its window otherwise
// (not much later) and does not call ready at all with no window.
func TestBusyPollSpin(t *testing.T) {
	var p busyPoll
	var stopping atomic.Bool
	p.bind(MaxPoll)
	calls := 0
	if !p.spin(func() bool { calls++; return calls == 3 }, &stopping) || calls != 3 {
		t.Fatalf("spin ended after %d calls, want true at the third", calls)
	}
	start := time.Now()
	if p.spin(func() bool { return false }, &stopping) {
		t.Fatal("spin reported work it never found")
	}
	if d := time.Since(start); d < MaxPoll {
		t.Errorf("spin gave up after %v, before its window of %v", d, MaxPoll)
	}
	if p.hits.Load() != 1 || p.misses.Load() != 1 {
		t.Errorf("hits %d misses %d, want 1 and 1", p.hits.Load(), p.misses.Load())
	}
	p.win = 0
	if p.spin(func() bool { t.Fatal("ready called with no window"); return true }, &stopping) {
		t.Fatal("spin found work with no window")
	}
}

// TestBusyPollSpinDoesNotAllocate: the engine's ring poll allocates
// nothing per call.
func TestBusyPollSpinDoesNotAllocate(t *testing.T) {
	var p busyPoll
	var stopping atomic.Bool
	p.bind(MaxPoll)
	ready := func() bool { return true }
	if n := testing.AllocsPerRun(100, func() { p.spin(ready, &stopping) }); n != 0 {
		t.Errorf("%v allocations per spin", n)
	}
}
