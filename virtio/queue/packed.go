package queue

// The packed virtqueue engine (virtio 1.2 §2.8): one ring of 16-byte
// descriptors that the driver fills and the device overwrites with used
// descriptors, wrap counters instead of free-running indices.
//
// Positions in the ring are kept as 16-bit words in the encoding the
// vhost-user protocol uses for packed rings (GET/SET_VRING_BASE): bits
// 0-14 the slot index (< size <= 32768), bit 15 the wrap counter. The
// Queue's lastAvail, nextUsed and pubUsed fields (and its Marks) hold such
// positions when the queue is packed, so NextAvail/NextUsed report them
// as vhost-user expects.
//
// Buffer ids: the driver names each buffer by the id in its last
// descriptor. Linux numbers ids below the queue size; Flint requires
// that (an id >= size breaks the queue), keeps per id the number of ring
// slots the buffer took (Push advances the used position by it), and
// breaks the queue when the driver makes an id available again before
// the device used it.

import (
	"encoding/binary"
	"fmt"

	"github.com/flintvm/flint/mem"
)

// Packed descriptor flag bits and event suppression values.
const (
	pdescFAvail = 1 << 7  // VIRTQ_DESC_F_AVAIL
	pdescFUsed  = 1 << 15 // VIRTQ_DESC_F_USED

	ringEventEnable  = 0 // RING_EVENT_FLAGS_ENABLE
	ringEventDisable = 1 // RING_EVENT_FLAGS_DISABLE
	ringEventDesc    = 2 // RING_EVENT_FLAGS_DESC

	eventAreaBytes = 4 // struct pvirtq_event_suppress
	eventAlign     = 4

	posWrap = 1 << 15 // wrap counter bit of a position
)

// PackedEventBytes is the size of a packed ring's driver and device areas
// (struct pvirtq_event_suppress: off_wrap, flags).
const PackedEventBytes = eventAreaBytes

// packedState is the packed engine's part of a Queue.
type packedState struct {
	flags   []mem.AtomicU16 // each slot's flags word, built by Validate
	counts  []uint16        // ring slots per buffer id in flight; 0: not in flight
	undoLog []uint32        // start position<<16 | id of recent pops, circular
	undoTop int             // next undoLog entry to write

	pubFlags uint16 // flags for the first unpublished used descriptor
	pubID    uint16 // and its buffer id (stored with them, at Publish)
	pending  int    // used descriptors pushed and not published
	pendSlot uint32 // ring slots those take

	drvOffWrap, drvFlags mem.AtomicU16 // driver event suppression (driver area)
	devOffWrap, devFlags mem.AtomicU16 // device event suppression (device area)
	devFlagsV            uint16
}

// advance moves position p forward by n slots (n <= size).
func advance(p, n, size uint16) uint16 {
	idx, w := uint32(p&^posWrap)+uint32(n), p&posWrap
	if idx >= uint32(size) {
		idx -= uint32(size)
		w ^= posWrap
	}
	return uint16(idx) | w
}

// isAvail reports whether a descriptor with flags f is available to the
// device at a position whose wrap counter is w (0 or posWrap): AVAIL
// equals the wrap counter and USED differs from it.
func isAvail(f, w uint16) bool { return f&(pdescFAvail|pdescFUsed) == availBits(w) }

// availBits is what an available descriptor's AVAIL and USED bits read
// at a position whose wrap counter is w: AVAIL alone on wrap 1, USED
// alone on wrap 0.
func availBits(w uint16) uint16 {
	if w != 0 {
		return pdescFAvail
	}
	return pdescFUsed
}

// descFlags loads slot i (< size) flags with acquire ordering.
func (q *Queue) descFlags(i uint16) uint16 { return q.pk.flags[i].Load() }

// storeIDFlags stores slot i's (< size) id and flags with release
// ordering, in one atomic store where the handle allows, else the id
// first and the flags after it.
func (q *Queue) storeIDFlags(i, id, f uint16) {
	if !q.pk.flags[i].StoreWithNeighbour(f, id) {
		binary.LittleEndian.PutUint16(q.desc[descSize*int(i)+12:], id)
		q.pk.flags[i].Store(f)
	}
}

// popPacked is Pop for a packed ring: it walks the buffer at the next
// avail position into c, or when cached into the cache entry of the id
// its last descriptor names (peeked first; q.scratch for an id the walk
// will refuse anyway). An id already in flight is refused before the
// walk, so a chain the device holds is never walked over.
func (q *Queue) popPacked(c *Chain, cached bool) (*Chain, error) {
	if !q.ready {
		return nil, ErrNotReady
	}
	if q.broken {
		return nil, ErrBroken
	}
	pos := q.lastAvail
	if !isAvail(q.descFlags(pos&^posWrap), pos&posWrap) {
		return nil, nil
	}
	if cached {
		c = &q.scratch
		if id := q.peekID(pos); id < q.size {
			if q.pk.counts[id] != 0 {
				q.breakQueue()
				return nil, ErrBroken
			}
			if len(q.cache) < int(q.size) {
				q.growCache()
			}
			c = &q.cache[id]
		}
	}
	c.truncate()
	id, slots, e, ok := q.walkPacked(c, pos)
	if !ok || id >= q.size || q.pk.counts[id] != 0 || (cached && (int(id) >= len(q.cache) || c != &q.cache[id])) {
		// The last check: the driver changed the id between the peek
		// and the walk, which only a hostile driver does.
		q.breakQueue()
		return nil, ErrBroken
	}
	q.lastAvail = advance(pos, slots, q.size)
	q.pk.counts[id] = slots
	c.Head = id
	if e != 0 {
		q.stats.Malformed++
		q.stats.ByReason[e]++
		c.truncate()
		q.undoable = 0
		q.Push(id, 0)
		return nil, e
	}
	q.stats.Chains++
	q.undoable = min(q.undoable+1, int(q.size))
	q.pk.undoLog[q.pk.undoTop] = uint32(pos)<<16 | uint32(id)
	if q.pk.undoTop++; q.pk.undoTop == len(q.pk.undoLog) {
		q.pk.undoTop = 0
	}
	return c, nil
}

// peekID returns the id in the last descriptor of the chain at pos,
// following NEXT flags for at most size slots (0xffff if it does not
// end: the walk then breaks the queue).
func (q *Queue) peekID(pos uint16) uint16 {
	i := int(pos &^ posWrap)
	for range q.size {
		d := q.desc[descSize*i : descSize*i+descSize]
		if binary.LittleEndian.Uint16(d[14:16])&descFNext == 0 {
			return binary.LittleEndian.Uint16(d[12:14])
		}
		if i++; i == int(q.size) {
			i = 0
		}
	}
	return 0xffff
}

func (q *Queue) breakQueue() {
	q.broken = true
	q.stats.Broken++
}

// walkPacked follows the buffer starting at position pos into c. It
// returns the buffer id (from its last descriptor), the ring slots it
// takes, and a ChainError if the buffer is malformed (then the walk has
// still found its end, so it can be completed). ok is false when the
// buffer's end cannot be found: a descriptor with NEXT is followed by
// one that is not available, or the chain is longer than the ring. That
// breaks the queue.
//
// The caller loaded the head's flags with acquire ordering, and the
// driver makes a chain available by writing its head's flags last
// (§2.8.13), so the later descriptors are read with plain loads. Each
// one's AVAIL/USED bits are still checked against its slot's wrap
// counter (one mask and compare): a chain running into slots the driver
// has not filled breaks the queue. The slot and the expected bits step
// here rather than through advance, and segAcc's checks inline, so a
// long direct chain costs per descriptor what the split walk does.
func (q *Queue) walkPacked(c *Chain, pos uint16) (id, slots uint16, e ChainError, ok bool) {
	var acc segAcc
	size := uint32(q.size)
	i, want := uint32(pos&^posWrap), availBits(pos&posWrap)
	for n := uint32(1); n <= size; n++ {
		d := q.desc[descSize*i : descSize*i+descSize]
		flags := binary.LittleEndian.Uint16(d[14:16])
		if n > 1 && flags&(pdescFAvail|pdescFUsed) != want {
			return 0, 0, 0, false
		}
		c.descs++
		if e == 0 {
			addr := binary.LittleEndian.Uint64(d[0:8])
			length := binary.LittleEndian.Uint32(d[8:12])
			write := flags&descFWrite != 0
			if flags&descFIndirect != 0 {
				e = q.indirectPacked(c, addr, length, flags, n > 1)
			} else if e = acc.check(length, write); e == 0 && length != 0 {
				e = q.addSegments(c, addr, length, write)
			}
		}
		if flags&descFNext == 0 {
			return binary.LittleEndian.Uint16(d[12:14]), uint16(n), e, true
		}
		if i++; i == size {
			i, want = 0, want^(pdescFAvail|pdescFUsed)
		}
	}
	return 0, 0, 0, false
}

// indirectPacked walks an indirect table (§2.8.7): the indirect
// descriptor must be its buffer's only descriptor, the table's entries
// follow one another (their NEXT flags and ids are ignored), and none of
// them may be indirect itself.
func (q *Queue) indirectPacked(c *Chain, addr uint64, length uint32, flags uint16, chained bool) ChainError {
	switch {
	case !q.indirect:
		return ErrIndirectNotNegotiated
	case chained || flags&descFNext != 0:
		return ErrIndirectNext
	}
	t, e := q.indirectTable(addr, length)
	if e != 0 {
		return e
	}
	c.Indirect = true
	var acc segAcc
	for off := 0; off < len(t); off += descSize {
		d := t[off : off+descSize]
		f := binary.LittleEndian.Uint16(d[14:16])
		c.descs++
		if f&descFIndirect != 0 {
			return ErrIndirectNested
		}
		a := binary.LittleEndian.Uint64(d[0:8])
		n := binary.LittleEndian.Uint32(d[8:12])
		write := f&descFWrite != 0
		if e := acc.check(n, write); e != 0 {
			return e
		}
		if n != 0 {
			if e := q.addSegments(c, a, n, write); e != 0 {
				return e
			}
		}
	}
	return 0
}

// availablePacked counts the buffers available past the next avail
// position, scanning at most one ring's worth of descriptors.
func (q *Queue) availablePacked() int {
	pos, n := q.lastAvail, 0
	for range q.size {
		f := q.descFlags(pos &^ posWrap)
		if !isAvail(f, pos&posWrap) {
			break
		}
		if f&descFNext == 0 {
			n++
		}
		pos = advance(pos, 1, q.size)
	}
	return n
}

// undoPacked steps the avail position back over the n most recent pops.
func (q *Queue) undoPacked(n int) {
	for range n {
		if q.pk.undoTop == 0 {
			q.pk.undoTop = len(q.pk.undoLog)
		}
		q.pk.undoTop--
		e := q.pk.undoLog[q.pk.undoTop]
		q.lastAvail = uint16(e >> 16)
		q.pk.counts[uint16(e)] = 0
	}
}

// pushPacked writes a used descriptor for buffer id at the next used
// position. The first used descriptor after a Publish gets its flags only
// at the next Publish, so the driver sees the whole batch at once; the
// ones after it get theirs now, with plain stores: the driver reads in
// ring order and stops at the first one not yet used, and Publish's
// release store of that one's flags orders these writes before it. An id
// not in flight is ignored: there is no slot count to advance by, and
// writing would corrupt the ring.
func (q *Queue) pushPacked(id uint16, n uint32) {
	if int(id) >= len(q.pk.counts) || q.pk.counts[id] == 0 {
		return
	}
	slots := q.pk.counts[id]
	q.pk.counts[id] = 0
	pos := q.nextUsed
	i := pos &^ posWrap
	d := q.desc[descSize*int(i) : descSize*int(i)+descSize]
	binary.LittleEndian.PutUint32(d[8:12], n)
	var f uint16
	if pos&posWrap != 0 {
		f = pdescFAvail | pdescFUsed
	}
	if n != 0 {
		f |= descFWrite // the length is meaningful (§2.8.4)
	}
	// The id and the flags share a 32-bit word that the driver polls: they
	// are stored together, in one atomic store, never the id alone. The
	// first pending descriptor's go at Publish; a later one's may be
	// visible at once, since the driver reads used descriptors in order.
	if q.pk.pending == 0 {
		q.pk.pubFlags, q.pk.pubID = f, id
	} else {
		q.storeIDFlags(i, id, f)
	}
	q.pk.pending++
	q.pk.pendSlot += uint32(slots) // < 2^16 slots pending: each was popped
	q.nextUsed = advance(pos, slots, q.size)
}

// publishPacked stores the first pending used descriptor's flags (release:
// after every id, length and buffer write before it).
func (q *Queue) publishPacked() bool {
	if q.pk.pending == 0 {
		return false
	}
	q.storeIDFlags(q.pubUsed&^posWrap, q.pk.pubID, q.pk.pubFlags)
	q.pubUsed = q.nextUsed
	q.marks.published(uint64(q.pk.pendSlot), q.pubUsed)
	q.pk.pending, q.pk.pendSlot = 0, 0
	return true
}

// wantsPacked applies the driver's event suppression (§2.8.10) to slots
// used slots published from position old: DISABLE never, DESC (with
// EVENT_IDX) when the used position moved past the driver's off_wrap,
// anything else always.
func (q *Queue) wantsPacked(old uint16, slots uint64) bool {
	switch q.pk.drvFlags.Load() & 3 {
	case ringEventDisable:
		return false
	case ringEventDesc:
		if !q.eventIdx {
			return true
		}
		if slots >= 2*uint64(q.size) {
			return true
		}
		return uint64(packedDist(old, q.pk.drvOffWrap.Load(), q.size)) < slots
	}
	return true
}

// packedDist is how many slots forward position to is from position
// from, counting both wrap counter values (modulo 2*size). An offset at
// or past size (a driver's bad off_wrap) is reduced the same way.
func packedDist(from, to, size uint16) uint32 {
	span := 2 * uint32(size)
	lin := func(p uint16) uint32 {
		v := uint32(p &^ posWrap)
		if p&posWrap != 0 {
			v += uint32(size)
		}
		if v >= span { // only a driver's off_wrap past the ring
			v %= span
		}
		return v
	}
	d := lin(to) + span - lin(from) // in [1, 2*span)
	if d >= span {
		d -= span
	}
	return d
}

// disableNotificationsPacked asks the driver not to kick: DISABLE.
func (q *Queue) disableNotificationsPacked() {
	if q.pk.devFlagsV == ringEventDisable {
		return
	}
	q.pk.devFlagsV = ringEventDisable
	q.pk.devFlags.Store(ringEventDisable)
}

// enableNotificationsPacked asks for a kick when the next buffer is made
// available (DESC at the next avail position with EVENT_IDX, else
// ENABLE) and re-reads that position's descriptor.
func (q *Queue) enableNotificationsPacked() bool {
	want := uint16(ringEventEnable)
	if q.eventIdx {
		want = ringEventDesc
		q.pk.devOffWrap.Store(q.lastAvail)
	}
	if q.pk.devFlagsV != want {
		q.pk.devFlagsV = want
		q.pk.devFlags.Store(want)
	}
	return isAvail(q.descFlags(q.lastAvail&^posWrap), q.lastAvail&posWrap)
}

// startPos is the position a queue starts at: what SetNextAvail or
// SetNextUsed set (bit set in startSet), else 0, or for a packed ring
// slot 0 with wrap counter 1 (§2.8.1: both wrap counters start at 1).
func (q *Queue) startPos(v uint16, bit uint8) uint16 {
	if q.packed && q.startSet&bit == 0 {
		return posWrap
	}
	return v
}

// validatePacked is Validate for a packed ring: the descriptor ring
// (size*16 bytes, 16-byte aligned) and the driver and device event
// suppression areas (4 bytes each, 4-byte aligned) must each lie inside
// one RAM region, and the start positions must name slots below size.
func (q *Queue) validatePacked(m *mem.Memory) error {
	n := q.size
	if err := q.checkSize(n); err != nil {
		return err
	}
	if q.descAddr%descAlign != 0 || q.availAddr%eventAlign != 0 || q.usedAddr%eventAlign != 0 {
		return fmt.Errorf("packed virtqueue areas misaligned: desc %#x (16), driver %#x (4), device %#x (4)",
			q.descAddr, q.availAddr, q.usedAddr)
	}
	desc, err := within(m, "packed virtqueue descriptor ring", q.descAddr, DescTableBytes(n))
	if err != nil {
		return err
	}
	av, used := q.startPos(q.startAv, 1), q.startPos(q.startUsed, 2)
	if av&^posWrap >= n || used&^posWrap >= n {
		return fmt.Errorf("packed virtqueue start positions %#x/%#x: slot outside size %d", av, used, n)
	}
	var words [4]mem.AtomicU16
	for i, a := range []uint64{q.availAddr, q.availAddr + 2, q.usedAddr, q.usedAddr + 2} {
		if words[i], err = m.AtomicU16(a); err != nil {
			return fmt.Errorf("packed virtqueue event suppression area: %w", err)
		}
	}
	// One handle per slot's flags, built once here rather than per
	// access (a region lookup each): 40 bytes a slot, reused across
	// validations of the same or a smaller size.
	flags := reuse(q.pk.flags, int(n))
	for i := range flags {
		if flags[i], err = m.AtomicU16(q.descAddr + descSize*uint64(i) + 14); err != nil {
			return fmt.Errorf("packed virtqueue descriptor flags: %w", err)
		}
	}
	q.pk.flags = flags
	q.pk.drvOffWrap, q.pk.drvFlags, q.pk.devOffWrap, q.pk.devFlags = words[0], words[1], words[2], words[3]
	q.m = m
	q.desc = desc
	if !q.ready {
		q.lastAvail = av
		q.nextUsed, q.pubUsed = used, used
		q.undoable = 0
		q.marks.reset(used)
		q.broken = false
		q.pk.counts = reuse(q.pk.counts, int(n))
		q.pk.undoLog = reuse(q.pk.undoLog, int(n))
		q.pk.undoTop, q.pk.pending, q.pk.pendSlot = 0, 0, 0
		q.pk.devFlagsV = ringEventEnable
		q.pk.devFlags.Store(ringEventEnable)
	}
	q.ready = true
	return nil
}

// reuse returns s resized to n zeroed elements, allocating only when its
// capacity is too small.
func reuse[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
