package virtio

// Engines: a device's queue engines, started at Activate and stopped at
// Reset, written once for every device.

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Lane is one queue a device serves with an Engine: the engine (a field
// of the device, reused across activations), the Handler it runs, the
// queue's index in Activate's queues and its name in dumps.
type Lane struct {
	Engine  *Engine
	Handler Handler
	Queue   int
	Name    string // "requests", "rx"
	// Batch is how many completions the engine publishes at once at
	// most; 0 means 1.
	Batch int
	// IRQGap is the least time between two of the queue's used-buffer
	// notifications (EngineConfig.IRQGap); 0 sends each at once.
	IRQGap time.Duration
	// IRQResend is EngineConfig.IRQResend; 0: no notification is sent
	// again.
	IRQResend time.Duration
	// Poll is the engine's busy-poll window (EngineConfig.Poll); 0: none.
	Poll time.Duration
}

// Engines runs a device's lanes: Start checks the queues Activate got and
// starts one goroutine per lane, Stop (in Reset) stops them, wakes
// those blocked on a kick, waits for them and forgets the negotiated
// features. Activate and Reset are those under the Engines' lock, for a
// device with nothing of its own to do then; a device that has calls
// Start, Stop, Bind and Close itself, one at a time (under Lock, or its
// own lock). Stopping, Done and States are safe from any goroutine
// (handlers use the first two). The zero value has no lanes: call Init
// in the device's constructor.
type Engines struct {
	mu       sync.Mutex
	device   string // error prefix: "virtio-blk"
	nqueues  int
	features *FeatureSet
	lanes    []Lane
	all      []int // 0 .. len(lanes)-1

	running, closed bool
	stopping        atomic.Bool
	stop            chan struct{}
	wg              sync.WaitGroup
	kicks           []*os.File   // of the running lanes
	clock           *resendClock // the running lanes' resend checks (nil: none)
}

// Init names the device ("virtio-blk", the prefix of Start's errors),
// its number of queues (len(Device.QueueMaxSizes())), its features (Stop
// clears them) and its lanes, in the order States reports them.
func (g *Engines) Init(device string, nqueues int, features *FeatureSet, lanes ...Lane) {
	g.device, g.nqueues, g.features, g.lanes = device, nqueues, features, lanes
	g.all = make([]int, len(lanes))
	for i := range g.all {
		g.all[i] = i
	}
	g.kicks = make([]*os.File, 0, len(lanes))
}

// Check reports whether Start would refuse queues and irq: after Close,
// while running, without irq, with another number of queues than Init's,
// or with the queue of a started lane not enabled. lanes picks the lanes
// to start, by their position in Init's list; none means all.
func (g *Engines) Check(queues []Queue, irq Interrupt, lanes ...int) error {
	if err := g.checkBind(queues, irq); err != nil {
		return err
	}
	for _, l := range g.pick(lanes) {
		if q := queues[g.lanes[l].Queue]; q.Ring == nil || q.Kick == nil {
			return fmt.Errorf("%s: queue %d is not enabled", g.device, g.lanes[l].Queue)
		}
	}
	return nil
}

func (g *Engines) checkBind(queues []Queue, irq Interrupt) error {
	switch {
	case g.closed:
		return fmt.Errorf("%s: device closed", g.device)
	case g.running:
		return fmt.Errorf("%s: already active", g.device)
	case irq == nil || len(queues) != g.nqueues:
		return fmt.Errorf("%s: activated with %d queues, want %d", g.device, len(queues), g.nqueues)
	}
	return nil
}

func (g *Engines) pick(lanes []int) []int {
	if len(lanes) == 0 {
		return g.all
	}
	return lanes
}

// Lock and Unlock are the device's lock for transport calls (Activate,
// Reset, Close), for a device that calls Start and Stop itself.
func (g *Engines) Lock()   { g.mu.Lock() }
func (g *Engines) Unlock() { g.mu.Unlock() }

// Activate is Start under the Engines' lock: all of Device.Activate for
// a device with nothing of its own to start.
func (g *Engines) Activate(queues []Queue, irq Interrupt) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Start(queues, irq)
}

// Reset is Stop under the Engines' lock: all of Device.Reset for a
// device with nothing of its own to reset.
func (g *Engines) Reset(wake func(deadline time.Time)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.Stop(wake)
}

// Start is Device.Activate's common part: Check, then bind each picked
// lane's engine to its queue and run it on its own goroutine until Stop.
func (g *Engines) Start(queues []Queue, irq Interrupt, lanes ...int) error {
	if err := g.Check(queues, irq, lanes...); err != nil {
		return err
	}
	for _, l := range g.begin(queues, irq, lanes) {
		k := queues[g.lanes[l].Queue].Kick
		k.SetReadDeadline(time.Time{}) // a previous Stop's
		g.kicks = append(g.kicks, k)
		e := g.lanes[l].Engine
		g.wg.Add(1)
		go func() { defer g.wg.Done(); e.Run() }()
	}
	return nil
}

// Bind is Start without goroutines or kick files, for tests, benchmarks
// and fuzzers that drive the engines with Engine.Step: the picked lanes'
// queues need a Ring only. Stop ends it like an activation.
func (g *Engines) Bind(queues []Queue, irq Interrupt, lanes ...int) error {
	if err := g.checkBind(queues, irq); err != nil {
		return err
	}
	for _, l := range g.pick(lanes) {
		if queues[g.lanes[l].Queue].Ring == nil {
			return fmt.Errorf("%s: queue %d has no ring", g.device, g.lanes[l].Queue)
		}
	}
	g.begin(queues, irq, lanes)
	return nil
}

func (g *Engines) begin(queues []Queue, irq Interrupt, lanes []int) []int {
	g.running = true
	g.stopping.Store(false)
	g.stop = make(chan struct{})
	picked := g.pick(lanes)
	for _, l := range picked {
		if r := g.lanes[l].IRQResend; r > 0 && g.clock == nil {
			// One clock for the device (see resendClock); a lane with
			// another interval opens its own.
			g.clock = newResendClock(r)
		}
	}
	for _, l := range picked {
		ln := g.lanes[l]
		ln.Engine.Bind(EngineConfig{Handler: ln.Handler, Queue: queues[ln.Queue], Index: ln.Queue, IRQ: irq,
			Stopping: &g.stopping, Stop: g.stop, Batch: ln.Batch, IRQGap: ln.IRQGap, IRQResend: ln.IRQResend, Poll: ln.Poll,
			clock: g.clock})
	}
	return picked
}

// Stop is Device.Reset's common part: it sets Stopping, closes Done,
// wakes the engines blocked on a kick (a past read deadline on the kick
// files) and waits for them, then clears the deadlines and releases the
// engines; and it forgets the negotiated features (Init's FeatureSet).
// wake, if not nil, is called with the past deadline before the wait and
// with the zero time after it: the device wakes what else its engines
// may block on (a backend, a writer). Stop reports whether the engines
// were running.
func (g *Engines) Stop(wake func(deadline time.Time)) bool {
	if g.features != nil {
		defer g.features.ClearFeatures()
	}
	if !g.running {
		return false
	}
	g.stopping.Store(true)
	close(g.stop)
	past := time.Unix(1, 0)
	for _, k := range g.kicks {
		k.SetReadDeadline(past)
	}
	if wake != nil {
		wake(past)
	}
	g.wg.Wait()
	for i, k := range g.kicks {
		k.SetReadDeadline(time.Time{})
		g.kicks[i] = nil
	}
	g.kicks = g.kicks[:0]
	if wake != nil {
		wake(time.Time{})
	}
	for _, l := range g.lanes {
		l.Engine.Release()
	}
	if g.clock != nil {
		g.clock.close()
		g.clock = nil
	}
	g.running = false
	return true
}

// Running reports whether the engines run (between Start and Stop).
func (g *Engines) Running() bool { return g.running }

// Close marks the device closed after the device's Stop: Start refuses
// from then on. It reports whether the device was open.
func (g *Engines) Close() bool {
	was := !g.closed
	g.closed = true
	return was
}

// Closed reports whether Close was called.
func (g *Engines) Closed() bool { return g.closed }

// Stopping reports whether Stop has begun: a handler's Next checks it
// before work that does not come with a chain.
func (g *Engines) Stopping() bool { return g.stopping.Load() }

// Done is closed when Stop begins: a handler's Wait selects on it. It
// is valid for the engines' goroutines during an activation.
func (g *Engines) Done() <-chan struct{} { return g.stop }

// Poll is the Next of a handler whose work waits on the device rather
// than on chains alone (input buffered, a packet owed): Stop once Stop
// began, Pop when ready, else wait for the backend (ActivityWaitReadable;
// the handler's Wait then calls Await).
func (g *Engines) Poll(ready bool) Result {
	switch {
	case g.stopping.Load():
		return Result{Do: Stop}
	case ready:
		return Result{}
	}
	return Result{Do: WaitBackend, Activity: ActivityWaitReadable}
}

// Await is the Wait that goes with Poll: it blocks until token (which
// the device fills when work arrives; a stale token only costs a
// re-check) or Stop, and reports true (the engine asks Next again).
func (g *Engines) Await(token <-chan struct{}) bool {
	select {
	case <-token:
	case <-g.stop:
	}
	return true
}

// States reports what each lane's engine is doing, in Init's order, for
// dumps (Device's EngineReporter). It takes no lock.
func (g *Engines) States() []EngineState {
	out := make([]EngineState, len(g.lanes))
	for i, l := range g.lanes {
		out[i] = l.Engine.Status.Load()
		out[i].Queue, out[i].Name = l.Queue, l.Name
		out[i].IRQDeferred = l.Engine.gap.owed.Load()
		out[i].IRQDropped = l.Engine.gap.dropped.Load()
		out[i].IRQResent = l.Engine.gap.resent.Load()
		out[i].PollHits = l.Engine.poll.hits.Load()
		out[i].PollMisses = l.Engine.poll.misses.Load()
	}
	return out
}
