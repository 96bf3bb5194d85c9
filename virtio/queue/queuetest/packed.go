package queuetest

// A driver-side double for packed virtqueues (virtio 1.2 §2.8): the
// descriptor ring and the two event suppression areas in a fake guest
// memory, buffers added as direct chains or through indirect tables with
// the AVAIL/USED bits of the driver's wrap counter, used descriptors read
// back with the used wrap counter, and raw descriptors for malformed
// rings.

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
)

// Packed ring bits.
const (
	FeatureRingPacked uint64 = 1 << 34

	DescAvail uint16 = 1 << 7  // VIRTQ_DESC_F_AVAIL
	DescUsed  uint16 = 1 << 15 // VIRTQ_DESC_F_USED

	EventEnable  uint16 = 0 // RING_EVENT_FLAGS_ENABLE
	EventDisable uint16 = 1 // RING_EVENT_FLAGS_DISABLE
	EventDesc    uint16 = 2 // RING_EVENT_FLAGS_DESC
)

// PDesc is a raw packed descriptor. Flags are written as given, except
// that Add* OR in the AVAIL/USED bits of the slot's wrap counter.
type PDesc struct {
	Addr  uint64
	Len   uint32
	ID    uint16
	Flags uint16 // DescNext, DescWrite, DescIndirect (+ AVAIL/USED raw)
}

type packedRec struct {
	live  bool
	slots uint16
	bufs  []Buf
	table uint64
	tabN  uint32
	descs []PDesc // as added, for Repost
}

// PackedDriver plays the guest driver of one packed virtqueue. Config's
// Size may be any value in [1, 32768]; Features gets FeatureRingPacked
// added. AvailAddr and UsedAddr are the driver and device event
// suppression areas.
type PackedDriver struct {
	Mem *mem.Memory
	RAM []byte
	cfg Config

	drvOffWrap, drvFlags, devOffWrap, devFlags mem.AtomicU16
	slotFlags                                  []mem.AtomicU16 // each slot's flags word
	ring                                       []byte          // the descriptor ring (nil if outside RAM)

	availPos, usedPos uint16 // slot | wrap<<15, as queue positions
	kickedAt          uint16 // availPos at the previous Kick
	freeSlots         int
	ids               []uint16 // free buffer ids
	recs              []packedRec
	heads             []pendingHead // added, flags not yet written
	data              *Driver       // data-area allocator
}

type pendingHead struct {
	slot  uint16
	flags uint16
	id    uint16
}

// NewPacked builds the fake memory and an empty packed ring.
func NewPacked(cfg Config) (*PackedDriver, error) { return newPacked(cfg, nil, nil) }

// NewPackedIn lays an empty packed ring and its data area out in ram,
// memory the caller owns (shared with a device elsewhere, as a
// vhost-user frontend's memfd): ram backs guest addresses
// [cfg.MemBase, cfg.MemBase+len(ram)) of m. The areas go at the start of
// ram unless placed; the data area runs from after them to the end of
// ram (cfg.MemSize and DataSize are ignored). The ring and data area
// must fit in ram.
func NewPackedIn(cfg Config, m *mem.Memory, ram []byte) (*PackedDriver, error) {
	if m == nil || len(ram) == 0 || cfg.MemBase == 0 {
		return nil, fmt.Errorf("queuetest: NewPackedIn needs memory, its RAM and MemBase")
	}
	return newPacked(cfg, m, ram)
}

func newPacked(cfg Config, m *mem.Memory, ram []byte) (*PackedDriver, error) {
	if cfg.Size == 0 {
		cfg.Size = 256
	}
	if cfg.Size > queue.MaxSize {
		return nil, fmt.Errorf("queuetest: packed size %d above %d", cfg.Size, queue.MaxSize)
	}
	cfg.Features |= FeatureRingPacked
	if cfg.MemBase == 0 {
		cfg.MemBase = 1 << 20
	}
	if cfg.DataSize == 0 {
		cfg.DataSize = 4 << 20
	}
	n := uint64(cfg.Size)
	if cfg.DescAddr == 0 {
		cfg.DescAddr = cfg.MemBase
	}
	if cfg.AvailAddr == 0 {
		cfg.AvailAddr = cfg.DescAddr + 16*n
	}
	if cfg.UsedAddr == 0 {
		cfg.UsedAddr = cfg.AvailAddr + 4
	}
	data := (max(cfg.DescAddr+16*n, cfg.AvailAddr+4, cfg.UsedAddr+4) + 63) &^ 63
	if m == nil {
		cfg.MemSize = data - cfg.MemBase + cfg.DataSize
		ram = make([]byte, cfg.MemSize)
		var err error
		if m, err = mem.FromRegions(mem.NewRegion(cfg.MemBase, ram)); err != nil {
			return nil, err
		}
	} else {
		cfg.MemSize = uint64(len(ram))
		if data > cfg.MemBase+cfg.MemSize || data < cfg.MemBase {
			return nil, fmt.Errorf("queuetest: packed ring of %d slots does not fit %d bytes at %#x", cfg.Size, len(ram), cfg.MemBase)
		}
		cfg.DataSize = cfg.MemBase + cfg.MemSize - data
	}
	d := &PackedDriver{Mem: m, RAM: ram, cfg: cfg, availPos: 1 << 15, usedPos: 1 << 15, kickedAt: 1 << 15}
	d.kickedAt = d.availPos
	d.drvOffWrap, _ = m.AtomicU16(cfg.AvailAddr)
	d.drvFlags, _ = m.AtomicU16(cfg.AvailAddr + 2)
	d.devOffWrap, _ = m.AtomicU16(cfg.UsedAddr)
	d.devFlags, _ = m.AtomicU16(cfg.UsedAddr + 2)
	d.slotFlags = make([]mem.AtomicU16, cfg.Size)
	for i := range d.slotFlags {
		d.slotFlags[i], _ = m.AtomicU16(cfg.DescAddr + 16*uint64(i) + 14)
	}
	d.freeSlots = int(cfg.Size)
	d.recs = make([]packedRec, cfg.Size)
	for i := int(cfg.Size) - 1; i >= 0; i-- {
		d.ids = append(d.ids, uint16(i))
	}
	d.data = newDriver(Config{Size: 1, MemBase: cfg.MemBase}, m, ram, data, cfg.MemBase+cfg.MemSize)
	d.ring = d.data.Bytes(cfg.DescAddr, 16*n)
	return d, nil
}

// MustNewPacked is NewPacked for tests.
func MustNewPacked(tb testing.TB, cfg Config) *PackedDriver {
	tb.Helper()
	d, err := NewPacked(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Config returns the configuration with the areas placed.
func (d *PackedDriver) Config() Config { return d.cfg }

// Configure programs q as a transport does (features first, then size
// and areas) and validates it.
func (d *PackedDriver) Configure(q *queue.Queue) error {
	if err := q.SetFeatures(d.cfg.Features); err != nil {
		return err
	}
	if err := q.SetSize(d.cfg.Size); err != nil {
		return err
	}
	if err := q.SetAddrs(d.cfg.DescAddr, d.cfg.AvailAddr, d.cfg.UsedAddr); err != nil {
		return err
	}
	return q.Validate(d.Mem)
}

// MustQueue returns a validated device-side queue (max size: the next
// power of two at or above Size) over this ring.
func (d *PackedDriver) MustQueue(tb testing.TB) *queue.Queue {
	tb.Helper()
	maxSize := uint16(1)
	for maxSize < d.cfg.Size {
		maxSize <<= 1
	}
	q, err := queue.New(maxSize)
	if err == nil {
		err = d.Configure(q)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

// Resume starts the driver at the given avail and used positions (slot |
// wrap<<15) instead of slot 0, wrap 1; pair it with SetNextAvail and
// SetNextUsed on the queue before Configure.
func (d *PackedDriver) Resume(avail, used uint16) {
	d.availPos, d.usedPos, d.kickedAt = avail, used, avail
}

// AvailPos and UsedPos are the driver's next avail and used positions.
func (d *PackedDriver) AvailPos() uint16 { return d.availPos }

// UsedPos is the next position Used reads.
func (d *PackedDriver) UsedPos() uint16 { return d.usedPos }

// FreeSlots is the number of ring slots not in flight.
func (d *PackedDriver) FreeSlots() int { return d.freeSlots }

func (d *PackedDriver) step(p uint16) uint16 {
	i, w := p&^(1<<15)+1, p&(1<<15)
	if i == d.cfg.Size {
		i, w = 0, w^(1<<15)
	}
	return i | w
}

func availBits(p uint16) uint16 {
	if p&(1<<15) != 0 {
		return DescAvail
	}
	return DescUsed
}

// writeDesc writes slot's addr and len, and its id and flags unless it
// is a head (whose id and flags are stored last, with release ordering,
// which publishes these plain writes too). Like Linux's
// virtqueue_add_packed, the other descriptors' flags are plain stores:
// the device reads them only after the head's acquire load, and the race
// detector reports a device read unordered with them just as it would
// with atomic stores. The ring is looked up once, at construction, as a
// driver maps it once.
func (d *PackedDriver) writeDesc(slot uint16, desc PDesc, head bool) {
	b := d.ring[16*int(slot) : 16*int(slot)+16]
	binary.LittleEndian.PutUint64(b[0:], desc.Addr)
	binary.LittleEndian.PutUint32(b[8:], desc.Len)
	if !head {
		binary.LittleEndian.PutUint16(b[12:], desc.ID)
		binary.LittleEndian.PutUint16(b[14:], desc.Flags)
	}
}

// storeIDFlags stores a slot's id and flags, which share the 32-bit word
// the device polls, in one atomic store (as a real driver's CPU could not
// be seen half-way through either: the race detector checks the device
// never reads the word unordered with these stores).
func (d *PackedDriver) storeIDFlags(slot, id, f uint16) {
	if !d.slotFlags[slot].StoreWithNeighbour(f, id) {
		binary.LittleEndian.PutUint16(d.data.Bytes(d.cfg.DescAddr+16*uint64(slot)+12, 2), id)
		d.slotFlags[slot].Store(f)
	}
}

// AddRaw writes descs into consecutive slots from the next avail
// position, each with the AVAIL/USED bits of its slot's wrap counter
// ORed into Flags (set them in Flags to override: they are XORed), and
// the head's flags last, at the next Kick. It books the buffer under id
// descs[len-1].ID for Used when that id is free. Raw: no checks.
func (d *PackedDriver) AddRaw(descs ...PDesc) {
	d.heads = append(d.heads, d.writeChain(descs))
	d.freeSlots -= len(descs)
	if len(descs) > 0 {
		id := descs[len(descs)-1].ID
		d.book(id, uint16(len(descs)), nil)
		if int(id) < len(d.recs) {
			d.recs[id].descs = append(d.recs[id].descs[:0], descs...)
		}
	}
}

// Repost writes buffer id's descriptors again, as they were last added,
// at the next avail position and makes them visible at once (head flags
// stored last), without the driver's bookkeeping: Used does not know the
// buffer. For benchmarks and allocation tests of a device that pushes
// each buffer before the next Repost; it does not allocate.
func (d *PackedDriver) Repost(id uint16) {
	if int(id) >= len(d.recs) {
		return
	}
	h := d.writeChain(d.recs[id].descs)
	d.storeIDFlags(h.slot, h.id, h.flags)
}

// writeChain writes descs into the slots from the next avail position,
// with the AVAIL/USED bits of each slot's wrap counter, all but the
// head's flags, and returns the head's slot and flags to store last.
func (d *PackedDriver) writeChain(descs []PDesc) pendingHead {
	h := pendingHead{slot: d.availPos &^ (1 << 15)}
	for i, desc := range descs {
		desc.Flags ^= availBits(d.availPos)
		if i == 0 {
			h.flags, h.id = desc.Flags, desc.ID
		}
		d.writeDesc(d.availPos&^(1<<15), desc, i == 0)
		d.availPos = d.step(d.availPos)
	}
	return h
}

// book records a buffer of slots ring slots under id, if id is free.
func (d *PackedDriver) book(id, slots uint16, bufs []Buf) {
	for i, free := range d.ids {
		if free == id {
			d.ids = append(d.ids[:i], d.ids[i+1:]...)
			d.recs[id] = packedRec{live: true, slots: slots, bufs: bufs, table: d.recs[id].table, tabN: d.recs[id].tabN}
			return
		}
	}
}

// Add makes bufs available as one direct chain and returns its id.
func (d *PackedDriver) Add(bufs ...Buf) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > d.freeSlots || len(d.ids) == 0 {
		return 0, fmt.Errorf("queuetest: %d buffers, %d free slots", len(bufs), d.freeSlots)
	}
	placed, _, err := d.data.placeBufs(bufs)
	if err != nil {
		return 0, err
	}
	id := d.ids[len(d.ids)-1]
	descs := make([]PDesc, len(placed))
	for i, b := range placed {
		descs[i] = PDesc{Addr: b.Addr, Len: b.Len, ID: id, Flags: descFor(b).Flags}
		if i+1 < len(placed) {
			descs[i].Flags |= DescNext
		}
	}
	d.AddRaw(descs...)
	d.recs[id].bufs = placed
	return id, nil
}

// AddIndirect makes bufs available through an indirect table in one
// ring slot and returns the buffer id.
func (d *PackedDriver) AddIndirect(bufs ...Buf) (uint16, error) {
	if len(bufs) == 0 || d.freeSlots == 0 || len(d.ids) == 0 {
		return 0, fmt.Errorf("queuetest: no free slot or id")
	}
	placed, _, err := d.data.placeBufs(bufs)
	if err != nil {
		return 0, err
	}
	id := d.ids[len(d.ids)-1]
	r := &d.recs[id]
	if r.table == 0 || r.tabN < uint32(len(placed)) {
		if r.table = d.data.Alloc(16 * uint64(len(placed))); r.table == 0 {
			return 0, fmt.Errorf("queuetest: data area full")
		}
		r.tabN = uint32(len(placed))
	}
	tab := make([]PDesc, len(placed))
	for i, b := range placed {
		tab[i] = PDesc{Addr: b.Addr, Len: b.Len, Flags: descFor(b).Flags}
	}
	d.WriteTable(r.table, tab...)
	d.AddRaw(PDesc{Addr: r.table, Len: uint32(16 * len(placed)), ID: id, Flags: DescIndirect})
	r.bufs = placed
	return id, nil
}

// Kick writes the pending heads' flags (release; the first one last, so
// the device sees the batch whole) and reports whether the device's
// event suppression asks for a notification: ENABLE, or DESC with its
// off_wrap passed since the previous Kick.
func (d *PackedDriver) Kick() bool {
	for i := len(d.heads) - 1; i >= 0; i-- {
		d.storeIDFlags(d.heads[i].slot, d.heads[i].id, d.heads[i].flags)
	}
	d.heads = d.heads[:0]
	old := d.kickedAt
	d.kickedAt = d.availPos
	switch d.devFlags.Load() {
	case EventDisable:
		return false
	case EventDesc:
		ev := d.devOffWrap.Load()
		return d.dist(old, ev) < d.dist(old, d.availPos)
	}
	return true
}

// dist is how many slots position b lies after position a (mod 2*size).
func (d *PackedDriver) dist(a, b uint16) int {
	lin := func(p uint16) int {
		v := int(p &^ (1 << 15))
		if p&(1<<15) != 0 {
			v += int(d.cfg.Size)
		}
		return v
	}
	span := 2 * int(d.cfg.Size)
	return ((lin(b)-lin(a))%span + span) % span
}

// Used reads the next used descriptor, if the device wrote one (AVAIL
// and USED both equal to the used wrap counter), and frees its id and
// slots.
func (d *PackedDriver) Used() (Used, bool) {
	slot := d.usedPos &^ (1 << 15)
	f := d.slotFlags[slot].Load() // acquire
	w := d.usedPos&(1<<15) != 0
	if (f&DescAvail != 0) != w || (f&DescUsed != 0) != w {
		return Used{}, false
	}
	b := d.data.Bytes(d.cfg.DescAddr+16*uint64(slot), 16)
	n := binary.LittleEndian.Uint32(b[8:])
	id := binary.LittleEndian.Uint16(b[12:])
	u := Used{ID: uint32(id), Len: n}
	slots := uint16(1)
	if int(id) < len(d.recs) && d.recs[id].live {
		r := &d.recs[id]
		r.live, slots, u.Bufs = false, r.slots, r.bufs
		d.ids = append(d.ids, id)
	}
	for range slots {
		d.usedPos = d.step(d.usedPos)
	}
	d.freeSlots += int(slots)
	return u, true
}

// AllUsed reads every used descriptor written so far.
func (d *PackedDriver) AllUsed() []Used { return drain(d.Used) }

// Written is what the device wrote into u's writable buffers.
func (d *PackedDriver) Written(u Used) []byte { return d.data.Written(u) }

// SetDriverEvent writes the driver event suppression area (off_wrap
// first, then flags).
func (d *PackedDriver) SetDriverEvent(flags, offWrap uint16) {
	d.drvOffWrap.Store(offWrap)
	d.drvFlags.Store(flags)
}

// EnableInterrupts asks for an interrupt at the next used descriptor
// (DESC at the next used position with event index, else ENABLE) and
// reports whether used descriptors are already waiting.
func (d *PackedDriver) EnableInterrupts() bool {
	if d.cfg.Features&FeatureEventIdx != 0 {
		d.SetDriverEvent(EventDesc, d.usedPos)
	} else {
		d.SetDriverEvent(EventEnable, 0)
	}
	_, ok := d.peekUsed()
	return ok
}

func (d *PackedDriver) peekUsed() (uint16, bool) {
	f := d.slotFlags[d.usedPos&^(1<<15)].Load()
	w := d.usedPos&(1<<15) != 0
	return f, (f&DescAvail != 0) == w && (f&DescUsed != 0) == w
}

// DisableInterrupts sets the driver's flags to DISABLE.
func (d *PackedDriver) DisableInterrupts() { d.SetDriverEvent(EventDisable, 0) }

// DeviceEvent reads the device event suppression area.
func (d *PackedDriver) DeviceEvent() (flags, offWrap uint16) {
	return d.devFlags.Load(), d.devOffWrap.Load()
}

// Alloc reserves n bytes in the data area (for raw buffers and tables).
func (d *PackedDriver) Alloc(n uint64) uint64 { return d.data.Alloc(n) }

// WriteTable writes descs as an indirect table at addr, in the packed
// layout (addr, len, id, flags), flags as given.
func (d *PackedDriver) WriteTable(addr uint64, descs ...PDesc) {
	for i, desc := range descs {
		b := d.data.Bytes(addr+16*uint64(i), 16)
		if b == nil {
			return
		}
		binary.LittleEndian.PutUint64(b[0:], desc.Addr)
		binary.LittleEndian.PutUint32(b[8:], desc.Len)
		binary.LittleEndian.PutUint16(b[12:], desc.ID)
		binary.LittleEndian.PutUint16(b[14:], desc.Flags)
	}
}

// Bytes returns the fake RAM at [addr, addr+n), or nil.
func (d *PackedDriver) Bytes(addr, n uint64) []byte { return d.data.Bytes(addr, n) }
