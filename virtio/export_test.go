package virtio

import "time"

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
// a function that reads the engine's poll counters.
func SetPollWindow(e *Engine, d time.Duration) (counts func() (hits, misses uint64)) {
	e.poll.max, e.poll.win = d, d
	return func() (uint64, uint64) { return e.poll.hits.Load(), e.poll.misses.Load() }
}
