package virtio

// The resend check of a device's notifications, one timer for all of its
// queues.

import (
	"os"
	"sync"
	"time"
)

// resendClock checks a device's notifications once the device has sent
// none for its interval: each notification any of its queues sends
// (irqGap.send) pushes the check back, and when it comes every member
// queue whose last notification the driver still wants sends it again
// (irqGap.recheck).
//
// One clock per device, not one per queue, because the frontend that
// loses notifications loses them per interrupt, not per queue: UML's
// virtio_uml takes every queue's call fd on one shared IRQ, and what it
// loses is the SIGIO that lands while it enters its idle sleep. The
// next notification of any queue wakes it, and its handler then reads
// every call fd with data, the unread one included. So a notification
// followed within the interval by another of the same device needs no
// check of its own. With a timer per queue, the transmit queue of a TCP
// stream (its completions a few hundred microseconds apart) had its
// timer fire after most of them while the receive queue notified all
// along: a wake-up of the backend for each, which doubled its context
// switches (BENCHMARKS.md, eighth round).
//
// A frontend that loses nothing (QEMU's eventfds, KVM's irqfds) only
// sees fewer checks. The members are fixed at Bind; arm and fire are
// safe from the engines' goroutines and the timer's. Lock order: a
// member's mu, then the clock's.
type resendClock struct {
	interval time.Duration

	mu      sync.Mutex
	tf      *os.File // nil once closed
	no      int
	members []*irqGap
}

// newResendClock opens a clock with interval, or returns nil when the
// system gives it no timer (then nothing is checked).
func newResendClock(interval time.Duration) *resendClock {
	c := &resendClock{interval: interval}
	tf, no, ok := openTimer(c.fire)
	if !ok {
		return nil
	}
	c.tf, c.no = tf, no
	return c
}

// join makes g one of the queues the clock checks.
func (c *resendClock) join(g *irqGap) {
	c.mu.Lock()
	c.members = append(c.members, g)
	c.mu.Unlock()
}

// arm pushes the check back to a whole interval from now; false if the
// clock cannot (it was closed, or the timerfd refused).
func (c *resendClock) arm() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tf != nil && armTimer(c.no, c.interval)
}

// fire is the timer: each member checks its last notification. The
// members are copied out first: a member's recheck takes its own mu,
// which comes before the clock's.
func (c *resendClock) fire() {
	var buf [8]*irqGap
	c.mu.Lock()
	members := append(buf[:0], c.members...)
	c.mu.Unlock()
	for _, g := range members {
		g.recheck(c)
	}
}

// close ends the clock's timer and its goroutine; arm fails from then on.
func (c *resendClock) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tf != nil {
		c.tf.Close()
		c.tf = nil
	}
	c.members = nil
}
