package queue_test

// A model of Linux 6.1's packed-ring driver (drivers/virtio/virtio_ring.c,
// the *_packed functions, and the parts of drivers/net/virtio_net.c that
// drive them), run against the device's Queue with the engine's order of
// calls, at random interleavings, on one goroutine. It looks for lost
// wake-ups: a kick the driver holds back that the device waits for, or an
// interrupt the device holds back that the driver waits for. Written from
// the kernel's behaviour (facts only), not its code.
//
// What the model keeps of the driver (6.1):
//   - last_used_idx holds the used wrap counter in bit 15
//     (VRING_PACKED_EVENT_F_WRAP_CTR); off_wrap is written in that encoding.
//   - kick_prepare: full barrier, then old = next_avail_idx - num_added and
//     new = next_avail_idx (16-bit, slot numbers without the wrap bit), a
//     32-bit snapshot of the device area, DESC compared with
//     vring_need_event after taking num off an event of the other lap.
//   - get_buf: reads the descriptor at last_used, advances it by the
//     buffer's descriptor count (1 for indirect), and with DESC in its
//     shadow writes off_wrap = last_used_idx with a full barrier.
//   - disable_cb writes DISABLE only if no interrupt came since the last
//     enable (event_triggered); enable_cb_prepare writes off_wrap =
//     last_used_idx and DESC if its shadow was DISABLE; virtqueue_poll
//     checks the descriptor at the returned position; enable_cb_delayed
//     puts off_wrap 3/4 of the descriptors in flight ahead.
//   - vring_interrupt ignores an interrupt when no used descriptor is
//     visible at last_used (IRQ_NONE), else sets event_triggered.
//   - RX small mode: one 1-descriptor buffer per packet, no indirect (the
//     queue has a context), refill when more than min(budget, num)/2 are
//     free, NAPI budget 64, virtqueue_napi_complete.
//   - TX with napi_tx: start_xmit's disable_cb / free / enable_cb_delayed
//     loop when it kicks, indirect tables for multi-segment packets, queue
//     stop below 2+MAX_SKB_FRAGS free descriptors with enable_cb_delayed
//     (and NAPI if it fails): the stable fix "virtio-net: correctly enable
//     callback during start_xmit" (6.1.9; without it 6.1 itself hangs
//     TX, device or not), TX NAPI and the RX NAPI's clean of the TX queue.

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

const (
	l61Avail    = qt.DescAvail
	l61Used     = qt.DescUsed
	l61Next     = qt.DescNext
	l61Write    = qt.DescWrite
	l61Indirect = qt.DescIndirect
	l61Enable   = qt.EventEnable
	l61Disable  = qt.EventDisable
	l61Desc     = qt.EventDesc
	l61WrapBit  = 15
	l61MaxTab   = 19 // 2 + MAX_SKB_FRAGS
)

// l61Ring is the driver side of one packed ring in a fake guest memory.
type l61Ring struct {
	ram                       []byte
	base                      uint64
	num                       uint16
	descAddr, drvAddr, devAdr uint64
	tabBase, bufBase          uint64

	nextAvail      uint16
	availWrap      bool
	availUsedFlags uint16
	numAdded       uint16
	freeHead       uint16
	next           []uint16 // desc_extra[].next
	stNum, stLast  []uint16
	live           []bool
	numFree        int
	lastUsedIdx    uint16 // bit 15: used wrap counter
	shadow         uint16 // event_flags_shadow
	eventTriggered bool
}

func newL61(t testing.TB, num uint16) (*l61Ring, *queue.Queue, *mem.Memory) {
	t.Helper()
	n := uint64(num)
	r := &l61Ring{num: num, base: 1 << 20}
	r.descAddr = r.base
	r.drvAddr = r.base + 16*n
	r.devAdr = r.drvAddr + 64
	r.tabBase = (r.devAdr + 64 + 63) &^ 63
	r.bufBase = r.tabBase + n*16*l61MaxTab
	r.ram = make([]byte, r.bufBase+n*2048-r.base)
	m, err := mem.FromRegions(mem.NewRegion(r.base, r.ram))
	if err != nil {
		t.Fatal(err)
	}
	r.availWrap, r.availUsedFlags = true, l61Avail
	r.lastUsedIdx = 1 << l61WrapBit
	r.next = make([]uint16, num)
	for i := range r.next {
		r.next[i] = uint16(i + 1)
	}
	r.stNum, r.stLast, r.live = make([]uint16, num), make([]uint16, num), make([]bool, num)
	r.numFree = int(num)
	q, err := queue.New(nextPow2(num))
	if err != nil {
		t.Fatal(err)
	}
	const features = 1<<34 | 1<<29 | 1<<28 // RING_PACKED, EVENT_IDX, INDIRECT_DESC
	if err := q.SetFeatures(features); err != nil {
		t.Fatal(err)
	}
	if err := q.SetSize(num); err != nil {
		t.Fatal(err)
	}
	if err := q.SetAddrs(r.descAddr, r.drvAddr, r.devAdr); err != nil {
		t.Fatal(err)
	}
	if err := q.Validate(m); err != nil {
		t.Fatal(err)
	}
	return r, q, m
}

func nextPow2(n uint16) uint16 {
	p := uint16(1)
	for p < n {
		p <<= 1
	}
	return p
}

func (r *l61Ring) u16(a uint64) uint16      { return binary.LittleEndian.Uint16(r.ram[a-r.base:]) }
func (r *l61Ring) put16(a uint64, v uint16) { binary.LittleEndian.PutUint16(r.ram[a-r.base:], v) }
func (r *l61Ring) put32(a uint64, v uint32) { binary.LittleEndian.PutUint32(r.ram[a-r.base:], v) }
func (r *l61Ring) put64(a uint64, v uint64) { binary.LittleEndian.PutUint64(r.ram[a-r.base:], v) }
func (r *l61Ring) desc(i uint16) uint64     { return r.descAddr + 16*uint64(i) }

// writeDesc writes slot i's addr, len and id, and its flags unless it is
// the head (written last, by the caller).
func (r *l61Ring) writeDesc(i uint16, addr uint64, n uint32, id, flags uint16, head bool) {
	d := r.desc(i)
	if !head {
		r.put16(d+14, flags)
	}
	r.put64(d, addr)
	r.put32(d+8, n)
	r.put16(d+12, id)
}

func (r *l61Ring) step() {
	if r.nextAvail++; r.nextAvail >= r.num {
		r.nextAvail = 0
		r.availWrap = !r.availWrap
		r.availUsedFlags ^= l61Avail | l61Used
	}
}

// addDirect makes a chain of segs descriptors available (virtqueue_add_packed).
func (r *l61Ring) addDirect(segs int, write bool) bool {
	if r.numFree < segs {
		return false
	}
	id, head := r.freeHead, r.nextAvail
	headFlags := uint16(0)
	curr, prev := id, id
	for k := range segs {
		f := r.availUsedFlags
		if k+1 < segs {
			f |= l61Next
		}
		if write {
			f |= l61Write
		}
		if r.nextAvail == head && k == 0 {
			headFlags = f
		}
		r.writeDesc(r.nextAvail, r.bufBase+uint64(id)*2048, 1536/uint32(segs), id, f, k == 0)
		prev, curr = curr, r.next[curr]
		r.step()
	}
	r.put16(r.desc(head)+14, headFlags) // after a write barrier
	r.numFree -= segs
	r.freeHead = curr
	r.stNum[id], r.stLast[id], r.live[id] = uint16(segs), prev, true
	r.numAdded += uint16(segs)
	return true
}

// addIndirect makes a k-entry indirect table available in one slot.
func (r *l61Ring) addIndirect(k int) bool {
	if r.numFree < 1 {
		return false
	}
	id, head := r.freeHead, r.nextAvail
	tab := r.tabBase + uint64(id)*16*l61MaxTab
	for e := range k {
		d := tab + 16*uint64(e)
		r.put64(d, r.bufBase+uint64(id)*2048+uint64(e)*64)
		r.put32(d+8, 64)
		r.put16(d+12, 0)
		r.put16(d+14, 0)
	}
	r.writeDesc(head, tab, uint32(16*k), id, 0, true)
	r.put16(r.desc(head)+14, l61Indirect|r.availUsedFlags)
	r.numFree--
	r.step()
	r.freeHead = r.next[id]
	r.stNum[id], r.stLast[id], r.live[id] = 1, id, true
	r.numAdded++
	return true
}

// kickPrepare is virtqueue_kick_prepare_packed.
func (r *l61Ring) kickPrepare() bool {
	old := r.nextAvail - r.numAdded
	nw := r.nextAvail
	r.numAdded = 0
	offWrap, flags := r.u16(r.devAdr), r.u16(r.devAdr+2)
	if flags != l61Desc {
		return flags != l61Disable
	}
	ev := offWrap &^ (1 << l61WrapBit)
	if (offWrap>>l61WrapBit != 0) != r.availWrap {
		ev -= r.num
	}
	return nw-ev-1 < nw-old // vring_need_event
}

func (r *l61Ring) isUsed(idx uint16, wrap bool) bool {
	f := r.u16(r.desc(idx) + 14)
	a, u := f&l61Avail != 0, f&l61Used != 0
	return a == u && u == wrap
}

func (r *l61Ring) moreUsed() bool {
	return r.isUsed(r.lastUsedIdx&^(1<<l61WrapBit), r.lastUsedIdx>>l61WrapBit != 0)
}

// getBuf is virtqueue_get_buf_ctx_packed; it returns the id, or false.
func (r *l61Ring) getBuf(t testing.TB) (uint16, bool) {
	if !r.moreUsed() {
		return 0, false
	}
	last, wrap := r.lastUsedIdx&^(1<<l61WrapBit), r.lastUsedIdx>>l61WrapBit != 0
	id := r.u16(r.desc(last) + 12)
	if id >= r.num || !r.live[id] {
		t.Fatalf("BAD_RING: used id %d at slot %d is not a head", id, last)
	}
	r.live[id] = false
	r.next[r.stLast[id]] = r.freeHead
	r.freeHead = id
	r.numFree += int(r.stNum[id])
	if last += r.stNum[id]; last >= r.num {
		last -= r.num
		wrap = !wrap
	}
	r.lastUsedIdx = last
	if wrap {
		r.lastUsedIdx |= 1 << l61WrapBit
	}
	if r.shadow == l61Desc {
		r.put16(r.drvAddr, r.lastUsedIdx)
	}
	return id, true
}

func (r *l61Ring) disableCb() {
	if r.eventTriggered {
		return
	}
	if r.shadow != l61Disable {
		r.shadow = l61Disable
		r.put16(r.drvAddr+2, r.shadow)
	}
}

func (r *l61Ring) enableFlags() {
	if r.shadow == l61Disable {
		r.shadow = l61Desc
		r.put16(r.drvAddr+2, r.shadow)
	}
}

// enableCbPrepare returns the opaque position virtqueue_poll checks.
func (r *l61Ring) enableCbPrepare() uint16 {
	r.eventTriggered = false
	r.put16(r.drvAddr, r.lastUsedIdx)
	r.enableFlags()
	return r.lastUsedIdx
}

func (r *l61Ring) poll(opaque uint16) bool {
	return r.isUsed(opaque&^(1<<l61WrapBit), opaque>>l61WrapBit != 0)
}

// enableCbDelayed returns false when more buffers were used meanwhile.
func (r *l61Ring) enableCbDelayed() bool {
	r.eventTriggered = false
	bufs := uint16((int(r.num) - r.numFree) * 3 / 4)
	wrap := r.lastUsedIdx >> l61WrapBit
	used := r.lastUsedIdx&^(1<<l61WrapBit) + bufs
	if used >= r.num {
		used -= r.num
		wrap ^= 1
	}
	r.put16(r.drvAddr, used|wrap<<l61WrapBit)
	r.enableFlags()
	return !r.moreUsed()
}

// interrupt is vring_interrupt: false for IRQ_NONE.
func (r *l61Ring) interrupt() bool {
	if !r.moreUsed() {
		return false
	}
	r.eventTriggered = true
	return true
}

// napi is the part of a NAPI instance's state the model needs.
type napi struct {
	sched, missed bool
	checking      bool   // virtqueue_napi_complete's poll is still to run
	opaque        uint16 // its position
}

// schedule is virtqueue_napi_schedule (napi_schedule_prep and
// disable_cb).
func (n *napi) schedule(r *l61Ring) {
	if n.sched {
		n.missed = true
		return
	}
	n.sched = true
	r.disableCb()
}

// complete is the first half of virtqueue_napi_complete: enable_cb_prepare
// and napi_complete_done; the poll is a later step.
func (n *napi) complete(r *l61Ring) {
	opaque := r.enableCbPrepare()
	if n.missed {
		n.missed = false
		r.disableCb()
		return
	}
	n.sched, n.checking, n.opaque = false, true, opaque
}

func (n *napi) check(r *l61Ring) {
	n.checking = false
	if r.poll(n.opaque) {
		n.schedule(r)
	}
}

// devState is where the device's engine (virtio/loop.go with the
// handler's order of calls) stands.
type devState int

const (
	devRun       devState = iota // in Step, pumping
	devWaitEnter                 // Enable found nothing; RawConn.Read's first callback to come
	devWaitKick                  // parked on the kick file
	devParkTap                   // RX: parked in ReadvOrPark
)

type l61Dev struct {
	q          *queue.Queue
	st         devState
	disable    bool            // the next pump starts a Step (DisableNotifications)
	done       int             // completions not yet published
	ops        []func() string // the device's next steps, in order
	held       int             // RX: the held chain's id, -1 none
	irq        bool            // interrupt raised, handler not run
	kick       bool            // kick edge while parked
	interrupts int
	kicks      int
	noRecheck  bool // a faulty device: ignores EnableNotifications' re-check
}

// flush queues Engine.Flush as two steps: Publish (the used
// descriptors' release store), then NeedsInterrupt (the load of the
// driver's area), so that driver steps can run between them.
func (d *l61Dev) flush() {
	d.done = 0
	published := false
	d.ops = append(d.ops, func() string {
		published = d.q.Publish()
		return "dev publish"
	}, func() string {
		if published && d.q.NeedsInterrupt() {
			d.irq = true
			d.interrupts++
			return "dev interrupt"
		}
		return "dev no interrupt"
	})
}

// then queues op after the queued steps.
func (d *l61Dev) then(op func() string) { d.ops = append(d.ops, op) }

// empty is Run's answer to an empty ring: flush (Step's end), then
// EnableNotifications and its re-check.
func (d *l61Dev) empty() {
	d.flush()
	d.then(func() string {
		if d.q.EnableNotifications() && !d.noRecheck {
			d.disable = true
			return "dev enable: work"
		}
		d.st = devWaitEnter
		return "dev enable: none"
	})
}

// wait steps a waiting device; it reports whether it could.
func (d *l61Dev) wait() bool {
	switch d.st {
	case devWaitEnter: // RawConn.Read forgot older edges; ready() is the ring check
		if d.q.EnableNotifications() && !d.noRecheck {
			d.st, d.disable = devRun, true
		} else {
			d.st = devWaitKick
		}
		return true
	case devWaitKick:
		if d.kick {
			d.kick = false
			d.st, d.disable = devRun, true
			return true
		}
	}
	return false
}

// actions adds the device's steps that do not depend on the queue's
// handler to dev: the next queued step, else a waiting device's.
func (d *l61Dev) actions(dev []func() string) []func() string {
	switch {
	case len(d.ops) > 0:
		return append(dev, func() string {
			op := d.ops[0]
			d.ops = d.ops[1:]
			return op()
		})
	case d.st == devWaitEnter || (d.st == devWaitKick && d.kick):
		return append(dev, func() string { d.wait(); return "dev wait" })
	}
	return dev
}

// running adds the device's steps to dev, and when it runs its next
// pump step: the Step's DisableNotifications first, then body.
func (d *l61Dev) running(dev []func() string, body func() string) []func() string {
	if dev = d.actions(dev); len(d.ops) > 0 || d.st != devRun {
		return dev
	}
	return append(dev, func() string {
		if d.disable {
			d.q.DisableNotifications()
			d.disable = false
			return "dev disable"
		}
		return body()
	})
}

// pop is the pump's PopCached; on an empty ring it queues Run's answer
// (empty) and returns nil.
func (d *l61Dev) pop(t testing.TB) *queue.Chain {
	c, err := d.q.PopCached()
	if err != nil {
		t.Fatalf("pop: %v", err)
	}
	if c == nil {
		d.empty()
	}
	return c
}

func (d *l61Dev) notify() {
	d.kicks++
	if d.st == devWaitKick {
		d.kick = true
	}
}

func (d *l61Dev) String() string {
	av, us := d.q.NextAvail(), d.q.NextUsed()
	return fmt.Sprintf("device state %d held %d irq %v next avail %#x next used %#x (%d interrupts, %d kicks)",
		d.st, d.held, d.irq, av, us, d.interrupts, d.kicks)
}

func (r *l61Ring) String() string {
	return fmt.Sprintf("driver next avail %d wrap %v, last used %#x, free %d, shadow %d, event_triggered %v, drv area %#x/%d, dev area %#x/%d",
		r.nextAvail, r.availWrap, r.lastUsedIdx, r.numFree, r.shadow, r.eventTriggered,
		r.u16(r.drvAddr), r.u16(r.drvAddr+2), r.u16(r.devAdr), r.u16(r.devAdr+2))
}
