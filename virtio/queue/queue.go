package queue

import (
	"fmt"

	"github.com/flintvm/flint/mem"
)

// MaxSize is the largest queue size a split virtqueue may have (2^15).
const MaxSize = 32768

// DefaultMaxSegments is the default limit on non-empty buffers in one
// chain. It equals Linux's IOV_MAX, the most a single readv/writev takes.
const DefaultMaxSegments = 1024

// Ring feature bit numbers (virtio 1.2 §6). They are repeated here, rather
// than imported from package virtio, because virtio imports queue.
const (
	featureIndirectDesc = 28 // VIRTIO_F_RING_INDIRECT_DESC
	featureEventIdx     = 29 // VIRTIO_F_RING_EVENT_IDX
	featureRingPacked   = 34 // VIRTIO_F_RING_PACKED
)

// Split ring layout (virtio 1.2 §2.7).
const (
	descSize   = 16 // struct virtq_desc
	descAlign  = 16
	availAlign = 2
	usedAlign  = 4
	usedElem   = 8 // struct virtq_used_elem

	descFNext     = 1 // VIRTQ_DESC_F_NEXT
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE
	descFIndirect = 4 // VIRTQ_DESC_F_INDIRECT

	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	usedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY

	// maxIndirect is the most descriptors an indirect table can usefully
	// hold: next fields are 16 bits wide.
	maxIndirect = 1 << 16

	// usedLagMax bounds how far (16-bit) the split ring's next used index
	// may lag the next avail index: the entries in flight, plus those a
	// driver named with a head out of range. At half the circle the used
	// index would read as ahead of the avail index, and a used ring that
	// overlaps an avail ring (this queue's or another's) would make the
	// device feed itself entries with every Publish, forever.
	usedLagMax = 1 << 15
)

// AvailRingBytes is the size in bytes of a split ring's available (driver)
// area for a queue of size n: flags, idx, ring[n], used_event.
func AvailRingBytes(n uint16) uint64 { return 6 + 2*uint64(n) }

// UsedRingBytes is the size in bytes of a split ring's used (device) area
// for a queue of size n: flags, idx, ring[n] of {id, len}, avail_event.
func UsedRingBytes(n uint16) uint64 { return 6 + usedElem*uint64(n) }

// DescTableBytes is the size in bytes of a descriptor table of n entries.
func DescTableBytes(n uint16) uint64 { return descSize * uint64(n) }

// Stats counts what a queue has seen. Counters survive Reset.
type Stats struct {
	// Chains is the number of well-formed chains popped.
	Chains uint64
	// Malformed is the number of chains rejected and completed with used
	// length 0; ByReason breaks it down by ChainError.
	Malformed uint64
	// ByReason counts rejected chains per ChainError value.
	ByReason [numChainErrors]uint64
	// Broken is the number of times the queue was found broken (ErrBroken).
	Broken uint64
}

// Queue is one virtqueue, device side. See the package documentation for
// who may call what, and when.
type Queue struct {
	// Programmed by the transport while the queue is not ready.
	maxSize   uint16
	size      uint16
	descAddr  uint64
	availAddr uint64
	usedAddr  uint64
	eventIdx  bool
	indirect  bool
	packed    bool // VIRTIO_F_RING_PACKED: the packed engine (packed.go)
	maxSegs   int
	startAv   uint16 // next avail index to consume once ready
	startUsed uint16 // next used index to fill once ready
	startSet  uint8  // 1: SetNextAvail called, 2: SetNextUsed called

	ready bool

	// Set by Validate: views of the rings and handles on shared words.
	m          *mem.Memory
	mask       uint16
	desc       []byte // descriptor table
	availRing  []byte // avail.ring[size]
	usedRing   []byte // used.ring[size]
	availFlags mem.AtomicU16
	availIdx   mem.AtomicU16
	usedEvent  mem.AtomicU16 // avail ring tail, written by the driver
	usedFlagsW mem.AtomicU16
	usedIdxW   mem.AtomicU16
	availEvent mem.AtomicU16 // used ring tail, written by the device

	// Running state.
	lastAvail   uint16 // next avail ring slot to consume
	availShadow uint16 // avail.idx as last read
	nextUsed    uint16 // next used ring slot to fill
	pubUsed     uint16 // used.idx as last published
	marks       marks  // published and decided spans (recheck.go): what NeedsInterrupt decides over
	usedFlags   uint16 // shadow of used.flags
	undoable    int    // chains Undo may still give back
	broken      bool

	cache   []Chain // PopCached's chains, keyed by head
	scratch Chain   // PopCached's chain for heads out of range

	pk packedState // the packed engine's state (packed.go)

	stats Stats
}

// New returns a queue that accepts sizes up to maxSize, which must be a
// power of two between 1 and MaxSize. The queue starts reset: size
// maxSize, no addresses, not ready.
func New(maxSize uint16) (*Queue, error) {
	if !validSize(maxSize) {
		return nil, fmt.Errorf("virtqueue max size %d: must be a power of two in [1, %d]", maxSize, MaxSize)
	}
	q := &Queue{maxSize: maxSize}
	q.Reset()
	return q, nil
}

func validSize(n uint16) bool { return n != 0 && n <= MaxSize && n&(n-1) == 0 }

// Reset returns the queue to its state after New: not ready, size
// MaxSize(), addresses and indices zero, no ring features, not broken. It
// drops the references to guest memory. Stats are kept; the PopCached
// chains are kept for reuse.
func (q *Queue) Reset() {
	q.size = q.maxSize
	q.descAddr, q.availAddr, q.usedAddr = 0, 0, 0
	q.eventIdx, q.indirect, q.packed = false, false, false
	q.pk.drvOffWrap, q.pk.drvFlags = mem.AtomicU16{}, mem.AtomicU16{}
	q.pk.devOffWrap, q.pk.devFlags = mem.AtomicU16{}, mem.AtomicU16{}
	clear(q.pk.flags) // drop the references to guest memory, keep the array
	if q.maxSegs == 0 {
		q.maxSegs = DefaultMaxSegments
	}
	q.startAv, q.startUsed, q.startSet = 0, 0, 0
	q.ready = false
	q.m = nil
	q.desc, q.availRing, q.usedRing = nil, nil, nil
	q.availFlags, q.availIdx, q.usedEvent = mem.AtomicU16{}, mem.AtomicU16{}, mem.AtomicU16{}
	q.usedFlagsW, q.usedIdxW, q.availEvent = mem.AtomicU16{}, mem.AtomicU16{}, mem.AtomicU16{}
	q.lastAvail, q.availShadow, q.nextUsed, q.pubUsed = 0, 0, 0, 0
	q.usedFlags, q.undoable = 0, 0
	q.marks.reset(0)
	q.broken = false
	for i := range q.cache {
		q.cache[i].Reset()
	}
	q.scratch.Reset()
}

// MaxSize is the largest size the device accepts for this queue
// (QueueNumMax on MMIO, the initial queue_size on PCI).
func (q *Queue) MaxSize() uint16 { return q.maxSize }

// Size is the queue size the driver programmed (MaxSize until it does).
func (q *Queue) Size() uint16 { return q.size }

// Ready reports whether Validate accepted the queue and it has not been
// reset since. Broken queues stay ready; see Broken.
func (q *Queue) Ready() bool { return q.ready }

// Broken reports whether the driver broke the queue (see ErrBroken).
func (q *Queue) Broken() bool { return q.broken }

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats { return q.stats }

func (q *Queue) checkNotReady(what string) error {
	if q.ready {
		return fmt.Errorf("virtqueue: %s changed while the queue is ready", what)
	}
	return nil
}

// SetSize sets the queue size. It must be a power of two no larger than
// MaxSize(), or with VIRTIO_F_RING_PACKED (SetFeatures first) any size
// in [1, MaxSize()]: the spec allows other sizes only for packed rings.
func (q *Queue) SetSize(n uint16) error {
	if err := q.checkNotReady("size"); err != nil {
		return err
	}
	if err := q.checkSize(n); err != nil {
		return err
	}
	q.size = n
	return nil
}

func (q *Queue) checkSize(n uint16) error {
	if q.packed {
		if n == 0 || n > q.maxSize {
			return fmt.Errorf("packed virtqueue size %d: must be in [1, %d]", n, q.maxSize)
		}
		return nil
	}
	if !validSize(n) || n > q.maxSize {
		return fmt.Errorf("virtqueue size %d: must be a power of two in [1, %d]", n, q.maxSize)
	}
	return nil
}

// SetAddrs sets the guest-physical addresses of the descriptor area
// (descriptor table), driver area (available ring) and device area (used
// ring). Transports that receive the halves separately (MMIO QueueDescLow
// and QueueDescHigh...) keep them in their own registers and call SetAddrs
// before Validate.
func (q *Queue) SetAddrs(desc, avail, used uint64) error {
	if err := q.checkNotReady("ring address"); err != nil {
		return err
	}
	q.descAddr, q.availAddr, q.usedAddr = desc, avail, used
	return nil
}

// Addrs returns the descriptor, available and used ring addresses.
func (q *Queue) Addrs() (desc, avail, used uint64) { return q.descAddr, q.availAddr, q.usedAddr }

// SetFeatures tells the queue which features were negotiated; it uses
// VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC and
// VIRTIO_F_RING_PACKED (the packed layout: the descriptor area is the
// descriptor ring, the driver and device areas are the event suppression
// structures) and ignores device-specific bits.
func (q *Queue) SetFeatures(features uint64) error {
	if err := q.checkNotReady("features"); err != nil {
		return err
	}
	q.packed = features&(1<<featureRingPacked) != 0
	q.eventIdx = features&(1<<featureEventIdx) != 0
	q.indirect = features&(1<<featureIndirectDesc) != 0
	return nil
}

// Packed reports whether VIRTIO_F_RING_PACKED is in use.
func (q *Queue) Packed() bool { return q.packed }

// EventIdx reports whether VIRTIO_F_RING_EVENT_IDX is in use.
func (q *Queue) EventIdx() bool { return q.eventIdx }

// IndirectDesc reports whether VIRTIO_F_RING_INDIRECT_DESC is in use.
func (q *Queue) IndirectDesc() bool { return q.indirect }

// SetMaxSegments sets the most non-empty buffers one chain may have
// (default DefaultMaxSegments); longer chains are rejected as malformed.
// n is clamped to [1, 65536+MaxSize]. The limit survives Reset.
func (q *Queue) SetMaxSegments(n int) {
	q.maxSegs = min(max(n, 1), maxIndirect+MaxSize)
}

// SetNextAvail sets the avail ring index the device consumes next and
// SetNextUsed the used ring index it fills next, for a queue that resumes
// where another backend left it (vhost-user SET_VRING_BASE, snapshot
// restore). A fresh queue starts at 0 for both. Only while not ready.
// For a packed queue both are ring positions: bits 0-14 the slot, bit 15
// the wrap counter (as vhost-user encodes them); a fresh packed queue
// starts at slot 0 with wrap counter 1 (0x8000). Validate checks the slot
// against the size; for a split queue it refuses a used index more than
// 32767 entries behind the avail index (16-bit: ahead of it).
func (q *Queue) SetNextAvail(idx uint16) error {
	if err := q.checkNotReady("avail index"); err != nil {
		return err
	}
	q.startAv = idx
	q.startSet |= 1
	return nil
}

// SetNextUsed sets the next used ring index; see SetNextAvail.
func (q *Queue) SetNextUsed(idx uint16) error {
	if err := q.checkNotReady("used index"); err != nil {
		return err
	}
	q.startUsed = idx
	q.startSet |= 2
	return nil
}

// NextAvail is the avail ring index the device consumes next (vhost-user
// GET_VRING_BASE).
func (q *Queue) NextAvail() uint16 {
	if !q.ready {
		return q.startPos(q.startAv, 1)
	}
	return q.lastAvail
}

// NextUsed is the used ring index the device fills next.
func (q *Queue) NextUsed() uint16 {
	if !q.ready {
		return q.startPos(q.startUsed, 2)
	}
	return q.nextUsed
}

// within returns the ring area [addr, addr+n) of m, or an error naming
// it when it is not inside one RAM region.
func within(m *mem.Memory, what string, addr, n uint64) ([]byte, error) {
	b, ok := m.Within(addr, n)
	if !ok {
		return nil, fmt.Errorf("%s [%#x, +%#x) is not inside one RAM region", what, addr, n)
	}
	return b, nil
}

// Validate checks the programmed queue against guest memory and, if it is
// sound, makes the queue ready: the size is a power of two within
// MaxSize(), the descriptor table is 16-byte aligned, the available ring
// 2-byte aligned, the used ring 4-byte aligned, and each of the three lies
// wholly inside one region of m. Transports call it when the driver
// enables the queue (MMIO QueueReady, PCI queue_enable) or sets DRIVER_OK,
// vhost-user when the ring is started. Calling it on a ready queue
// re-validates it against m and keeps the indices.
func (q *Queue) Validate(m *mem.Memory) error {
	if m == nil {
		return fmt.Errorf("virtqueue: no guest memory")
	}
	if q.packed {
		return q.validatePacked(m)
	}
	n := q.size
	if !validSize(n) || n > q.maxSize {
		return fmt.Errorf("virtqueue size %d: must be a power of two in [1, %d]", n, q.maxSize)
	}
	if q.descAddr%descAlign != 0 || q.availAddr%availAlign != 0 || q.usedAddr%usedAlign != 0 {
		return fmt.Errorf("virtqueue rings misaligned: desc %#x (16), avail %#x (2), used %#x (4)",
			q.descAddr, q.availAddr, q.usedAddr)
	}
	if !q.ready && q.startAv-q.startUsed >= usedLagMax {
		return fmt.Errorf("virtqueue next used index %d is not within %d entries behind next avail index %d", q.startUsed, usedLagMax-1, q.startAv)
	}
	desc, err := within(m, "virtqueue descriptor table", q.descAddr, DescTableBytes(n))
	if err != nil {
		return err
	}
	avail, err := within(m, "virtqueue available ring", q.availAddr, AvailRingBytes(n))
	if err != nil {
		return err
	}
	used, err := within(m, "virtqueue used ring", q.usedAddr, UsedRingBytes(n))
	if err != nil {
		return err
	}
	words := []struct {
		dst  *mem.AtomicU16
		addr uint64
	}{
		{&q.availFlags, q.availAddr},
		{&q.availIdx, q.availAddr + 2},
		{&q.usedEvent, q.availAddr + 4 + 2*uint64(n)},
		{&q.usedFlagsW, q.usedAddr},
		{&q.usedIdxW, q.usedAddr + 2},
		{&q.availEvent, q.usedAddr + 4 + usedElem*uint64(n)},
	}
	for _, w := range words {
		if *w.dst, err = m.AtomicU16(w.addr); err != nil {
			return fmt.Errorf("virtqueue ring word: %w", err)
		}
	}
	q.m = m
	q.mask = n - 1
	q.desc = desc
	q.availRing = avail[4 : 4+2*int(n)]
	q.usedRing = used[4 : 4+usedElem*int(n)]
	if !q.ready {
		q.lastAvail, q.availShadow = q.startAv, q.startAv
		q.nextUsed, q.pubUsed = q.startUsed, q.startUsed
		q.undoable = 0
		q.marks.reset(q.startUsed)
		q.usedFlags = 0
		q.broken = false
	}
	q.ready = true
	return nil
}
