package queue

// Asking the driver again: a notification the device holds back (an
// interrupt gap) is decided when the entries are published, but sent
// later. By then the driver may have consumed those entries on its own
// (a NAPI poll, a transmit path that reclaims before it adds) and moved
// its suppression past them; StillWants re-reads the suppression from
// another goroutine so the held notification can be dropped.

import "sync/atomic"

// A Mark is a point in the stream of used entries a queue published: the
// used position (on a packed ring with its wrap counter bit) in the low
// 16 bits and how many entries were published before it (wrapping) in
// the rest.
type Mark uint64

func (m Mark) pos() uint16    { return uint16(m) }
func (m Mark) count() uint64  { return uint64(m) >> 16 }
func newMark(pos uint16) Mark { return Mark(pos) }

// since is how many entries were published from m0 to m (the count
// wraps at 2^48).
func (m Mark) since(m0 Mark) uint64 { return (m.count() - m0.count()) & (1<<48 - 1) }

// marks is the Queue's published-entry bookkeeping: what NeedsInterrupt
// decides over (the entries from sig to pub) and what StillWants asks
// about again.
type marks struct {
	pub     Mark          // after the last Publish (the device's goroutine)
	pubA    atomic.Uint64 // pub, for StillWants's goroutine
	sig     Mark          // pub when NeedsInterrupt last decided
	decided Mark          // where that decision's span began
}

// reset starts the bookkeeping at used position pos.
func (k *marks) reset(pos uint16) {
	k.pub = newMark(pos)
	k.pubA.Store(uint64(k.pub))
	k.sig, k.decided = k.pub, k.pub
}

// published records n more entries published, ending at position pos.
func (k *marks) published(n uint64, pos uint16) {
	k.pub = Mark((k.pub.count()+n)<<16 | uint64(pos))
	k.pubA.Store(uint64(k.pub))
}

// pending is how many entries were published since the last decision.
func (k *marks) pending() uint64 { return k.pub.since(k.sig) }

// decide records a NeedsInterrupt decision over the span since the last,
// returning its start.
func (k *marks) decide() Mark {
	k.decided, k.sig = k.sig, k.pub
	return k.decided
}

// Decided returns where the span of the last NeedsInterrupt decision
// began: what a notification held back after that decision is about.
// Called by the device's goroutine, like NeedsInterrupt.
func (q *Queue) Decided() Mark { return q.marks.decided }

// StillWants reports whether the driver, as its suppression reads now,
// asks for a notification for the entries published since from (a Mark
// from Decided): the test NeedsInterrupt made, made again over the
// longer span. False means the driver moved its suppression past those
// entries after the decision (it consumed them without a notification)
// or turned notifications off; by the ring's protocol a driver checks the
// ring after it re-enables them, so dropping the notification loses
// nothing. A device slow to read the suppression word after publishing
// would send none either.
//
// Unlike the Queue's other methods it is safe from any goroutine while
// the device runs the queue (between its Activate and Reset): it reads
// only the driver's suppression words (atomics in guest memory) and the
// published mark (an atomic), besides what Validate set.
func (q *Queue) StillWants(from Mark) bool {
	now := Mark(q.marks.pubA.Load())
	n := now.since(from)
	if n == 0 {
		return false // nothing published since: nothing to notify about
	}
	return q.wants(from, n, now)
}
