package virtio

// The queue engine: the one loop that serves a device's queue, whatever
// the device. A device supplies only its per-chain work (a Handler).

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/virtio/queue"
)

// Action is what an Engine does after a Handler's step.
type Action uint8

// Actions a Handler returns in a Result.
const (
	// Pop: (Next only) pop the next chain and hand it to Handler.Chain.
	Pop Action = iota
	// Done: (Chain only) the chain is finished; the engine pushes it
	// with used length Result.Used.
	Done
	// Held: (Chain only) the device keeps the chain and completes it
	// later with Engine.Push.
	Held
	// Throttle: a rate limiter refused; the engine gives the chain back
	// (Chain), publishes, sleeps Result.Wait (at most MaxThrottle) and
	// carries on, asking the handler again.
	Throttle
	// WaitBackend: the backend cannot go on (no data to read, no room to
	// write); the engine gives the chain back (Chain), publishes, records
	// Result.Activity and calls Handler.Wait.
	WaitBackend
	// Fail: the backend failed; the engine publishes and waits for the
	// reset.
	Fail
	// Stop: the device is being reset; the engine gives the chain back
	// (Chain) and ends.
	Stop
)

// MaxThrottle is the longest an engine pauses for a Throttle before it
// asks its handler again, so that a rate limiter the API changes
// (ratelimit.Limiter.Update: PATCH /drives, /network-interfaces) takes
// effect within it even when the old limiter is deep in debt: a 64 KiB
// frame charged to a limit of 1000 bytes a second owes a minute.
// Firecracker's limiter timer likewise fires every 100 ms while a device
// is throttled.
const MaxThrottle = 100 * time.Millisecond

// Result is a Handler's answer; its zero value is Pop.
type Result struct {
	Do       Action
	Used     uint32        // Done: bytes written into the chain
	Wait     time.Duration // Throttle: how long
	Activity Activity      // WaitBackend: ActivityWaitReadable or ActivityWaitWritable
}

// Event is something an engine tells its Handler, for counting and for
// devices that keep chains (Held).
type Event uint8

// Events, in the order of an engine's life.
const (
	// EventMalformed: the queue rejected a chain (and completed it with
	// used length 0): chains popped before it can no longer be given
	// back with queue.Undo.
	EventMalformed Event = iota
	// EventFlush: the engine is about to publish; push what is complete.
	EventFlush
	// EventInterrupt: the engine sent a used-buffer notification.
	EventInterrupt
	// EventPublished: the engine published (and maybe interrupted);
	// publish the counters.
	EventPublished
	// EventBackendWait: the engine is about to call Handler.Wait.
	EventBackendWait
	// EventKickWait: the queue is empty after notifications were
	// re-enabled; the engine waits for the driver's kick.
	EventKickWait
	// EventThrottled: the engine pauses for a rate limiter.
	EventThrottled
	// EventBroken: the driver broke the queue; the engine asks for
	// DEVICE_NEEDS_RESET and waits for the reset.
	EventBroken
	// EventBackendFailed: the engine waits for the reset after Fail or a
	// failed Wait.
	EventBackendFailed
	// EventStop: the engine ends (the device is being reset): give back
	// held chains. EventPublished follows.
	EventStop
)

// Handler is a device's work on one queue. Its methods run on the
// engine's goroutine only, one at a time, and must not allocate per
// chain.
type Handler interface {
	// Next is called before every pop: Result{} (Pop) to pop a chain,
	// or any other action for work the device does without a new chain
	// (a receive queue reading its backend into chains it holds).
	Next() Result
	// Chain handles one well-formed chain. The chain belongs to the
	// queue: a device that keeps it (Held) keeps its own copy of what it
	// needs.
	Chain(c *queue.Chain) Result
	// Wait blocks until the backend can go on (Result.Activity says
	// which way) or the reset; false means the backend failed.
	Wait(a Activity) bool
	// Event reports e (see Event).
	Event(e Event)
}

// Engine serves one queue: it waits for the driver's kicks, pops chains
// and hands them to its Handler, pushes and publishes used entries in
// batches, decides on interrupts (EVENT_IDX or the driver's flags),
// pauses for rate limiters, marks the queue broken on a driver error and
// stops at the device's reset. It records what it does in Status for
// dumps. An Engine is reused across activations (Bind, Run): nothing is
// allocated per chain or per wait.
type Engine struct {
	h        Handler
	q        *queue.Queue
	kick     *os.File
	irq      Interrupt
	index    int
	stopping *atomic.Bool
	stop     <-chan struct{}
	batch    int

	pending int  // completions not yet published
	urgent  bool // the next flush's notification skips the gap (Urgent)
	busy    int  // flushes since the engine last waited (see nudgeEvery)
	dead    bool // the queue broke: nothing more is published
	timer   *time.Timer
	kicks   kickReader
	gap     irqGap // spaces the queue's notifications (EngineConfig.IRQGap)
	poll    busyPoll
	// ringWork is ringHasWork, bound once (no allocation per poll).
	ringWork func() bool

	// Status is what the engine is doing, for dumps.
	Status EngineStatus
}

// EngineConfig binds an Engine to a device's queue for one activation.
type EngineConfig struct {
	Handler Handler
	Queue   Queue
	// Index is the queue's index, the vector Interrupt.Signal gets.
	Index int
	IRQ   Interrupt
	// Stopping is set, then Stop closed, by the device's Reset (after
	// which it wakes the goroutines blocked in kicks or the backend).
	Stopping *atomic.Bool
	Stop     <-chan struct{}
	// Batch is how many completions (Done, Completed) are published at
	// once at most; 0 means 1.
	Batch int
	// IRQGap is the least time between two used-buffer notifications of
	// the queue (see irqGap); 0 sends each one at once.
	IRQGap time.Duration
	// IRQResend, when above 0, has the queue's last notification checked
	// once the device has sent none for that long (see resendClock), and
	// sent again if the driver still wants it then (a frontend that can
	// lose one: see irqGap).
	IRQResend time.Duration
	// Poll is the longest busy-poll window (see busyPoll), up to MaxPoll:
	// before the engine parks for a kick it polls the ring that long at
	// most, and a Handler may poll its backend (Spin). 0: no polling.
	Poll time.Duration
	// clock is the device's resend clock (Engines: one for its lanes);
	// nil: an engine with IRQResend opens its own.
	clock *resendClock
}

// Bind prepares e to Run on c's queue.
func (e *Engine) Bind(c EngineConfig) {
	e.h, e.q, e.kick, e.irq, e.index = c.Handler, c.Queue.Ring, c.Queue.Kick, c.IRQ, c.Index
	e.stopping, e.stop, e.batch = c.Stopping, c.Stop, max(c.Batch, 1)
	e.pending, e.dead, e.urgent = 0, false, false
	e.kicks.bind(e.kick)
	e.gap.bindShared(e.irq, e.index, c.IRQGap, c.IRQResend, e.q, c.clock)
	e.poll.bind(c.Poll)
	if e.kicks.ready == nil {
		e.kicks.ready = e.ringReady // bound once: no allocation per activation
		e.ringWork = e.ringHasWork
	}
	if e.timer == nil {
		e.timer = time.NewTimer(time.Hour)
		e.timer.Stop()
	}
}

// Release drops the references Bind took, after Run returned.
func (e *Engine) Release() {
	e.h, e.q, e.kick, e.irq, e.stop = nil, nil, nil, nil, nil
	e.kicks.bind(nil)
	e.gap.settle(true)
}

// IRQGap is the least time between two of the queue's notifications in
// this activation (EngineConfig.IRQGap).
func (e *Engine) IRQGap() time.Duration { return e.gap.gap }

// Queue is the queue the engine serves (for a Handler that pushes Held
// chains itself).
func (e *Engine) Queue() *queue.Queue { return e.q }

// Run serves the queue until the device's reset.
func (e *Engine) Run() {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer e.exit()
	defer e.recoverFault()
	e.Status.Set(ActivityRunning, e.q)
	for {
		switch r := e.Step(); r.Do {
		case Pop: // the ring is empty
			if e.Spin(e.ringWork) {
				continue // buffers arrived while polling: no kick needed
			}
			if e.q.EnableNotifications() {
				continue // buffers arrived before the driver saw the change
			}
			e.h.Event(EventKickWait)
			e.publishCounters()
			e.Status.Set(ActivityWaitKick, e.q)
			e.busy = 0
			if !e.waitKickTimed() {
				return
			}
		case Throttle:
			e.h.Event(EventThrottled)
			e.publishCounters()
			e.Status.Set(ActivityThrottled, e.q)
			e.busy = 0
			if !e.pause(min(r.Wait, MaxThrottle)) {
				return
			}
		case WaitBackend:
			e.backendWait(r.Activity)
			if !e.h.Wait(r.Activity) && !e.stopping.Load() {
				e.failed()
				return
			}
		case Fail:
			e.failed()
			return
		case Stop:
			return
		case broken:
			e.dead = true
			e.h.Event(EventBroken)
			e.publishCounters()
			e.Status.Set(ActivityBroken, e.q)
			e.irq.NeedsReset()
			<-e.stop
			return
		}
		e.Status.Set(ActivityRunning, e.q)
	}
}

// Step is Run between two waits, without the wait: it pops and handles
// chains with notifications disabled until the ring is empty (Pop), the
// handler asks to wait (Throttle, WaitBackend), fails (Fail) or the
// device stops (Stop), and publishes what is done (unless the queue
// broke: then Do is none of the Actions above). Run calls it; tests and
// benchmarks drive an engine with it, without its goroutine.
func (e *Engine) Step() Result {
	e.q.DisableNotifications()
	r := e.pump()
	if r.Do != broken && r.Do != Stop {
		e.Flush()
	}
	return r
}

// Broken reports whether a Step result means the driver broke the queue.
func (r Result) Broken() bool { return r.Do == broken }

// broken is pump's answer for a queue the driver broke (never a
// Handler's).
const broken Action = 0xff

// pump hands chains to the handler until the ring is empty (Pop), the
// queue breaks (broken) or the handler or Reset stops it.
func (e *Engine) pump() Result {
	for {
		if e.stopping.Load() {
			return Result{Do: Stop}
		}
		if r := e.h.Next(); r.Do != Pop {
			return r
		}
		c, err := e.q.PopCached()
		if err != nil {
			if errors.Is(err, queue.ErrMalformedChain) {
				e.h.Event(EventMalformed) // completed by the queue
				e.Completed(1)
				continue
			}
			return Result{Do: broken}
		}
		if c == nil {
			return Result{}
		}
		switch r := e.h.Chain(c); r.Do {
		case Done:
			e.q.Push(c.Head, r.Used)
			e.Completed(1)
		case Held:
		default:
			e.q.Undo(1) // popped again after the wait, or after the reset
			return r
		}
	}
}

// Push completes a chain the handler held.
func (e *Engine) Push(head uint16, used uint32) { e.q.Push(head, used) }

// Completed counts n completions towards the batch and publishes when
// the batch is full.
func (e *Engine) Completed(n int) {
	if e.pending += n; e.pending >= e.batch {
		e.Flush()
	}
}

// Flush publishes the completed chains (after the handler pushed what
// it holds complete) and signals the driver if it asks for it.
func (e *Engine) Flush() {
	e.h.Event(EventFlush)
	e.pending = 0
	if e.busy++; e.busy >= nudgeEvery {
		e.busy = 0
		nudge()
	}
	urgent := e.urgent
	e.urgent = false
	if e.q.Publish() {
		if e.q.NeedsInterrupt() {
			if e.gap.signal(e.q.Decided(), urgent) {
				e.h.Event(EventInterrupt)
			}
		} else if urgent {
			e.gap.hurry() // the driver waits on an owed notification (counted when owed)
		}
	}
	e.publishCounters()
}

// Urgent has the next flush's notification, if the driver asks for one,
// sent without waiting for the queue's interrupt gap (EngineConfig.IRQGap),
// with any notification the gap owes: for a completion the driver may be
// waiting on to go on (a large transmitted frame, whose completion
// returns TCP's small-queue budget to its socket). The handler calls it
// as it completes such a chain.
func (e *Engine) Urgent() { e.urgent = true }

// BackendIdle is for a Handler whose Next waits for its backend itself
// instead of returning WaitBackend (virtio/netdev's RX, with a backend
// that reads or parks in one call): called just before it parks, it does
// what Run does before Handler.Wait, publishing what is complete (and
// signalling the driver if it asks: it must not wait for completions the
// engine holds while it sleeps), then EventBackendWait and activity a.
// After the wait the Handler calls BackendResumed.
func (e *Engine) BackendIdle(a Activity) {
	e.Flush()
	e.backendWait(a)
}

// BackendResumed records that the engine runs again after BackendIdle.
func (e *Engine) BackendResumed() { e.Status.Set(ActivityRunning, e.q) }

// backendWait is what precedes every wait for the backend, once what is
// complete was published.
func (e *Engine) backendWait(a Activity) {
	e.h.Event(EventBackendWait)
	e.Status.Set(a, e.q)
	e.busy = 0
}

// FaultReporter is implemented by an Interrupt that can record why its
// device needs a reset (the transports' do: they log the reason through
// their rate limit, then set DEVICE_NEEDS_RESET). The engine reports a
// panic through it, and falls back to Interrupt.NeedsReset without it.
type FaultReporter interface {
	Fault(reason string) error
}

// recoverFault turns a panic on the engine's goroutine into a broken
// queue: DEVICE_NEEDS_RESET, then wait for the reset. A fault in guest
// memory (SIGBUS: a vhost-user frontend truncated its memory file) and a
// bug in the device's handler alike end only this device's service, not
// the process (issue 13 finding 11); the reason (with the stack, for a
// panic that is not a memory fault) goes to the transport's log. Deferred
// by Run, which runs with debug.SetPanicOnFault.
func (e *Engine) recoverFault() {
	r := recover()
	if r == nil {
		return
	}
	var reason string
	if f, ok := r.(interface{ Addr() uintptr }); ok {
		reason = fmt.Sprintf("queue %d: memory fault at host address %#x", e.index, f.Addr())
	} else {
		reason = fmt.Sprintf("queue %d: device panic: %v\n%s", e.index, r, debug.Stack())
	}
	e.dead = true // exit must not flush into the faulting memory
	e.safeEvent(EventBroken)
	e.Status.Set(ActivityBroken, e.q)
	reportFault(e.irq, reason)
	<-e.stop
}

// reportFault tells irq's transport that its device failed, and why:
// through its FaultReporter when it has one, else Interrupt.NeedsReset.
func reportFault(irq Interrupt, reason string) {
	if f, ok := irq.(FaultReporter); ok {
		f.Fault(reason)
	} else {
		irq.NeedsReset()
	}
}

// safeEvent tells the handler ev on a broken queue: a handler left
// inconsistent by a panic may panic again here, which is ignored.
func (e *Engine) safeEvent(ev Event) {
	defer func() { recover() }()
	e.h.Event(ev)
}

func (e *Engine) publishCounters() { e.h.Event(EventPublished) }

func (e *Engine) failed() {
	e.Flush()
	e.h.Event(EventBackendFailed)
	e.publishCounters()
	e.Status.Set(ActivityBackendFailed, e.q)
	<-e.stop
}

// exit ends an activation: give back what is held, publish what is done
// (not on a broken queue: the driver must reset it).
func (e *Engine) exit() {
	if !e.dead {
		e.publishAtStop()
	} else {
		e.safeEvent(EventPublished)
	}
	// An owed notification goes now, not left to the timer (the ring may
	// be stopped to move on); on a broken queue too: entries published
	// before it broke are the driver's, and Signal touches no guest memory.
	e.gap.settle(true)
	e.Status.Set(ActivityStopped, e.q)
}

// publishAtStop gives back what the handler holds and publishes what is
// complete. It runs, as all of Run, with faults turned into panics: a
// vhost-user frontend that truncated its memory file before it stopped
// the ring makes the publish fault, which ends this device's service
// (recoverFault), not the process.
func (e *Engine) publishAtStop() {
	defer e.recoverFault()
	e.h.Event(EventStop)
	e.Flush()
	e.publishCounters()
}

// pause waits d (a rate limiter's answer), or for the reset; false means
// stop. The timer is reused: no allocation.
func (e *Engine) pause(d time.Duration) bool {
	e.timer.Reset(d)
	select {
	case <-e.timer.C:
		return !e.stopping.Load()
	case <-e.stop:
		e.timer.Stop()
		return false
	}
}

// waitKick blocks until the driver kicks the queue, or the reset; false
// means stop. Run calls it only after notifications were enabled and the
// ring found empty; the wait re-checks the ring (ringReady) once it can
// no longer miss a kick, instead of reading the kick file first (see
// kickReader.read).
func (e *Engine) waitKick() bool {
	err := e.kicks.wait()
	if e.stopping.Load() {
		return false
	}
	if err != nil && !os.IsTimeout(err) {
		<-e.stop // the kick file is closed: only the reset wakes us
		return false
	}
	return true
}

// waitKickTimed is waitKick, timed for the busy-poll window when the
// engine has one.
func (e *Engine) waitKickTimed() bool {
	if !e.poll.on() {
		return e.waitKick()
	}
	start := time.Now()
	ok := e.waitKick()
	e.poll.parked(time.Since(start))
	return ok
}

// ringReady is the kick wait's last check before it parks: the reset
// began, or the driver made buffers available (EnableNotifications is
// idempotent: notifications are already enabled).
func (e *Engine) ringReady() bool {
	return e.stopping.Load() || e.q.EnableNotifications()
}
