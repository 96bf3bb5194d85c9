package virtio

// What a device's queue engines are doing, for debug dumps of a device
// that seems stuck.

import (
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/flintvm/flint/virtio/queue"
)

// Activity is what a queue engine (the goroutine that serves one queue)
// is doing. Its zero value is ActivityInactive.
type Activity uint8

// Activities. An engine records one each time it starts or stops waiting,
// never per buffer.
const (
	// ActivityInactive: the engine never ran (no activation yet).
	ActivityInactive Activity = iota
	// ActivityRunning: the engine is working through its queue.
	ActivityRunning
	// ActivityWaitKick: the engine waits for the driver to notify the
	// queue (new buffers: for a receive queue, room for packets).
	ActivityWaitKick
	// ActivityWaitReadable: the engine waits for its backend to have
	// data (a TAP with no frame queued).
	ActivityWaitReadable
	// ActivityWaitWritable: the engine waits for its backend to accept
	// data (a TAP that pushed back with EAGAIN).
	ActivityWaitWritable
	// ActivityThrottled: a rate limiter paused the engine on a timer.
	ActivityThrottled
	// ActivityBroken: the driver broke the queue; the engine asked for
	// DEVICE_NEEDS_RESET and waits for the reset.
	ActivityBroken
	// ActivityBackendFailed: the backend failed (closed, gone); the
	// engine waits for the reset.
	ActivityBackendFailed
	// ActivityStopped: the engine ended (the device was reset).
	ActivityStopped
	numActivities
)

var activityNames = [numActivities]string{
	"inactive", "running", "waiting-kick", "waiting-readable", "waiting-writable",
	"throttled", "broken", "backend-failed", "stopped",
}

// String is the activity's name as dumps show it: "inactive", "running",
// "waiting-kick", "waiting-readable", "waiting-writable", "throttled",
// "broken", "backend-failed", "stopped".
func (a Activity) String() string {
	if a < numActivities {
		return activityNames[a]
	}
	return "activity-" + strconv.Itoa(int(a))
}

// EngineState is what one engine was doing at its last transition.
type EngineState struct {
	// Queue is the queue index the engine serves; Name what the device
	// calls it ("rx", "tx", "ctrl", "requests").
	Queue int
	Name  string
	// Activity is what the engine is doing since its last transition.
	Activity Activity
	// NextAvail is the queue's next avail index to consume (the device's
	// last_avail) and NextUsed its next used index to fill, both when the
	// engine entered Activity.
	NextAvail, NextUsed uint16
	// Transitions counts the engine's transitions (modulo 2^24): two
	// dumps with the same count show an engine that did not move.
	Transitions uint32
	// IRQDeferred: a notification waits for the queue's interrupt gap
	// to pass (EngineConfig.IRQGap); a timer sends it.
	IRQDeferred bool
	// IRQDropped counts the queue's owed notifications the driver no
	// longer wanted when the gap had passed (queue.StillWants), since the
	// engine was made.
	IRQDropped uint64
	// IRQResent counts the queue's notifications sent again because the
	// driver still wanted them after EngineConfig.IRQResend.
	IRQResent uint64
	// PollHits and PollMisses count the engine's busy polls (EngineConfig.Poll)
	// that found work and that ran out their window, since it was made.
	PollHits, PollMisses uint64
}

// Attrs returns the state as slog attributes: engine, last_avail,
// next_used, transitions, irq_deferred when a notification waits for
// the queue's interrupt gap, irq_dropped when owed ones were dropped,
// irq_resent when some were sent again, and
// poll_hits and poll_misses once the engine busy-polled.
func (s EngineState) Attrs() []slog.Attr {
	a := []slog.Attr{
		slog.String("engine", s.Activity.String()),
		slog.Int("last_avail", int(s.NextAvail)), slog.Int("next_used", int(s.NextUsed)),
		slog.Uint64("transitions", uint64(s.Transitions)),
	}
	if s.IRQDeferred {
		a = append(a, slog.Bool("irq_deferred", true))
	}
	if s.IRQDropped != 0 {
		a = append(a, slog.Uint64("irq_dropped", s.IRQDropped))
	}
	if s.IRQResent != 0 {
		a = append(a, slog.Uint64("irq_resent", s.IRQResent))
	}
	if s.PollHits != 0 || s.PollMisses != 0 {
		a = append(a, slog.Uint64("poll_hits", s.PollHits), slog.Uint64("poll_misses", s.PollMisses))
	}
	return a
}

// EngineStatus is where an engine records its state for dumps: one
// atomic word packing the activity, the queue's indices and a transition
// count, written by the engine's goroutine (one store per transition) and
// read by any other. The zero value is ActivityInactive.
type EngineStatus struct {
	word atomic.Uint64
	n    uint32 // transitions; touched by the engine's goroutine only
}

const transitionsMask = 1<<24 - 1

// Set records that the engine now does a, with q's next avail and next
// used indices (q may be nil: indices 0). Only the engine's goroutine may
// call it (or the device while no engine runs). It does not allocate.
func (e *EngineStatus) Set(a Activity, q *queue.Queue) {
	var avail, used uint16
	if q != nil {
		avail, used = q.NextAvail(), q.NextUsed()
	}
	e.n = (e.n + 1) & transitionsMask
	e.word.Store(uint64(a) | uint64(avail)<<8 | uint64(used)<<24 | uint64(e.n)<<40)
}

// Load returns the last recorded state; Queue and Name are left for the
// caller. It is safe from any goroutine.
func (e *EngineStatus) Load() EngineState {
	w := e.word.Load()
	return EngineState{
		Activity:    Activity(w),
		NextAvail:   uint16(w >> 8),
		NextUsed:    uint16(w >> 24),
		Transitions: uint32(w>>40) & transitionsMask,
	}
}

// EngineReporter is implemented by devices that report their engines'
// states (net, blk). Transports include them in their snapshots.
type EngineReporter interface {
	// EngineStates returns one state per engine, in queue order. It is
	// safe to call from any goroutine at any time, never blocks, and is
	// meant for dumps (it may allocate).
	EngineStates() []EngineState
}
