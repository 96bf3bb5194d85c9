package netdev

// The stress test's split ring (virtio 1.2 §2.7) as Linux 6.1's *_split
// functions in virtio_ring.c drive it; see stressring_test.go.

import (
	"encoding/binary"
	"fmt"

	"github.com/flintvm/flint/mem"
)

type splitRing struct {
	g                     *guestMem
	c                     ringCfg
	bufs, tables          uint64
	desc, avail, used     uint64
	availFlags, availIdx  mem.AtomicU16
	usedEvent, usedFlags  mem.AtomicU16
	usedIdx, availEvent   mem.AtomicU16
	availShadow, lastUsed uint16
	flagsShadow           uint16
	numAdded              uint16
	freeHead              uint16
	next                  []uint16
	state                 []pstate // num: descriptors, last: last descriptor
	free                  int
}

func newSplitRing(g *guestMem, c ringCfg) *splitRing {
	r := &splitRing{g: g, c: c}
	n := uint64(c.num)
	r.desc, r.avail, r.used = g.alloc(16*n), g.alloc(6+2*n), g.alloc(6+8*n)
	r.bufs, r.tables = bufAreas(g, c)
	r.availFlags, r.availIdx, r.usedEvent = g.word(r.avail), g.word(r.avail+2), g.word(r.avail+4+2*n)
	r.usedFlags, r.usedIdx, r.availEvent = g.word(r.used), g.word(r.used+2), g.word(r.used+4+8*n)
	r.next, r.state = make([]uint16, c.num), make([]pstate, c.num)
	for i := range r.next {
		r.next[i] = uint16(i + 1)
		r.state[i].token = -1
	}
	r.free = int(c.num)
	return r
}

func (r *splitRing) size() uint16 { return r.c.num }
func (r *splitRing) numFree() int { return r.free }
func (r *splitRing) areas() (uint64, uint64, uint64) {
	return r.desc, r.avail, r.used
}

func (r *splitRing) putDesc(addr uint64, i uint16, s seg, flags, next uint16) {
	b := r.g.bytes(addr+16*uint64(i), 16)
	binary.LittleEndian.PutUint64(b[0:], s.addr)
	binary.LittleEndian.PutUint32(b[8:], s.len)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (r *splitRing) add(lens []uint32, write bool, token int, fill func([]seg)) bool {
	n := len(lens)
	var wflag uint16
	if write {
		wflag = pWrite
	}
	head := r.freeHead
	if r.c.indirect && n > 1 && r.free > 0 {
		segs := carve(r.bufs, r.c.stride, head, lens)
		fill(segs)
		table := r.tables + uint64(head)*16*uint64(r.c.maxSG)
		for k, s := range segs {
			f := wflag
			if k+1 < n {
				f |= pNext
			}
			r.putDesc(table, uint16(k), s, f, uint16(k+1))
		}
		r.putDesc(r.desc, head, seg{table, uint32(16 * n)}, pIndir, 0)
		r.free--
		r.freeHead = r.next[head]
		r.state[head] = pstate{num: 1, token: token, last: head}
	} else {
		if r.free < n {
			return false
		}
		segs := carve(r.bufs, r.c.stride, head, lens)
		fill(segs)
		i, prev := head, head
		for k, s := range segs {
			f := wflag
			if k+1 < n {
				f |= pNext
			}
			r.putDesc(r.desc, i, s, f, r.next[i])
			prev, i = i, r.next[i]
		}
		r.free -= n
		r.freeHead = i
		r.state[head] = pstate{num: uint16(n), token: token, last: prev}
	}
	slot := r.avail + 4 + 2*uint64(r.availShadow&(r.c.num-1))
	binary.LittleEndian.PutUint16(r.g.bytes(slot, 2), head)
	r.availShadow++
	r.availIdx.Store(r.availShadow) // after wmb
	r.numAdded++
	return true
}

func (r *splitRing) kickPrepare() bool {
	old, cur := r.availShadow-r.numAdded, r.availShadow
	r.numAdded = 0
	if r.c.event {
		return needEventU16(r.availEvent.Load(), cur, old)
	}
	return r.usedFlags.Load()&1 == 0
}

func (r *splitRing) moreUsed() bool { return r.lastUsed != r.usedIdx.Load() }

func (r *splitRing) getBuf() (int, uint32, bool) {
	if !r.moreUsed() {
		return 0, 0, false
	}
	e := r.g.bytes(r.used+4+8*uint64(r.lastUsed&(r.c.num-1)), 8)
	id, n := binary.LittleEndian.Uint32(e[0:]), binary.LittleEndian.Uint32(e[4:])
	if id >= uint32(r.c.num) || r.state[id].token < 0 {
		panic(fmt.Sprintf("stress: BAD_RING: used id %d is not in flight (%s)", id, r.dump()))
	}
	st := &r.state[id]
	token := st.token
	st.token = -1
	r.next[st.last] = r.freeHead
	r.freeHead = uint16(id)
	r.free += int(st.num)
	r.lastUsed++
	if r.flagsShadow&1 == 0 {
		r.usedEvent.Store(r.lastUsed)
	}
	return token, n, true
}

func (r *splitRing) disableCB() {
	if r.flagsShadow&1 == 0 {
		r.flagsShadow |= 1
		if r.c.event {
			r.usedEvent.Store(0) // Linux's "hack": any value far from last_used
		} else {
			r.availFlags.Store(r.flagsShadow)
		}
	}
}

func (r *splitRing) enableFlags() {
	if r.flagsShadow&1 != 0 {
		r.flagsShadow &^= 1
		if !r.c.event {
			r.availFlags.Store(r.flagsShadow)
		}
	}
}

func (r *splitRing) enableCBPrepare() uint16 {
	r.enableFlags()
	r.usedEvent.Store(r.lastUsed)
	return r.lastUsed
}

func (r *splitRing) poll(opaque uint16) bool { return opaque != r.usedIdx.Load() }

func (r *splitRing) enableCBDelayed() bool {
	r.enableFlags()
	bufs := (r.availShadow - r.lastUsed) * 3 / 4
	r.usedEvent.Store(r.lastUsed + bufs)
	return r.usedIdx.Load()-r.lastUsed <= bufs
}

func (r *splitRing) dump() string {
	return fmt.Sprintf("split num=%d avail_idx=%d last_used=%d num_free=%d avail_flags=%d used_event=%d used_idx=%d used_flags=%d avail_event=%d",
		r.c.num, r.availShadow, r.lastUsed, r.free, r.availFlags.Load(), r.usedEvent.Load(),
		r.usedIdx.Load(), r.usedFlags.Load(), r.availEvent.Load())
}
