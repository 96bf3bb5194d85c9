package virtio

// The busy-poll window (EngineConfig.Poll): an opt-in for latency. Before
// an engine parks, for the driver's kick or for its backend, it polls for
// the work it waits for, for up to a window that adapts to how long its
// waits last.

import (
	"runtime"
	"sync/atomic"
	"time"
)

// MaxPoll is the longest busy-poll window an engine takes
// (EngineConfig.Poll).
const MaxPoll = time.Millisecond

// busyPoll is one engine's adaptive busy-poll window, in the manner of
// KVM's halt polling: a wait that ended within max of when the engine
// went idle (the poll plus the park after it) would have been caught by
// a longer poll, so the window grows (doubling, from max/8, up to max);
// a longer wait means polling spent CPU for nothing, so it halves, and
// below max/8 it stops. So an engine whose work comes back quickly polls
// and skips the park, the wake-up and (for a kick) the driver's
// notification, while an idle or slow queue stops polling within a few
// waits and costs nothing. Only the engine's goroutine touches it, but
// for the counters.
type busyPoll struct {
	max time.Duration // 0: polling is off
	win time.Duration // the current window, 0 or max/8 to max

	hits, misses atomic.Uint64 // polls that found work, and that did not
}

func (p *busyPoll) bind(window time.Duration) {
	p.max = min(max(window, 0), MaxPoll)
	p.win = p.max
}

// floor is the shortest window polled: a shorter one is not worth its
// CPU.
func (p *busyPoll) floor() time.Duration { return p.max / 8 }

// spin calls ready until it reports true (true: the engine goes on
// without parking) or the window passes or the device stops (false).
// It yields the processor between calls, so other goroutines on a busy
// process still run; the caller parks as before after false.
func (p *busyPoll) spin(ready func() bool, stopping *atomic.Bool) bool {
	if p.win == 0 {
		return false
	}
	start := time.Now()
	for {
		if ready() {
			p.hits.Add(1)
			return true
		}
		if stopping.Load() || time.Since(start) >= p.win {
			p.misses.Add(1)
			return false
		}
		runtime.Gosched()
	}
}

// parked adapts the window to a park (after spin returned false, or
// without a spin at a window of 0) that lasted d.
func (p *busyPoll) parked(d time.Duration) {
	if p.max == 0 {
		return
	}
	if p.win+d <= p.max {
		p.win = min(p.max, max(2*p.win, p.floor()))
		return
	}
	if p.win /= 2; p.win < p.floor() {
		p.win = 0
	}
}

// on reports whether the engine polls at all (a window was configured).
func (p *busyPoll) on() bool { return p.max > 0 }

// Spin is busy polling for a Handler that waits for its backend itself
// (virtio/netdev's RX reading a TAP): it calls ready, which must not
// block, until it reports true or the engine's busy-poll window passes
// (EngineConfig.Poll; false also when polling is off or the device
// stops). A Handler calls it after publishing what is complete
// (BackendIdle's Flush) and before it parks; it tells the engine how
// long the park then lasted with Parked. ready is called on the engine's
// goroutine; a method value bound once keeps Spin free of allocations.
func (e *Engine) Spin(ready func() bool) bool { return e.poll.spin(ready, e.stopping) }

// Parked tells the engine's busy-poll window that a park for the backend
// after Spin lasted d.
func (e *Engine) Parked(d time.Duration) { e.poll.parked(d) }

// Polling reports whether the engine has a busy-poll window
// (EngineConfig.Poll above 0): a Handler that never calls Spin otherwise
// does not time its parks.
func (e *Engine) Polling() bool { return e.poll.on() }

// ringHasWork is Run's busy poll of the ring (Spin) before it enables
// notifications and waits for a kick: while it polls, notifications stay
// as Step left them (disabled, or EVENT_IDX's avail_event behind), so a
// driver adding buffers need not notify. It reports whether the driver made buffers available, or
// broke the ring (the next Step finds out which).
func (e *Engine) ringHasWork() bool {
	n, err := e.q.Available()
	return n > 0 || err != nil
}
