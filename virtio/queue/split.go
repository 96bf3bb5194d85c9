package queue

// The split virtqueue engine (virtio 1.2 §2.7): popping and walking
// descriptor chains, returning used elements, notification suppression.

import (
	"encoding/binary"
	"math"
)

// Pop takes the next available descriptor chain and walks it into c
// (which is truncated first and reused). It returns:
//
//   - true, nil: c holds a well-formed chain; Push c.Head when done.
//   - false, nil: the driver has made nothing new available.
//   - false, a ChainError (errors.Is(err, ErrMalformedChain)): the next
//     chain was malformed. It has already been completed with used length
//     0 (visible at the next Publish) and counted; c.Head names it. Keep
//     popping. (An ErrHeadIndex entry names no descriptors and is only
//     counted and skipped, not completed.)
//   - false, ErrBroken: the driver broke the queue; stop using it and ask
//     the transport for DEVICE_NEEDS_RESET.
//   - false, ErrNotReady: the queue is not (or no longer) enabled.
func (q *Queue) Pop(c *Chain) (bool, error) {
	if q.packed {
		got, err := q.popPacked(c, false)
		return got != nil, err
	}
	head, ok, err := q.nextHead()
	if !ok {
		return false, err
	}
	return q.finish(c, head)
}

// PopCached is Pop into a Chain owned by the queue and keyed by head
// index, allocated once (on first use after Validate) and reused whenever
// the driver makes that head available again. Drivers that keep a stable
// buffer shape per head (Linux's cached indirect tables for TX, its
// pre-posted RX buffers) thus hit warm arrays every time, and devices that
// keep several chains in flight (mergeable RX buffers) need no pool of
// their own. It returns nil, nil when nothing is available; errors are as
// for Pop. The chain stays valid until its head is popped again, which a
// correct driver does only after the device has pushed it. A hostile
// driver can post a head the device still holds, which re-walks that
// Chain in place: a device that keeps chains across pops must keep its own
// snapshot (head, lengths, segments), not the *Chain.
func (q *Queue) PopCached() (*Chain, error) {
	if q.packed {
		return q.popPacked(nil, true)
	}
	head, ok, err := q.nextHead()
	if !ok {
		return nil, err
	}
	c := &q.scratch
	if head < q.size {
		if len(q.cache) < int(q.size) {
			q.growCache()
		}
		c = &q.cache[head]
	}
	if ok, err := q.finish(c, head); !ok {
		return nil, err
	}
	return c, nil
}

func (q *Queue) growCache() {
	cache := make([]Chain, q.size)
	copy(cache, q.cache) // keep grown slices for reuse
	q.cache = cache
}

// Available returns how many entries the driver has made available that
// the device has not popped yet. It re-reads avail.idx (acquire).
func (q *Queue) Available() (int, error) {
	if !q.ready {
		return 0, ErrNotReady
	}
	if q.packed {
		if q.broken {
			return 0, ErrBroken
		}
		return q.availablePacked(), nil
	}
	if q.broken || !q.refreshAvail() {
		return 0, ErrBroken
	}
	return int(q.availShadow - q.lastAvail), nil
}

// Undo gives back up to n of the most recently popped chains, most
// recent first, so they are popped again later (a device that could not
// start on a chain yet, an RX device that holds buffers no packet used).
// It never steps back over a chain the queue completed itself (a
// malformed one): only chains popped after the last of those count. The
// device must give back only chains it has not pushed (a device that
// pushes chains in pop order and keeps the newest, like RX, can). It
// returns how many it gave back.
func (q *Queue) Undo(n int) int {
	n = min(max(n, 0), q.undoable)
	if q.packed {
		q.undoPacked(n)
		q.undoable -= n
		return n
	}
	q.lastAvail -= uint16(n)
	q.undoable -= n
	return n
}

// nextHead consumes the next avail ring entry.
func (q *Queue) nextHead() (uint16, bool, error) {
	if !q.ready {
		return 0, false, ErrNotReady
	}
	if q.broken {
		return 0, false, ErrBroken
	}
	if q.lastAvail == q.availShadow {
		if !q.refreshAvail() {
			return 0, false, ErrBroken
		}
		if q.lastAvail == q.availShadow {
			return 0, false, nil
		}
	}
	// The load of avail.idx in refreshAvail was an acquire: the entries
	// and descriptors the driver wrote before publishing it are visible.
	head := binary.LittleEndian.Uint16(q.availRing[2*int(q.lastAvail&q.mask):])
	q.lastAvail++
	return head, true, nil
}

// refreshAvail reads avail.idx (acquire) and checks that the driver did
// not make more than size entries available; if it did, the queue breaks.
func (q *Queue) refreshAvail() bool {
	idx := q.availIdx.Load()
	if idx-q.lastAvail > q.size {
		q.broken = true
		q.stats.Broken++
		return false
	}
	q.availShadow = idx
	return true
}

func (q *Queue) finish(c *Chain, head uint16) (bool, error) {
	c.truncate()
	c.Head = head
	if e := q.walk(c, head); e != 0 {
		q.stats.Malformed++
		q.stats.ByReason[e]++
		c.truncate()
		c.Head = head
		q.undoable = 0 // Undo must never step back over a malformed entry
		if e != ErrHeadIndex {
			// Return the descriptors to the driver: no leak. A head
			// outside the table names no descriptors, and its id would
			// only confuse the driver, so it is dropped instead.
			q.Push(head, 0)
		} else if q.lastAvail-q.nextUsed >= usedLagMax {
			// Each dropped entry leaves the used index one further
			// behind; half the 16-bit circle on, it would read as
			// ahead, and a used ring laid over an avail ring would then
			// make entries available with every Publish.
			q.broken = true
			q.stats.Broken++
			return false, ErrBroken
		}
		return false, e
	}
	q.stats.Chains++
	q.undoable = min(q.undoable+1, int(q.size))
	return true, nil
}

// walk follows the chain at head into c. It never reads outside the
// descriptor table or an indirect table, never produces a segment outside
// guest memory, and visits at most size descriptors in the descriptor
// table plus at most the length of one indirect table.
func (q *Queue) walk(c *Chain, head uint16) ChainError {
	if head >= q.size {
		return ErrHeadIndex
	}
	table := q.desc
	n := uint32(q.size) // entries in the table being walked
	ttl := n
	idx := uint32(head)
	var acc segAcc
	for {
		if idx >= n {
			return ErrDescIndex
		}
		if ttl == 0 {
			return ErrChainLoop
		}
		ttl--
		c.descs++
		d := table[descSize*idx : descSize*idx+descSize]
		addr := binary.LittleEndian.Uint64(d[0:8])
		length := binary.LittleEndian.Uint32(d[8:12])
		flags := binary.LittleEndian.Uint16(d[12:14])
		next := binary.LittleEndian.Uint16(d[14:16])

		if flags&descFIndirect != 0 {
			switch {
			case c.Indirect:
				return ErrIndirectNested
			case !q.indirect:
				return ErrIndirectNotNegotiated
			case flags&descFNext != 0:
				return ErrIndirectNext
			}
			t, e := q.indirectTable(addr, length)
			if e != 0 {
				return e
			}
			// The WRITE flag of the descriptor that points at the table
			// is ignored, as the spec requires.
			c.Indirect = true
			table, n, ttl, idx = t, length/descSize, length/descSize, 0
			continue
		}

		write := flags&descFWrite != 0
		if e := acc.check(length, write); e != 0 {
			return e
		}
		if length != 0 {
			if e := q.addSegments(c, addr, length, write); e != 0 {
				return e
			}
		}
		if flags&descFNext == 0 {
			return 0
		}
		idx = uint32(next)
	}
}

// indirectTable returns the indirect table at [addr, addr+length): its
// length must be a non-zero multiple of 16 of at most 65536 descriptors,
// and it must lie inside one region of guest memory.
func (q *Queue) indirectTable(addr uint64, length uint32) ([]byte, ChainError) {
	if length == 0 || length%descSize != 0 || length/descSize > maxIndirect {
		return nil, ErrIndirectLen
	}
	t, ok := q.m.Within(addr, uint64(length))
	if !ok {
		return nil, ErrIndirectAddress
	}
	return t, 0
}

// segAcc carries a buffer's checks across its descriptors, for the
// split and the packed walk alike: readable buffers must precede
// writable ones, and the buffer's total length stays below 2^32.
type segAcc struct {
	total uint64
	wrote bool
}

// check accounts for one buffer descriptor of length bytes, writable if
// write, before its memory is looked up.
func (a *segAcc) check(length uint32, write bool) ChainError {
	if write {
		a.wrote = true
	} else if a.wrote {
		return ErrReadAfterWrite
	}
	if a.total += uint64(length); a.total > math.MaxUint32 {
		return ErrChainTooLong
	}
	return 0
}

// addSegments appends [addr, addr+length) to c, split into several
// segments if it spans adjacent memory regions.
func (q *Queue) addSegments(c *Chain, addr uint64, length uint32, write bool) ChainError {
	n := uint64(length)
	if addr > math.MaxUint64-n {
		return ErrBufferAddress
	}
	for n > 0 {
		b, ok := q.m.Span(addr, n)
		if !ok {
			return ErrBufferAddress
		}
		if len(c.Readable)+len(c.Writable) >= q.maxSegs {
			return ErrTooManySegments
		}
		if write {
			c.Writable = append(c.Writable, b)
		} else {
			c.Readable = append(c.Readable, b)
		}
		addr += uint64(len(b))
		n -= uint64(len(b))
	}
	if write {
		c.WriteLen += length
	} else {
		c.ReadLen += length
	}
	return 0
}

// Push adds a used element (id head, len n: the bytes the device wrote
// into the chain's writable buffers) to the used ring. The driver sees it
// after the next Publish; push several and publish once to batch.
func (q *Queue) Push(head uint16, n uint32) {
	if !q.ready {
		return
	}
	if q.packed {
		q.pushPacked(head, n)
		return
	}
	e := q.usedRing[usedElem*int(q.nextUsed&q.mask):]
	binary.LittleEndian.PutUint32(e[0:4], uint32(head))
	binary.LittleEndian.PutUint32(e[4:8], n)
	q.nextUsed++
}

// Publish makes the pushed used elements visible to the driver: it stores
// used.idx with release ordering, after the elements and the device's
// writes into the buffers. It reports whether there was anything to
// publish. Call NeedsInterrupt afterwards to decide whether to signal.
func (q *Queue) Publish() bool {
	if q.packed && q.ready {
		return q.publishPacked()
	}
	if !q.ready || q.nextUsed == q.pubUsed {
		return false
	}
	d := q.nextUsed - q.pubUsed
	q.usedIdxW.Store(q.nextUsed)
	q.pubUsed = q.nextUsed
	q.marks.published(uint64(d), q.pubUsed)
	return true
}

// NeedsInterrupt reports whether the driver wants a used-buffer
// notification for the elements published since the previous call (false
// if there are none). Without VIRTIO_F_RING_EVENT_IDX that is when
// VIRTQ_AVAIL_F_NO_INTERRUPT is clear; with it, when the used index moved
// past used_event: vring_need_event(used_event, new, old), in 16-bit
// wrapping arithmetic. Its load of used_event / avail.flags is ordered
// after Publish's store of used.idx (both are sequentially consistent),
// which pairs with the driver's barrier when it re-enables interrupts.
func (q *Queue) NeedsInterrupt() bool {
	pending := q.marks.pending()
	if !q.ready || pending == 0 {
		return false
	}
	return q.wants(q.marks.decide(), pending, q.marks.pub)
}

// wants applies the driver's suppression, as it reads now, to n entries
// published from mark from to mark to: on a split ring the NO_INTERRUPT
// flag, or with EVENT_IDX whether the used index moved past used_event
// (vring_need_event, 16-bit wrapping); on a packed ring wantsPacked.
// NeedsInterrupt and StillWants (recheck.go) both decide with it.
func (q *Queue) wants(from Mark, n uint64, to Mark) bool {
	switch {
	case q.packed:
		return q.wantsPacked(from.pos(), n)
	case !q.eventIdx:
		return q.availFlags.Load()&availFNoInterrupt == 0
	case n >= 1<<16:
		return true // the 16-bit window wrapped: the position test cannot tell
	}
	return needEvent(q.usedEvent.Load(), to.pos(), from.pos())
}

// needEvent is vring_need_event: whether moving an index from old to cur
// crossed event, i.e. event is in [old, cur) modulo 2^16.
func needEvent(event, cur, old uint16) bool {
	return cur-event-1 < cur-old
}

// DisableNotifications asks the driver not to notify (kick) the device:
// it sets VIRTQ_USED_F_NO_NOTIFY, or with VIRTIO_F_RING_EVENT_IDX simply
// stops advancing avail_event. It is a hint; kicks may still arrive.
func (q *Queue) DisableNotifications() {
	if q.ready && q.packed {
		q.disableNotificationsPacked()
		return
	}
	if !q.ready || q.eventIdx || q.usedFlags&usedFNoNotify != 0 {
		return
	}
	q.usedFlags |= usedFNoNotify
	q.usedFlagsW.Store(q.usedFlags)
}

// EnableNotifications asks the driver to notify the device when it makes
// the next buffer available (clears VIRTQ_USED_F_NO_NOTIFY, or with
// VIRTIO_F_RING_EVENT_IDX sets avail_event to the next index to pop), and
// then re-reads avail.idx. It returns true if buffers arrived that the
// device has not popped: the driver may have added them before it saw
// the change and so will not notify, and the device must keep polling.
// The store and the re-read are sequentially consistent, which is the
// full fence this handshake needs. Typical use:
//
//	for {
//		q.DisableNotifications()
//		... Pop until empty, Push, Publish, maybe signal ...
//		if !q.EnableNotifications() {
//			break // wait for the next kick
//		}
//	}
func (q *Queue) EnableNotifications() bool {
	if !q.ready {
		return false
	}
	if q.packed {
		return q.enableNotificationsPacked()
	}
	if q.eventIdx {
		q.availEvent.Store(q.lastAvail)
	} else if q.usedFlags&usedFNoNotify != 0 {
		q.usedFlags &^= usedFNoNotify
		q.usedFlagsW.Store(q.usedFlags)
	}
	return q.availIdx.Load() != q.lastAvail
}

// truncate empties c for refilling without clearing the old views (they
// are overwritten by the walk); Reset is the thorough version.
func (c *Chain) truncate() {
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	c.ReadLen, c.WriteLen = 0, 0
	c.Indirect = false
	c.descs = 0
}
