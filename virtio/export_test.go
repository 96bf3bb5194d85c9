package virtio

import (
	"sync/atomic"
	"time"
)

// SetNudge replaces nudge for a test; the returned function restores it.
func SetNudge(f func()) (restore func()) {
	old := nudge
	nudge = f
	return func() { nudge = old }
}

// NudgeEvery is nudgeEvery, for the tests.
const NudgeEvery = nudgeEvery

// SetPollWindow gives e a busy-poll window of d, beyond MaxPoll if need
// be (a test on a loaded machine needs seconds), after Bind; it returns
// a function that reads the engine's poll counters and how many times
// Run's poll has checked the ring (a check counted after the driver saw
// a buffer used was made on the ring without it: the engine polls).
func SetPollWindow(e *Engine, d time.Duration) (counts func() (hits, misses, checks uint64)) {
	e.poll.max, e.poll.win = d, d
	var checks atomic.Uint64
	ready := e.ringWork
	e.ringWork = func() bool { checks.Add(1); return ready() }
	return func() (uint64, uint64, uint64) { return e.poll.hits.Load(), e.poll.misses.Load(), checks.Load() }
}
