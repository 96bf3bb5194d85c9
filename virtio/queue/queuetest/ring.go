package queuetest

// The driver's ring operations: adding chains, kicking, reading used
// elements, raw descriptor and index writes, notification fields.

import (
	"encoding/binary"
	"fmt"
)

func (d *Driver) placeBufs(bufs []Buf) ([]Buf, []bool, error) {
	out := make([]Buf, len(bufs))
	owned := make([]bool, len(bufs))
	for i, b := range bufs {
		if b.Len == 0 {
			b.Len = uint32(len(b.Data))
		}
		if b.Addr == 0 && b.Len > 0 {
			if b.Addr = d.Alloc(uint64(b.Len)); b.Addr == 0 {
				for j := range i {
					if owned[j] {
						d.release(out[j].Addr, uint64(out[j].Len))
					}
				}
				return nil, nil, fmt.Errorf("queuetest: data area full")
			}
			owned[i] = true
		}
		if len(b.Data) > 0 {
			data := b.Data[:min(len(b.Data), int(b.Len))]
			dst := d.Bytes(b.Addr, uint64(len(data)))
			if dst == nil {
				return nil, nil, fmt.Errorf("queuetest: buffer at %#x is outside the fake RAM", b.Addr)
			}
			copy(dst, data)
		}
		out[i] = b
	}
	return out, owned, nil
}

func descFor(b Buf) Desc {
	var f uint16
	if b.Write {
		f = DescWrite
	}
	return Desc{Addr: b.Addr, Len: b.Len, Flags: f}
}

// Add makes bufs available as one direct chain (one descriptor per
// buffer) and returns its head. The entry becomes visible to the device
// at the next Kick.
func (d *Driver) Add(bufs ...Buf) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > len(d.free) {
		return 0, fmt.Errorf("queuetest: %d buffers, %d free descriptors", len(bufs), len(d.free))
	}
	placed, owned, err := d.placeBufs(bufs)
	if err != nil {
		return 0, err
	}
	idx := d.free[len(d.free)-len(bufs):]
	descs := make([]uint16, len(bufs))
	for i := range bufs {
		descs[i] = idx[len(idx)-1-i]
	}
	d.free = d.free[:len(d.free)-len(bufs)]
	for i, b := range placed {
		desc := descFor(b)
		if i+1 < len(placed) {
			desc.Flags |= DescNext
			desc.Next = descs[i+1]
		}
		d.SetDesc(descs[i], desc)
	}
	head := descs[0]
	r := &d.chains[head]
	*r = chainRec{live: true, descs: descs, bufs: placed, owned: owned, table: r.table, tabCap: r.tabCap}
	d.AddHead(head)
	return head, nil
}

// AddIndirect makes bufs available as one chain through an indirect table
// (one descriptor-table entry pointing at a table of len(bufs) entries)
// and returns its head. Like Linux, it caches each head's table and
// reuses it when the head is reused with no more buffers.
func (d *Driver) AddIndirect(bufs ...Buf) (uint16, error) {
	if len(bufs) == 0 || len(d.free) == 0 {
		return 0, fmt.Errorf("queuetest: %d buffers, %d free descriptors", len(bufs), len(d.free))
	}
	head := d.free[len(d.free)-1]
	r := &d.chains[head]
	if r.table == 0 || r.tabCap < uint32(len(bufs)) {
		t := d.Alloc(16 * uint64(len(bufs)))
		if t == 0 {
			return 0, fmt.Errorf("queuetest: data area full")
		}
		if r.table != 0 {
			d.release(r.table, 16*uint64(r.tabCap))
		}
		r.table, r.tabCap = t, uint32(len(bufs))
	}
	placed, owned, err := d.placeBufs(bufs)
	if err != nil {
		return 0, err
	}
	d.free = d.free[:len(d.free)-1]
	descs := make([]Desc, len(placed))
	for i, b := range placed {
		descs[i] = descFor(b)
		if i+1 < len(placed) {
			descs[i].Flags |= DescNext
			descs[i].Next = uint16(i + 1)
		}
	}
	d.WriteDescs(r.table, descs...)
	d.SetDesc(head, Desc{Addr: r.table, Len: uint32(16 * len(placed)), Flags: DescIndirect})
	*r = chainRec{live: true, descs: []uint16{head}, bufs: placed, owned: owned, table: r.table, tabCap: r.tabCap}
	d.AddHead(head)
	return head, nil
}

// AddHead writes head into the next available ring slot without touching
// descriptors (raw: for malformed rings, or to re-post a chain whose
// descriptors are unchanged). Visible at the next Kick.
func (d *Driver) AddHead(head uint16) {
	slot := d.cfg.AvailAddr + 4 + 2*uint64(d.nextAvail&(d.cfg.Size-1))
	_ = d.Mem.WriteU16(slot, head)
	d.nextAvail++
}

// Kick publishes avail.idx (release) and reports whether a real driver
// would notify the device now: with event index when avail.idx moved past
// avail_event since the previous Kick, otherwise when the device has not
// set VIRTQ_USED_F_NO_NOTIFY.
func (d *Driver) Kick() bool {
	d.availIdx.Store(d.nextAvail)
	old := d.kickedAt
	d.kickedAt = d.nextAvail
	if d.cfg.Features&FeatureEventIdx != 0 {
		ev := d.availEvent.Load()
		return d.nextAvail-ev-1 < d.nextAvail-old
	}
	return d.usedFlags.Load()&1 == 0
}

// SetAvailIdx stores avail.idx directly (raw: to make the device see a
// jump), and makes it the driver's shadow too.
func (d *Driver) SetAvailIdx(v uint16) {
	d.nextAvail = v
	d.availIdx.Store(v)
}

// Resume starts the driver at avail ring index avail and used ring index
// used instead of 0 and writes both into the rings, as after a migration
// or a vhost-user reconnect. Pair it with queue.SetNextAvail and
// SetNextUsed before Configure; tests use it to exercise index wraparound.
func (d *Driver) Resume(avail, used uint16) {
	d.nextAvail, d.kickedAt, d.lastUsed = avail, avail, used
	d.availIdx.Store(avail)
	d.usedIdx.Store(used)
}

// AvailIdx is the driver's avail.idx (entries added, published or not).
func (d *Driver) AvailIdx() uint16 { return d.nextAvail }

// UsedIdx reads used.idx as the device published it (acquire).
func (d *Driver) UsedIdx() uint16 { return d.usedIdx.Load() }

// PendingUsed is how many used elements the device published that Used
// has not read yet.
func (d *Driver) PendingUsed() int { return int(d.usedIdx.Load() - d.lastUsed) }

// Used reads the next used element, if the device published one, and
// frees the chain's descriptors and driver-allocated buffers for reuse
// (their contents stay readable through Used.Bufs until reused).
func (d *Driver) Used() (Used, bool) {
	if d.usedIdx.Load() == d.lastUsed { // acquire: the element is visible
		return Used{}, false
	}
	e := d.cfg.UsedAddr + 4 + 8*uint64(d.lastUsed&(d.cfg.Size-1))
	id, _ := d.Mem.ReadU32(e)
	n, _ := d.Mem.ReadU32(e + 4)
	d.lastUsed++
	u := Used{ID: id, Len: n}
	if id < uint32(d.cfg.Size) && d.chains[id].live {
		r := &d.chains[id]
		r.live = false
		u.Bufs = r.bufs
		for i, b := range r.bufs {
			if r.owned[i] {
				d.release(b.Addr, uint64(b.Len))
			}
		}
		for i := len(r.descs) - 1; i >= 0; i-- {
			d.free = append(d.free, r.descs[i])
		}
	}
	return u, true
}

// AllUsed reads every published used element.
func (d *Driver) AllUsed() []Used { return drain(d.Used) }

// drain calls next until it reports nothing more and returns what it gave.
func drain(next func() (Used, bool)) []Used {
	var out []Used
	for {
		u, ok := next()
		if !ok {
			return out
		}
		out = append(out, u)
	}
}

// Written returns the first u.Len bytes of u's writable buffers joined:
// what the device wrote.
func (d *Driver) Written(u Used) []byte {
	var out []byte
	left := u.Len
	for _, b := range u.Bufs {
		if !b.Write || left == 0 {
			continue
		}
		n := min(left, b.Len)
		out = append(out, d.Bytes(b.Addr, uint64(n))...)
		left -= n
	}
	return out
}

// SetDesc writes descriptor-table entry i raw.
func (d *Driver) SetDesc(i uint16, desc Desc) {
	d.WriteDescs(d.cfg.DescAddr+16*uint64(i), desc)
}

// WriteDescs writes descs as consecutive raw descriptors at addr (an
// indirect table, or part of the descriptor table).
func (d *Driver) WriteDescs(addr uint64, descs ...Desc) {
	for i, desc := range descs {
		b := d.Bytes(addr+16*uint64(i), 16)
		if b == nil {
			return
		}
		binary.LittleEndian.PutUint64(b[0:], desc.Addr)
		binary.LittleEndian.PutUint32(b[8:], desc.Len)
		binary.LittleEndian.PutUint16(b[12:], desc.Flags)
		binary.LittleEndian.PutUint16(b[14:], desc.Next)
	}
}

// SetUsedEvent writes used_event (event index: "interrupt me when used.idx
// passes v").
func (d *Driver) SetUsedEvent(v uint16) { d.usedEvent.Store(v) }

// SetNoInterrupt sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT.
func (d *Driver) SetNoInterrupt(on bool) {
	if on {
		d.availFlagV |= 1
	} else {
		d.availFlagV &^= 1
	}
	d.availFlags.Store(d.availFlagV)
}

// EnableInterrupts asks the device for a used-buffer notification when
// it publishes the next used element (used_event = next index to read, or
// clearing VIRTQ_AVAIL_F_NO_INTERRUPT), then re-checks used.idx: it
// returns true if used elements are already pending, which the driver
// must read instead of waiting for an interrupt that may never come.
func (d *Driver) EnableInterrupts() bool {
	if d.cfg.Features&FeatureEventIdx != 0 {
		d.usedEvent.Store(d.lastUsed)
	} else {
		d.SetNoInterrupt(false)
	}
	return d.usedIdx.Load() != d.lastUsed
}

// DisableInterrupts asks the device not to interrupt: it sets
// VIRTQ_AVAIL_F_NO_INTERRUPT, or with event index leaves used_event where
// it is (so it falls behind).
func (d *Driver) DisableInterrupts() {
	if d.cfg.Features&FeatureEventIdx == 0 {
		d.SetNoInterrupt(true)
	}
}

// AvailEvent reads avail_event, written by the device.
func (d *Driver) AvailEvent() uint16 { return d.availEvent.Load() }

// NoNotify reports whether the device set VIRTQ_USED_F_NO_NOTIFY.
func (d *Driver) NoNotify() bool { return d.usedFlags.Load()&1 != 0 }
