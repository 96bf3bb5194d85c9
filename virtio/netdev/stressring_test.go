package netdev

// The guest driver's half of a virtqueue as Linux 6.1's
// drivers/virtio/virtio_ring.c runs it, for the stress test
// (stress_test.go): the packed ring here, the split ring in
// stresssplit_test.go, behind one interface,
// with the same notification suppression steps, in the same order, as
// virtqueue_add_*, virtqueue_kick_prepare_*, virtqueue_get_buf_ctx_*,
// virtqueue_disable_cb_*, virtqueue_enable_cb_prepare_*,
// virtqueue_poll_* and virtqueue_enable_cb_delayed_*. Written from the
// virtio 1.2 spec (§2.7, §2.8) and the behaviour of those functions, not
// copied. Shared words go through mem.AtomicU16 (sequentially
// consistent: Linux's virtio_mb/wmb/rmb and store_mb are at least as
// strong); descriptors, ring entries and buffers are plain writes
// ordered by them.

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/flintvm/flint/mem"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// guestMem is the stress test's guest RAM: one region, a bump allocator.
type guestMem struct {
	m    *mem.Memory
	ram  []byte
	base uint64
	next uint64
}

func newGuestMem(size uint64) *guestMem {
	g := &guestMem{ram: make([]byte, size), base: 1 << 20}
	g.next = g.base
	m, err := mem.FromRegions(mem.NewRegion(g.base, g.ram))
	if err != nil {
		panic(err)
	}
	g.m = m
	return g
}

// alloc returns n bytes aligned to 64.
func (g *guestMem) alloc(n uint64) uint64 {
	a := (g.next + 63) &^ 63
	if a+n > g.base+uint64(len(g.ram)) {
		panic("stress: guest memory full")
	}
	g.next = a + n
	return a
}

func (g *guestMem) bytes(addr, n uint64) []byte { return g.ram[addr-g.base : addr-g.base+n] }

func (g *guestMem) word(addr uint64) mem.AtomicU16 {
	w, err := g.m.AtomicU16(addr)
	if err != nil {
		panic(err)
	}
	return w
}

// seg is one scatter-gather element the driver posts.
type seg struct {
	addr uint64
	len  uint32
}

// vring is one ring format's driver operations; vq serialises them.
type vring interface {
	// add posts one buffer of len(lens) elements (device-writable if
	// write), carved from the buffer area of the id it gets; fill writes
	// the data before the buffer is made available. false: no room
	// (-ENOSPC).
	add(lens []uint32, write bool, token int, fill func([]seg)) bool
	kickPrepare() bool
	moreUsed() bool
	getBuf() (token int, n uint32, ok bool)
	disableCB()
	enableCBPrepare() uint16
	poll(opaque uint16) bool
	enableCBDelayed() bool
	numFree() int
	size() uint16
	// areas are the descriptor, driver and device areas for the queue.
	areas() (desc, driver, device uint64)
	dump() string
}

// ringCfg is what both formats need.
type ringCfg struct {
	num      uint16
	event    bool   // VIRTIO_RING_F_EVENT_IDX
	indirect bool   // VIRTIO_RING_F_INDIRECT_DESC
	stride   uint64 // buffer area per id
	maxSG    int
}

// bufAreas allocates one buffer area and one indirect table per id.
func bufAreas(g *guestMem, c ringCfg) (bufs, tables uint64) {
	return g.alloc(uint64(c.num) * c.stride), g.alloc(uint64(c.num) * 16 * uint64(c.maxSG))
}

// carve lays lens out in id's buffer area, 16 bytes apart (so a device
// reading past an element reads the wrong bytes).
func carve(base, stride uint64, id uint16, lens []uint32) []seg {
	a := base + uint64(id)*stride
	out := make([]seg, len(lens))
	for i, n := range lens {
		out[i] = seg{a, n}
		a += (uint64(n) + 16 + 15) &^ 15
	}
	if a > base+uint64(id+1)*stride {
		panic("stress: buffer larger than its area")
	}
	return out
}

func needEventU16(event, cur, old uint16) bool { return cur-event-1 < cur-old }

// vq is a virtqueue as virtio_ring.c's generic layer sees it: one
// operation at a time (Linux's callers serialise them; an interrupt's
// disable_cb may race start_xmit there, here it takes turns) and the
// event_triggered hint.
type vq struct {
	mu             sync.Mutex
	r              vring
	event          bool
	eventTriggered bool
	kick           func()
	kicks          uint64
	irqs, spurious uint64
}

func (v *vq) add(lens []uint32, write bool, token int, fill func([]seg)) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.r.add(lens, write, token, fill)
}

// kickPrepareNotify is virtqueue_kick_prepare + virtqueue_notify.
func (v *vq) kickPrepareNotify() {
	v.mu.Lock()
	k := v.r.kickPrepare()
	if k {
		v.kicks++
	}
	v.mu.Unlock()
	if k {
		v.kick()
	}
}

func (v *vq) getBuf() (int, uint32, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.r.getBuf()
}

// disableCB is virtqueue_disable_cb: nothing after an interrupt with
// event index (the device will not interrupt again anyway).
func (v *vq) disableCB() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.eventTriggered {
		return
	}
	v.r.disableCB()
}

func (v *vq) enableCBPrepare() uint16 {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.eventTriggered = false
	return v.r.enableCBPrepare()
}

func (v *vq) enableCBDelayed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.eventTriggered = false
	return v.r.enableCBDelayed()
}

func (v *vq) poll(opaque uint16) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.r.poll(opaque)
}

func (v *vq) numFree() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.r.numFree()
}

// interrupt is vring_interrupt: no used buffer, IRQ_NONE; else note
// event_triggered and run the callback.
func (v *vq) interrupt(callback func()) {
	v.mu.Lock()
	v.irqs++
	more := v.r.moreUsed()
	if !more {
		v.spurious++
	} else if v.event {
		v.eventTriggered = true
	}
	v.mu.Unlock()
	if more {
		callback()
	}
}

func (v *vq) dump() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fmt.Sprintf("%s event_triggered=%v kicks=%d irqs=%d (no work %d)", v.r.dump(), v.eventTriggered, v.kicks, v.irqs, v.spurious)
}

// Packed ring (virtio 1.2 §2.8; Linux's *_packed functions).

const (
	pAvail = qt.DescAvail
	pUsed  = qt.DescUsed
	pNext  = qt.DescNext
	pWrite = qt.DescWrite
	pIndir = qt.DescIndirect

	evEnable  = qt.EventEnable
	evDisable = qt.EventDisable
	evDesc    = qt.EventDesc
)

type pstate struct {
	num   uint16
	token int
	last  uint16
}

type packedRing struct {
	g                                          *guestMem
	c                                          ringCfg
	bufs, tables                               uint64
	desc                                       uint64
	drvArea, devArea                           uint64
	slotFlags                                  []mem.AtomicU16
	drvOffWrap, drvFlags, devOffWrap, devFlags mem.AtomicU16

	nextAvail      uint16
	availWrap      uint16 // 0 or 1
	availUsedFlags uint16
	lastUsed       uint16 // slot | wrap<<15
	freeHead       uint16
	next           []uint16
	state          []pstate
	free           int
	numAdded       uint16
	shadow         uint16 // event_flags_shadow
}

func newPackedRing(g *guestMem, c ringCfg) *packedRing {
	r := &packedRing{g: g, c: c}
	r.desc = g.alloc(16 * uint64(c.num))
	r.drvArea, r.devArea = g.alloc(4), g.alloc(4)
	r.bufs, r.tables = bufAreas(g, c)
	r.slotFlags = make([]mem.AtomicU16, c.num)
	for i := range r.slotFlags {
		r.slotFlags[i] = g.word(r.desc + 16*uint64(i) + 14)
	}
	r.drvOffWrap, r.drvFlags = g.word(r.drvArea), g.word(r.drvArea+2)
	r.devOffWrap, r.devFlags = g.word(r.devArea), g.word(r.devArea+2)
	r.availWrap, r.availUsedFlags, r.lastUsed = 1, pAvail, 1<<15
	r.next, r.state = make([]uint16, c.num), make([]pstate, c.num)
	for i := range r.next {
		r.next[i] = uint16(i + 1)
		r.state[i].token = -1
	}
	r.free = int(c.num)
	r.shadow = evEnable // virtio-net has callbacks on both queues
	r.drvFlags.Store(evEnable)
	return r
}

func (r *packedRing) size() uint16 { return r.c.num }
func (r *packedRing) numFree() int { return r.free }
func (r *packedRing) areas() (uint64, uint64, uint64) {
	return r.desc, r.drvArea, r.devArea
}

// writeDesc writes slot i's address and length, and its id and flags
// unless it is the head (stored last by the caller).
func (r *packedRing) writeDesc(i uint16, s seg, id, flags uint16, head bool) {
	b := r.g.bytes(r.desc+16*uint64(i), 12)
	binary.LittleEndian.PutUint64(b[0:], s.addr)
	binary.LittleEndian.PutUint32(b[8:], s.len)
	if !head {
		r.storeIDFlags(i, id, flags)
	}
}

func (r *packedRing) storeIDFlags(i, id, flags uint16) {
	if !r.slotFlags[i].StoreWithNeighbour(flags, id) {
		panic("stress: descriptor flags not atomically addressable")
	}
}

func (r *packedRing) add(lens []uint32, write bool, token int, fill func([]seg)) bool {
	n := len(lens)
	if r.c.indirect && n > 1 && r.free > 0 {
		return r.addIndirect(lens, write, token, fill)
	}
	if r.free < n {
		return false
	}
	head, id := r.nextAvail, r.freeHead
	segs := carve(r.bufs, r.c.stride, id, lens)
	fill(segs)
	var wflag, headFlags uint16
	if write {
		wflag = pWrite
	}
	i, curr, prev := head, id, id
	for k, s := range segs {
		f := r.availUsedFlags | wflag
		if k+1 < n {
			f |= pNext
		}
		if i == head {
			headFlags = f
		}
		r.writeDesc(i, s, id, f, i == head)
		prev, curr = curr, r.next[curr]
		if i++; i >= r.c.num {
			i = 0
			r.availUsedFlags ^= pAvail | pUsed
		}
	}
	if i <= head {
		r.availWrap ^= 1
	}
	r.free -= n
	r.nextAvail, r.freeHead = i, curr
	r.state[id] = pstate{num: uint16(n), token: token, last: prev}
	r.storeIDFlags(head, id, headFlags) // after wmb: the whole chain is visible
	r.numAdded += uint16(n)
	return true
}

func (r *packedRing) addIndirect(lens []uint32, write bool, token int, fill func([]seg)) bool {
	head, id := r.nextAvail, r.freeHead
	segs := carve(r.bufs, r.c.stride, id, lens)
	fill(segs)
	table := r.tables + uint64(id)*16*uint64(r.c.maxSG)
	for k, s := range segs {
		b := r.g.bytes(table+16*uint64(k), 16)
		binary.LittleEndian.PutUint64(b[0:], s.addr)
		binary.LittleEndian.PutUint32(b[8:], s.len)
		binary.LittleEndian.PutUint16(b[12:], 0)
		var f uint16
		if write {
			f = pWrite
		}
		binary.LittleEndian.PutUint16(b[14:], f)
	}
	r.writeDesc(head, seg{table, uint32(16 * len(segs))}, id, 0, true)
	r.storeIDFlags(head, id, pIndir|r.availUsedFlags)
	r.free--
	n := head + 1
	if n >= r.c.num {
		n = 0
		r.availWrap ^= 1
		r.availUsedFlags ^= pAvail | pUsed
	}
	r.nextAvail, r.freeHead = n, r.next[id]
	r.state[id] = pstate{num: 1, token: token, last: id}
	r.numAdded++
	return true
}

// kickPrepare reads the device area as Linux does, in one snapshot:
// off_wrap, flags, off_wrap again until both off_wrap reads agree (the
// device's off_wrap only moves forward, so the pair then held together
// when the flags were read).
func (r *packedRing) kickPrepare() bool {
	old, cur := r.nextAvail-r.numAdded, r.nextAvail
	r.numAdded = 0
	var flags, offWrap uint16
	for {
		offWrap = r.devOffWrap.Load()
		flags = r.devFlags.Load()
		if r.devOffWrap.Load() == offWrap {
			break
		}
	}
	if flags != evDesc {
		return flags != evDisable
	}
	ev := offWrap &^ (1 << 15)
	if offWrap>>15 != r.availWrap {
		ev -= r.c.num
	}
	return needEventU16(ev, cur, old)
}

func (r *packedRing) isUsed(pos uint16) bool {
	f := r.slotFlags[pos&^(1<<15)].Load()
	w := pos>>15 != 0
	return (f&pAvail != 0) == (f&pUsed != 0) && (f&pUsed != 0) == w
}

func (r *packedRing) moreUsed() bool { return r.isUsed(r.lastUsed) }

func (r *packedRing) getBuf() (int, uint32, bool) {
	if !r.moreUsed() {
		return 0, 0, false
	}
	slot, wrap := r.lastUsed&^(1<<15), r.lastUsed>>15
	b := r.g.bytes(r.desc+16*uint64(slot), 16)
	n := binary.LittleEndian.Uint32(b[8:])
	id := binary.LittleEndian.Uint16(b[12:])
	if id >= r.c.num || r.state[id].token < 0 {
		panic(fmt.Sprintf("stress: BAD_RING: used id %d at slot %d is not in flight (%s)", id, slot, r.dump()))
	}
	st := &r.state[id]
	token := st.token
	st.token = -1
	r.next[st.last] = r.freeHead
	r.freeHead = id
	r.free += int(st.num)
	if slot += st.num; slot >= r.c.num {
		slot -= r.c.num
		wrap ^= 1
	}
	r.lastUsed = slot | wrap<<15
	if r.shadow == evDesc {
		r.drvOffWrap.Store(r.lastUsed)
	}
	return token, n, true
}

func (r *packedRing) disableCB() {
	if r.shadow != evDisable {
		r.shadow = evDisable
		r.drvFlags.Store(evDisable)
	}
}

func (r *packedRing) enableOn() uint16 {
	if r.c.event {
		return evDesc
	}
	return evEnable
}

func (r *packedRing) enableCBPrepare() uint16 {
	if r.c.event {
		r.drvOffWrap.Store(r.lastUsed)
	}
	if r.shadow == evDisable {
		r.shadow = r.enableOn()
		r.drvFlags.Store(r.shadow)
	}
	return r.lastUsed
}

func (r *packedRing) poll(opaque uint16) bool { return r.isUsed(opaque) }

func (r *packedRing) enableCBDelayed() bool {
	if r.c.event {
		bufs := (r.c.num - uint16(r.free)) * 3 / 4
		slot, wrap := r.lastUsed&^(1<<15)+bufs, r.lastUsed>>15
		if slot >= r.c.num {
			slot -= r.c.num
			wrap ^= 1
		}
		r.drvOffWrap.Store(slot | wrap<<15)
	}
	if r.shadow == evDisable {
		r.shadow = r.enableOn()
		r.drvFlags.Store(r.shadow)
	}
	return !r.isUsed(r.lastUsed)
}

func (r *packedRing) dump() string {
	na := r.nextAvail | r.availWrap<<15
	lu := r.lastUsed &^ (1 << 15)
	return fmt.Sprintf("packed num=%d next_avail=%#x (slot %d wrap %d) last_used=%#x (slot %d wrap %d) num_free=%d shadow=%d "+
		"driver_area{off_wrap=%#x flags=%d} device_area{off_wrap=%#x flags=%d} flags[next_avail]=%#x flags[last_used]=%#x",
		r.c.num, na, r.nextAvail, r.availWrap, r.lastUsed, lu, r.lastUsed>>15, r.free, r.shadow,
		r.drvOffWrap.Load(), r.drvFlags.Load(), r.devOffWrap.Load(), r.devFlags.Load(),
		r.slotFlags[r.nextAvail].Load(), r.slotFlags[lu].Load())
}
