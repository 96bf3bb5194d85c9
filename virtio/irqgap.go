package virtio

// Interrupt spacing: a queue's used-buffer notifications at least a
// minimum time apart, the device-side half of interrupt moderation.

import (
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/queue"
)

// irqGap sends one queue's used-buffer notifications at least gap
// apart. A notification the driver asks for sooner than gap after the
// previous one is owed, and a timer sends it when the gap has passed;
// the driver's requests meanwhile join it. The used entries are
// published at once either way: a driver that polls (Linux's NAPI, a
// transmit path that reclaims its buffers before adding more) sees them
// without waiting. A queue notified less often than every gap never
// waits, so a lone packet (a ping) is not delayed. When the timer fires
// the driver is asked again (queue.StillWants): one that consumed the
// entries meanwhile and moved its suppression past them gets no
// notification, which would only wake it to find nothing new.
//
// With a resend interval it also checks the last notification it sent
// once the device has sent none for that long (see resendClock): if the
// driver still wants it then (queue.StillWants: it neither took the
// entries nor moved its suppression), the notification was lost on the
// way and is sent once more (irq_resent in dumps). The interval is for
// frontends that can lose one: UML's virtio_uml (Linux 6.1) takes the
// call fd's SIGIO with its interrupts off while it enters its idle sleep
// and then sleeps to its next timer tick, up to 10 ms (BENCHMARKS.md, "A
// lost notification"). KVM's interrupt paths lose none, so flint run
// leaves it off and net-backend sets it.
//
// The gap's timer is a timerfd (CLOCK_MONOTONIC), read by a goroutine of
// the gap's own (openTimer): the Go runtime's timers fire up to a
// millisecond late in a process with nothing else to do (its netpoller
// sleeps in whole milliseconds), twenty times a 50 µs gap. Its methods
// are safe from the engine's goroutine and the timers'; the mutex keeps
// their notifications in order, one at a time.
type irqGap struct {
	mu    sync.Mutex
	gap   time.Duration // 0: every notification is sent at once
	irq   Interrupt     // nil while unbound: nothing is sent
	index int
	q     *queue.Queue // asked again when the timer fires; nil: never
	from  queue.Mark   // where the span the owed notification is about began
	last  time.Time    // when the last notification was sent
	owed  atomic.Bool  // the timer will send a notification (written under mu)
	// clock checks the last notification sent (nil: none is checked);
	// check says it will check it, and its span began at checkFrom.
	// ownClock: bind opened clock for this gap alone (settle closes it);
	// otherwise the device's Engines did.
	clock     *resendClock
	ownClock  bool
	check     bool
	checkFrom queue.Mark
	resent    atomic.Uint64 // notifications sent again (irq_resent)
	// dropped counts owed notifications the driver no longer wanted when
	// the timer fired (the engine's irq_dropped counter).
	dropped atomic.Uint64
	tfd     *os.File // the gap's timerfd, while bound with a gap
	tfdNo   int      // its descriptor (closed only by settle, under mu)
}

// bind sets the interrupt to send through, the gap and the resend
// interval, for one activation, with a resend clock of the gap's own
// (bindShared).
func (g *irqGap) bind(irq Interrupt, index int, gap, resend time.Duration, q *queue.Queue) {
	g.bindShared(irq, index, gap, resend, q, nil)
}

// bindShared is bind with the device's resend clock: the gap joins clock
// when its interval is resend, and opens one of its own otherwise.
// Without a timerfd the netpoller can wait on (the system refuses one, or
// epoll refuses to watch it) the gap sends every notification at once,
// as with no gap, and without a clock it checks none: an owed
// notification nobody would send would leave the driver waiting forever.
func (g *irqGap) bindShared(irq Interrupt, index int, gap, resend time.Duration, q *queue.Queue, clock *resendClock) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeTimers() // a Bind without Release: not left open
	g.irq, g.index, g.gap, g.q = irq, index, 0, q
	g.owed.Store(false)
	g.check = false
	g.last = time.Time{}
	if q != nil && q.EventIdx() && resend > 0 {
		// Without EVENT_IDX there is nothing to ask again: the driver's
		// flags alone cannot tell entries it took from a notification it
		// lost.
		own := clock == nil || clock.interval != resend
		if own {
			clock = newResendClock(resend)
		}
		if clock != nil { // nil: the system refused its timer
			clock.join(g)
			g.clock, g.ownClock = clock, own
		}
	}
	if gap > 0 {
		if tf, no, ok := openTimer(g.fire); ok {
			g.tfd, g.tfdNo, g.gap = tf, no, gap
		}
	}
}

// openTimer opens a timerfd the netpoller waits on, and starts the
// goroutine that calls fire at each of its expiries until it is closed.
// It reports false when the system refuses the timer, or epoll refuses
// to watch it: os.NewFile ignores that refusal (ENOSPC past
// max_user_watches), and such a file has no deadlines, so its reader
// could never park.
func openTimer(fire func()) (*os.File, int, bool) {
	tf, err := newTimerFile()
	if err != nil {
		return nil, -1, false
	}
	no, ok := -1, false
	if tf.SetReadDeadline(time.Time{}) == nil {
		if rc, err := tf.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { no, ok = int(fd), true }) // not tf.Fd: that ends the deadlines
		}
	}
	if !ok {
		tf.Close()
		return nil, -1, false
	}
	go runTimer(tf, fire)
	return tf, no, true
}

// armTimer starts the timerfd no to expire once, d from now; false if it
// cannot.
func armTimer(no int, d time.Duration) bool {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	return unix.TimerfdSettime(no, 0, &spec, nil) == nil
}

// disarmTimer stops the timerfd no (a zero expiry disarms it).
func disarmTimer(no int) {
	var off unix.ItimerSpec
	unix.TimerfdSettime(no, 0, &off, nil)
}

// runTimer is a timer's goroutine: at each expiry of tf it calls fire.
// It ends when tf is closed.
func runTimer(tf *os.File, fire func()) {
	rc, err := tf.SyscallConn()
	if err != nil {
		return
	}
	var buf [8]byte // the expiry count
	for {
		err := rc.Read(func(fd uintptr) bool {
			_, err := unix.Read(int(fd), buf[:])
			return err != unix.EAGAIN
		})
		if err != nil {
			return
		}
		fire()
	}
}

// newTimerFile opens a non-blocking CLOCK_MONOTONIC timerfd (a variable
// for tests: a file the netpoller cannot wait on).
var newTimerFile = func() (*os.File, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "irq-gap-timer"), nil
}

// closeTimers closes the gap's timerfd, which ends its goroutine, and
// leaves the resend clock (closing it if it is the gap's own). Called
// under mu.
func (g *irqGap) closeTimers() {
	if g.tfd != nil {
		g.tfd.Close()
		g.tfd = nil
	}
	if g.ownClock {
		g.clock.close()
	}
	g.clock, g.ownClock = nil, false
}

// signal sends the queue's notification now, or has the timer send it
// when the gap has passed. from is where the span of entries the driver
// asked about began (queue.Decided); a request joining an owed
// notification extends its span to the entries published since. An
// urgent request (Engine.Urgent) does not wait for the gap: it is sent
// at once, and takes an owed notification with it (the owed span's
// start). It reports whether a notification was sent or newly owed
// (false: it joined one already owed, even when urgent sent it: that one
// was counted when it was owed).
func (g *irqGap) signal(from queue.Mark, urgent bool) bool {
	if g.gap == 0 && g.clock == nil { // set only by bind, on the engine's goroutine
		g.irq.Signal(g.index)
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now() // under mu: the gap counts from the last send
	if g.owed.Load() {
		if urgent {
			g.stopOwed()
			g.send(now, g.from)
		}
		return false
	}
	if wait := g.gap - now.Sub(g.last); !urgent && g.gap > 0 && wait > 0 && g.arm(wait) {
		g.owed.Store(true)
		g.from = from
		return true
	}
	g.send(now, from)
	return true
}

// hurry is an urgent request the driver did not ask about (Engine.Flush):
// with EVENT_IDX its used_event stays in the span of the notification
// the gap owes, which it was never sent, so the entries published since
// are past it. The owed notification goes at once instead of at the
// gap's end, if the driver still wants it (as fire asks).
func (g *irqGap) hurry() {
	if !g.owed.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.irq == nil || !g.owed.Load() {
		return
	}
	g.stopOwed()
	g.sendIfWanted()
}

// stopOwed ends the owed notification before the gap's end, stopping
// the timer (an expiry already read is stale: see fire); the caller
// sends it or drops it. Called under mu with a notification owed.
func (g *irqGap) stopOwed() {
	g.owed.Store(false)
	disarmTimer(g.tfdNo)
}

// sendIfWanted sends the notification that was owed, about the span
// g.from, if the driver still wants it; one it no longer wants is counted
// dropped, not sent. Called under mu.
func (g *irqGap) sendIfWanted() {
	if g.q != nil && !g.stillWants(g.from) {
		g.dropped.Add(1)
		return
	}
	g.send(time.Now(), g.from)
}

// send sends the notification about the span from, and has the resend
// clock check it once the device has been quiet for the interval.
// Called under mu.
func (g *irqGap) send(now time.Time, from queue.Mark) {
	g.last = now
	g.irq.Signal(g.index)
	if g.clock != nil && g.clock.arm() {
		g.check, g.checkFrom = true, from
	}
}

// arm starts the gap's timer to expire once, d from now; false if it
// cannot (then the caller sends at once). Called under mu.
func (g *irqGap) arm(d time.Duration) bool {
	return g.tfd != nil && armTimer(g.tfdNo, d)
}

// recheck is the resend clock c's check of the last notification sent:
// one the driver still wants is sent again, once. An owed notification
// is left to the gap's timer, whose send has the clock check it later; a
// clock the gap no longer belongs to (a past activation's, firing late)
// checks nothing. Nor does an expiry read before the notification was
// sent (c's goroutine waited for mu, or checked other members, while
// send armed c again): that arm's expiry checks it, an interval after it
// was sent (the timer counts from after last).
func (g *irqGap) recheck(c *resendClock) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.irq == nil || g.clock != c || !g.check || g.owed.Load() || time.Since(g.last) < c.interval {
		return
	}
	g.check = false
	if g.stillWants(g.checkFrom) {
		g.resent.Add(1)
		g.last = time.Now()
		g.irq.Signal(g.index)
	}
}

// fire is the gap's timer: it sends the owed notification, if the driver
// still wants it. One it no longer wants is dropped without counting as
// sent: the next request goes at once if the gap since the last one sent
// has passed.
//
// An expiry the timer's goroutine read before stopOwed stopped the timer
// may reach fire after a later request armed it again and owes a new
// notification: before that one's gap ends (last + gap: last does not
// change while a notification is owed) the expiry is not its own, and
// fire arms the timer for the rest of the gap again (the time it is
// already armed for) instead of sending it early. (The timer and
// time.Now both count CLOCK_MONOTONIC: its own expiry is never early.)
func (g *irqGap) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.irq == nil || !g.owed.Load() {
		return
	}
	if wait := time.Until(g.last.Add(g.gap)); wait > 0 && g.arm(wait) {
		return
	}
	g.owed.Store(false)
	g.sendIfWanted()
}

// stillWants asks the queue again about the span from (queue.StillWants), which loads the
// driver's words from guest memory: a vhost-user frontend may truncate
// its memory file under the device, and a load past the file's new end
// faults (SIGBUS), which on this goroutine (no recover of the engine's)
// would end the process. The fault is a panic here instead, recovered as
// "wanted": the notification goes (Signal touches no guest memory) and
// the engine meets the fault on its own. Called under mu.
func (g *irqGap) stillWants(from queue.Mark) (want bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r) // a bug, not the guest's memory
			}
			want = true
		}
	}()
	return g.q.StillWants(from)
}

// settle sends an owed notification at once (send) or drops it, and
// unbinds: nothing is sent after it returns, and the timer's goroutine
// ends.
func (g *irqGap) settle(send bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.owed.Load() && send && g.irq != nil {
		g.irq.Signal(g.index)
	}
	g.owed.Store(false)
	g.check = false
	g.irq, g.gap, g.q = nil, 0, nil
	g.closeTimers()
}
