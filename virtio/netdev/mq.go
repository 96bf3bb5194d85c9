package netdev

// Multiqueue (FeatureMQ): which queue pairs carry traffic.

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/ratelimit"
)

// Steerer is implemented by a backend that can leave and rejoin the set
// of queues the host spreads incoming frames over: *tap.Queue does it
// with TUNSETQUEUE (IFF_DETACH_QUEUE, IFF_ATTACH_QUEUE). A device with
// more than one pair detaches the backends of the pairs the driver does
// not use, so that no frame waits on a queue nobody reads. A backend
// that does not implement it keeps receiving on every pair; the device
// delivers what it reads there all the same.
//
// Note for a TAP: Linux drops the frames still queued on a queue it
// detaches (tun_queue_purge). So before it detaches a backend that is
// also a Drainer, the device waits (at most drainWait) until nothing is
// queued on it: the pair's RX engine, which reads every queue whenever
// the guest has buffers, delivers those frames first, while the driver
// still polls that pair (it waits for VQ_PAIRS_SET's answer). A frame
// the host steers there between that check and the detach would still be
// dropped, so when the first pair's backend is a Pinner the device pins
// every frame to the first pair for the whole drain and detach (see
// Pinner). What can still be lost is the frames of a driver that posts no
// buffers on the pair within drainWait, or, without a pin, a frame
// steered in that moment.
type Steerer interface {
	SetEnabled(enabled bool) error
}

// Pinner is a first pair's backend that can have the host steer every
// frame to it for a while: *tap.Queue attaches a steering program that
// picks the first queue (TUNSETSTEERINGEBPF). PinToFirst acts on the
// whole interface; a Pinner whose program could not be loaded returns an
// error and the device detaches without the pin, as before it.
type Pinner interface {
	PinToFirst(on bool) error
}

// pinSettle is how long the device waits after pinning before it trusts
// Drainer.Pending (a variable for tests). Linux swaps the steering
// program under RCU without waiting, so a frame whose queue was being
// picked as the pin went on can still land on the old queue; the TAP's
// PinToFirst waits out an RCU grace period for those, and this margin
// is for a frame that waits in the old queue's qdisc for the next qdisc
// run, within microseconds as a rule. A sender descheduled for longer
// (a nested host's vCPU) can still be late: the pin makes a loss
// unlikely, not impossible.
var pinSettle = time.Millisecond

// Drainer is a Steerer that can tell whether frames wait on it
// (*tap.Queue polls its descriptor).
type Drainer interface {
	Pending() bool
}

// drainWait bounds how long VQ_PAIRS_SET waits for a backend it
// detaches to drain (a variable for tests): a driver answered only after
// it would wait, and Linux waits for the answer holding the RTNL lock.
var drainWait = 100 * time.Millisecond

// switchBudget limits how many backends VQ_PAIRS_SET attaches and
// detaches (a variable for tests): Size switches at once, refilled in
// RefillTime milliseconds. A switch costs the host more than the
// driver's command: Linux detaches a TAP queue holding the RTNL lock,
// which every network configuration on the host waits for, and waits in
// it for an expedited RCU grace period (synchronize_net, an interrupt to
// every CPU). A driver flapping VQ_PAIRS_SET between 1 and N pairs made
// thousands of them a second (4,300 detaches a second measured on a
// 7-queue TAP without the pin); so did a vhost-user frontend restarting
// the device with its guest's changes (see activate). A command over
// the budget waits, unanswered, until the budget has room (the control
// engine pauses, Reset wakes it); the budget takes a change from 1 to
// MaxQueuePairs pairs and back twice at once, which is more than
// ethtool -L does.
var switchBudget = ratelimit.BucketConfig{Size: 4 * MaxQueuePairs, RefillTime: 1000}

// pairClock is the switch budget's clock, and pairSleep how an
// activation waits for it (variables for tests).
var (
	pairClock = func() time.Duration { return time.Since(pairEpoch) }
	pairSleep = time.Sleep
)

var pairEpoch = time.Now()

// pairSet is the device's queue pairs' backends, which of them receive
// (attached), and how many pairs the driver uses. mu serialises the
// control queue's VQ_PAIRS_SET with Activate; active is read from any
// goroutine.
type pairSet struct {
	bes []Backend

	mu       sync.Mutex
	attached []bool // per pair: its backend gets frames (a new TAP queue is attached)
	started  int    // pairs whose engines run in this activation
	chosen   int    // pairs the driver chose (VQ_PAIRS_SET), or a fresh activation's; resume's target
	active   atomic.Int32

	pinLeft bool // a pin that could not be taken off; steer retries it

	budget ratelimit.TokenBucket // switches set may make (switchBudget)

	shrinks, pinnedShrinks atomic.Uint64 // detach rounds that drained; those with the pin on
}

func (p *pairSet) init(bes []Backend) {
	p.bes = bes
	p.attached = make([]bool, len(bes))
	for k := range p.attached {
		p.attached[k] = true
	}
	p.active.Store(1)
	p.chosen = 1
	p.budget, _ = ratelimit.NewTokenBucket(switchBudget, pairClock()) // valid: a constant
}

// activate starts an activation with started pairs running and the
// driver using the first use of them: 1 (virtio 1.2 §5.1.6.5.5: until
// VQ_PAIRS_SET the device uses only the first pair), or all of them when
// a vhost-user frontend serves the control queue itself (it enables the
// pairs in use and never sends VQ_PAIRS_SET).
//
// With resume (Device.Resume: a restart the driver did not ask for)
// the driver goes on with the pairs it chose before, so use is ignored:
// the activation uses that many, as many as started at most (the choice
// is kept for a later resume with more pairs started again).
//
// The backends it attaches are taken from the switch budget
// (switchBudget), waiting for it when it is spent: only a vhost-user
// frontend that serves the control queue has it attach any (every pair
// it enabled; it restarts the device for each change of its guest's
// VQ_PAIRS_SET, which it answers itself). The backends it detaches are
// not: each undoes an attach that paid, or one the backends were opened
// with.
func (p *pairSet) activate(started, use int, resume bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if resume {
		use = min(p.chosen, started)
	} else {
		p.chosen = use
	}
	p.started = started
	p.active.Store(int32(use))
	attaches := 0
	for _, on := range p.attached[:use] {
		if !on {
			attaches++
		}
	}
	for {
		ok, wait := p.budget.Consume(uint64(attaches), pairClock())
		if ok {
			break
		}
		pairSleep(wait)
	}
	// No drain: what waits on the other pairs' backends came before this
	// activation, and the driver has posted no buffers there.
	if err := p.steer(use, time.Time{}); err != nil {
		return fmt.Errorf("virtio-net: %w", err)
	}
	return nil
}

// set makes the driver's first n pairs carry traffic: it attaches their
// backends and detaches the others'. n must be 1 to the pairs started.
// When the switches it needs are over the budget (switchBudget) it does
// nothing and returns how long to wait before asking again.
//
// Activation's steer takes nothing from the budget: it only detaches
// backends that an earlier set attached (or that were attached when the
// backends were opened), so a driver that resets the device between
// commands switches at most twice what set allowed.
func (p *pairSet) set(n int) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 1 || n > p.started {
		return 0, fmt.Errorf("%d queue pairs, want 1 to %d", n, p.started)
	}
	switches := 0
	for k, on := range p.attached {
		if on != (k < n) {
			switches++
		}
	}
	if ok, wait := p.budget.Consume(uint64(switches), pairClock()); !ok {
		return wait, nil
	}
	if err := p.steer(n, time.Now().Add(drainWait)); err != nil {
		return 0, err
	}
	p.active.Store(int32(n))
	p.chosen = n
	return 0, nil
}

// steer attaches the backends of the first n pairs (attach first, so
// that frames always have a queue to go to) and then detaches the rest,
// each drained first until drained at most (the zero time: not at all).
// It goes on past an error and returns the first.
//
// When it drains, the first pair's backend pins every frame to itself
// (Pinner) from before the first drain until after the last detach, so
// that nothing new is steered to a queue between its drain and its
// detach. A pin that cannot be taken off again is no error of steer's:
// the pairs are as asked and every frame still reaches pair 1, only not
// spread over the pairs; answering ERR would tell the driver that a
// change that took effect failed (Linux's ethtool -L reports an error
// and the driver keeps its old pair count, ActivePairs too). The next
// steer (a VQ_PAIRS_SET or an activation) tries again.
func (p *pairSet) steer(n int, drained time.Time) error {
	var errs []error
	if p.pinLeft && p.pin(false) {
		p.pinLeft = false
	}
	for k := range p.bes {
		if want := k < n; want && !p.attached[k] {
			errs = append(errs, p.switchPair(k, true, time.Time{}))
		}
	}
	pinned, shrunk := false, false
	for k := range p.bes {
		if want := k < n; !want && p.attached[k] {
			if !shrunk && !drained.IsZero() {
				shrunk, pinned = true, p.pin(true)
			}
			errs = append(errs, p.switchPair(k, false, drained))
		}
	}
	if shrunk {
		p.shrinks.Add(1)
	}
	if pinned {
		p.pinnedShrinks.Add(1)
	}
	if pinned && !p.pin(false) {
		p.pinLeft = true
	}
	return errors.Join(errs...)
}

// pin turns the first pair's pin on or off and reports whether that
// worked; after pinning it waits pinSettle. Without a Pinner, or when
// the pin fails, the drain goes on without it.
func (p *pairSet) pin(on bool) bool {
	pn, ok := p.bes[0].(Pinner)
	if !ok || pn.PinToFirst(on) != nil {
		return false
	}
	if on {
		time.Sleep(pinSettle)
	}
	return true
}

// switchPair attaches or detaches pair k's backend; a Drainer detached
// is drained first, until deadline at most.
func (p *pairSet) switchPair(k int, on bool, deadline time.Time) error {
	s, ok := p.bes[k].(Steerer)
	if !ok {
		p.attached[k] = on
		return nil
	}
	if d, ok := s.(Drainer); ok && !on {
		drain(d, deadline)
	}
	if err := s.SetEnabled(on); err != nil {
		return fmt.Errorf("queue pair %d: attach %v: %w", k+1, on, err)
	}
	p.attached[k] = on
	return nil
}

// drain waits until nothing is queued on d, or deadline.
func drain(d Drainer, deadline time.Time) {
	for d.Pending() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
}

// ActivePairs is the number of queue pairs the driver uses: 1 after
// activation, then what its last VQ_PAIRS_SET said (without a control
// queue, see AllowFrontendControlQueue: the pairs started).
func (d *Device) ActivePairs() int { return int(d.mq.active.Load()) }

// Shrinks counts the driver's VQ_PAIRS_SET commands that detached
// pairs (each drains them first), and how many of those had the first
// pair's pin on for the drain and detach (see Pinner): fewer means a
// frame steered to a detached pair in that moment could have been
// dropped.
func (d *Device) Shrinks() (all, pinned uint64) {
	return d.mq.shrinks.Load(), d.mq.pinnedShrinks.Load()
}

// AllowFrontendControlQueue lets a driver negotiate FeatureMQ without
// FeatureCtrlVQ, which a device refuses otherwise (virtio 1.2 §5.1.3.1).
// vmm calls it for the vhost-user backend only: a vhost-user frontend
// such as QEMU serves the control queue itself and passes MQ alone in
// SET_FEATURES; it enables the rings of the pairs its guest uses, so
// every pair started carries traffic (the backends of all of them are
// attached) and the device restarts when that set changes. Flint's own
// PCI and MMIO transports never call it: there a driver that acks MQ
// without the control queue is broken. Call it before the device is
// served.
func (d *Device) AllowFrontendControlQueue() { d.frontendCtrl.Store(true) }

// Pairs is the number of queue pairs the device has (max_virtqueue_pairs).
func (d *Device) Pairs() int { return len(d.pairs) }
