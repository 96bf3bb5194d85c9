package virtio_test

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// echo is the smallest device work: every chain is done at once, with
// its writable length as used length. window, when set, is called at
// every flush, inside the engine's "ring empty" step: after the last pop
// found nothing and before notifications are enabled again.
type echo struct {
	chains, malformed, interrupts, kickWaits, stops int
	window                                          func()
}

func (h *echo) Next() virtio.Result { return virtio.Result{} }

func (h *echo) Chain(c *queue.Chain) virtio.Result {
	h.chains++
	return virtio.Result{Do: virtio.Done, Used: c.WriteLen}
}

func (h *echo) Wait(virtio.Activity) bool { return true }

func (h *echo) Event(e virtio.Event) {
	switch e {
	case virtio.EventMalformed:
		h.malformed++
	case virtio.EventFlush:
		if h.window != nil {
			h.window()
		}
	case virtio.EventInterrupt:
		h.interrupts++
	case virtio.EventKickWait:
		h.kickWaits++
	case virtio.EventStop:
		h.stops++
	}
}

// rig is an engine on one queue with a kick pipe, run by its goroutine.
type rig struct {
	eng      virtio.Engine
	drv      *qt.Driver
	q        *queue.Queue
	irq      *virtiotest.Interrupt
	kr, kw   *os.File
	stopping atomic.Bool
	stop     chan struct{}
	done     chan struct{}
}

func newRig(t *testing.T, h virtio.Handler, features uint64, batch int) *rig {
	t.Helper()
	r := &rig{drv: qt.MustNew(t, qt.Config{Size: 16, Features: features}), irq: virtiotest.NewInterrupt(1),
		stop: make(chan struct{}), done: make(chan struct{})}
	r.q = r.drv.MustQueue(t)
	var err error
	if r.kr, r.kw, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	r.eng.Bind(virtio.EngineConfig{Handler: h, Queue: virtio.Queue{Ring: r.q, Kick: r.kr}, IRQ: r.irq,
		Stopping: &r.stopping, Stop: r.stop, Batch: batch})
	return r
}

func (r *rig) start() { go func() { defer close(r.done); r.eng.Run() }() }

// close resets: the engine must end, even while it waits for a kick.
func (r *rig) close(t *testing.T) {
	r.stopping.Store(true)
	close(r.stop)
	r.kr.SetReadDeadline(time.Unix(1, 0))
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the engine did not stop at the reset")
	}
	r.kr.Close()
	r.kw.Close()
}

// stepRecycle runs one Step, which must drain the ring, and gives every
// used buffer back to it; it returns how many there were.
func (r *rig) stepRecycle(t testing.TB) int {
	if r.eng.Step().Do != virtio.Pop {
		t.Fatal("step did not drain the ring")
	}
	n := 0
	for {
		u, ok := r.drv.Used()
		if !ok {
			return n
		}
		r.drv.AddHead(uint16(u.ID))
		n++
	}
}

// kick reclaims used buffers, adds one writable buffer and notifies
// only if the driver would (notification suppression permitting).
func (r *rig) kick(t testing.TB) {
	for {
		if _, ok := r.drv.Used(); !ok {
			break
		}
	}
	if _, err := r.drv.Add(qt.W(8)); err != nil {
		t.Error(err)
		return
	}
	if r.drv.Kick() {
		r.kw.Write([]byte{1})
	}
}

// TestEngineKickInRecheckWindow races the driver's kick against the
// engine's "no more work, enable notifications, re-check avail" step,
// with one P (GOMAXPROCS=1; run with -race). The driver adds a buffer
// exactly inside the step: after the engine found the ring empty and
// while notifications are still disabled, so a real driver does not
// notify. Only the re-check after enabling notifications finds the
// buffer; without it the engine sleeps on a kick that never comes. A
// free-running phase then races kicks and completions at random points.
func TestEngineKickInRecheckWindow(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tc := range []struct {
		name     string
		features uint64
	}{{"flags", 0}, {"event-idx", qt.FeatureEventIdx}} {
		t.Run(tc.name, func(t *testing.T) {
			const rounds = 200
			inWindow, resume, quit := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var hooked atomic.Bool
			hooked.Store(true)
			h := &echo{window: func() {
				if hooked.Load() {
					select {
					case inWindow <- struct{}{}:
						<-resume
					case <-quit:
					}
				}
			}}
			r := newRig(t, h, tc.features, 1<<20) // flushes only when the ring is empty
			r.start()
			defer r.close(t)
			defer close(quit)
			for i := range rounds {
				select {
				case <-inWindow:
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: the engine sleeps with a buffer available (lost wake-up)", i)
				}
				r.kick(t)
				if i == rounds-1 {
					hooked.Store(false)
				}
				resume <- struct{}{}
			}
			waitFor(t, func() bool { return r.drv.UsedIdx() == rounds })

			// Free-running: the driver kicks while the engine works.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2000 {
					for r.drv.FreeDescs() == 0 && r.drv.PendingUsed() == 0 {
						runtime.Gosched()
					}
					r.kick(t)
					if i%3 == 0 {
						runtime.Gosched()
					}
				}
			}()
			wg.Wait()
			waitFor(t, func() bool { return r.drv.UsedIdx() == rounds+2000 })
		})
	}
}

// TestEngineResetWhileWaitingKick: a reset ends an engine that waits
// for a kick, and it reports stopped with the indices it reached.
func TestEngineResetWhileWaitingKick(t *testing.T) {
	h := &echo{}
	r := newRig(t, h, qt.FeatureEventIdx, 4)
	r.start()
	for range 3 {
		r.kick(t)
	}
	waitFor(t, func() bool {
		s := r.eng.Status.Load()
		return s.Activity == virtio.ActivityWaitKick && s.NextUsed == 3
	})
	r.close(t)
	if s := r.eng.Status.Load(); s.Activity != virtio.ActivityStopped || s.NextAvail != 3 || h.stops != 1 || h.chains != 3 {
		t.Fatalf("after reset: %+v, handler %+v", s, h)
	}
}

// TestEngineBrokenQueue: a driver that makes more entries available
// than the ring holds breaks the queue; the engine asks for
// DEVICE_NEEDS_RESET and waits for the reset.
func TestEngineBrokenQueue(t *testing.T) {
	h := &echo{}
	r := newRig(t, h, 0, 4)
	r.start()
	r.drv.SetAvailIdx(100)
	r.kw.Write([]byte{1})
	waitFor(t, func() bool { return r.eng.Status.Load().Activity == virtio.ActivityBroken })
	if !r.irq.NeedsResetRequested() {
		t.Fatal("no DEVICE_NEEDS_RESET")
	}
	r.close(t)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEngineStepDoesNotAllocate: a round of chains (pop, handle, push,
// publish, interrupt decision) allocates nothing once warm.
func TestEngineStepDoesNotAllocate(t *testing.T) {
	h := &echo{}
	r := newRig(t, h, qt.FeatureEventIdx, 4)
	defer r.kr.Close()
	defer r.kw.Close()
	for range 8 {
		if _, err := r.drv.Add(qt.W(64)); err != nil {
			t.Fatal(err)
		}
	}
	r.drv.Kick()
	round := func() {
		r.stepRecycle(t)
		r.drv.Kick()
	}
	for range 10 {
		round()
	}
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
	if h.chains < 8*100 {
		t.Fatalf("%d chains handled", h.chains)
	}
}

// BenchmarkEngineStep is the engine's own cost per chain.
func BenchmarkEngineStep(b *testing.B) {
	h := &echo{}
	drv := qt.MustNew(b, qt.Config{Size: 64, Features: qt.FeatureEventIdx})
	q := drv.MustQueue(b)
	var stopping atomic.Bool
	var eng virtio.Engine
	eng.Bind(virtio.EngineConfig{Handler: h, Queue: virtio.Queue{Ring: q}, IRQ: virtiotest.NewInterrupt(1),
		Stopping: &stopping, Stop: make(chan struct{}), Batch: 64})
	for range 64 {
		drv.Add(qt.W(64))
	}
	drv.Kick()
	b.ReportAllocs()
	for b.Loop() {
		eng.Step()
		for {
			u, ok := drv.Used()
			if !ok {
				break
			}
			drv.AddHead(uint16(u.ID))
		}
		drv.Kick()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(h.chains, 1)), "ns/chain")
}

// TestEngineNudgesWhenBusy: an engine that flushes NudgeEvery times
// without waiting makes one ordinary system call (nudge: sysmon must not
// sleep through a busy engine); one that waits for kicks in between
// never does.
func TestEngineNudgesWhenBusy(t *testing.T) {
	nudges := 0
	defer virtio.SetNudge(func() { nudges++ })()
	h := &echo{}
	r := newRig(t, h, qt.FeatureEventIdx, 1)
	defer r.kr.Close()
	defer r.kw.Close()
	for range 8 {
		if _, err := r.drv.Add(qt.W(64)); err != nil {
			t.Fatal(err)
		}
	}
	flushes := 0
	for flushes < 2*virtio.NudgeEvery+8 {
		// Batch 1: one flush per chain, and Step's own.
		flushes += r.stepRecycle(t) + 1
	}
	if nudges < 2 {
		t.Fatalf("%d nudges after %d flushes without a wait, want >= 2", nudges, flushes)
	}

	nudges = 0
	h2 := &echo{}
	r2 := newRig(t, h2, qt.FeatureEventIdx, 1)
	r2.start()
	for i := range 2 * virtio.NudgeEvery {
		r2.kick(t)
		waitFor(t, func() bool {
			s := r2.eng.Status.Load()
			return s.Activity == virtio.ActivityWaitKick && s.NextUsed == uint16(i+1)
		})
	}
	r2.close(t)
	if nudges != 0 {
		t.Fatalf("%d nudges from an engine that waited for every kick", nudges)
	}
}

// throttler refuses its first chain for an hour (a rate limiter deep in
// debt) and completes every chain after it.
type throttler struct {
	echo
	asked atomic.Int32
}

func (h *throttler) Chain(c *queue.Chain) virtio.Result {
	if h.asked.Add(1) == 1 {
		return virtio.Result{Do: virtio.Throttle, Wait: time.Hour}
	}
	return h.echo.Chain(c)
}

// TestEngineThrottleAsksAgain: an engine told to wait an hour by its
// handler's limiter asks the handler again within MaxThrottle, so that a
// limiter lifted meanwhile (the API's PATCH) takes effect at once; the
// chain given back is handed over again and completed.
func TestEngineThrottleAsksAgain(t *testing.T) {
	h := &throttler{}
	r := newRig(t, h, 0, 4)
	r.start()
	defer r.close(t)
	start := time.Now()
	r.kick(t)
	waitFor(t, func() bool { return h.asked.Load() >= 2 && r.eng.Status.Load().NextUsed == 1 })
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the throttled chain was handed over again after %v", d)
	}
}
