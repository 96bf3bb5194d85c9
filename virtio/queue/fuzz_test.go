package queue_test

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// Fuzzed-memory layout for FuzzDescriptorChain: two adjacent regions A
// and B (so buffers may span them), a third region C after a gap, and the
// rings in B. Every byte of A and B, including the descriptor table and
// the available ring, comes from the fuzzer.
const (
	fzA     = 0x0
	fzB     = 0x400
	fzEnd   = 0x800
	fzC     = 0x10000
	fzCSize = 0x100
	fzDesc  = 0x400 // at B's start: exercises the region-boundary lookup
	fzAvail = 0x600
	fzUsed  = 0x680
	fzTable = 0x100 // where the seeds put indirect tables
)

// inside reports whether s lies wholly inside one of the backing slices.
func inside(s []byte, backs ...[]byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	for _, b := range backs {
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if p >= lo && p-lo <= uintptr(len(b)) && uintptr(len(s)) <= uintptr(len(b))-(p-lo) {
			return true
		}
	}
	return false
}

// checkChain asserts the walker's invariants on a chain Pop accepted.
func checkChain(t *testing.T, c *queue.Chain, size uint16, maxSegs int, backs ...[]byte) {
	t.Helper()
	var r, w uint64
	for _, s := range c.Readable {
		if len(s) == 0 || !inside(s, backs...) {
			t.Fatalf("readable segment outside guest memory (len %d)", len(s))
		}
		r += uint64(len(s))
	}
	for _, s := range c.Writable {
		if len(s) == 0 || !inside(s, backs...) {
			t.Fatalf("writable segment outside guest memory (len %d)", len(s))
		}
		w += uint64(len(s))
	}
	if r != uint64(c.ReadLen) || w != uint64(c.WriteLen) || r+w >= 1<<32 {
		t.Fatalf("lengths: segments %d/%d, chain %d/%d", r, w, c.ReadLen, c.WriteLen)
	}
	if len(c.Readable)+len(c.Writable) > maxSegs {
		t.Fatalf("%d segments > limit %d", len(c.Readable)+len(c.Writable), maxSegs)
	}
	ttl := int(size)
	if c.Indirect {
		ttl += 1 << 16
	}
	if c.Descs() > ttl {
		t.Fatalf("walked %d descriptors, TTL %d", c.Descs(), ttl)
	}
	if c.Head >= size {
		t.Fatalf("accepted head %d >= size %d", c.Head, size)
	}
}

func fzSeedChain(size uint16, descs []qt.Desc, heads []uint16, table []qt.Desc) []byte {
	ram := make([]byte, fzEnd)
	put := func(at uint64, ds []qt.Desc) {
		for i, d := range ds {
			b := ram[at+16*uint64(i):]
			binary.LittleEndian.PutUint64(b, d.Addr)
			binary.LittleEndian.PutUint32(b[8:], d.Len)
			binary.LittleEndian.PutUint16(b[12:], d.Flags)
			binary.LittleEndian.PutUint16(b[14:], d.Next)
		}
	}
	put(fzDesc, descs)
	put(fzTable, table)
	binary.LittleEndian.PutUint16(ram[fzAvail+2:], uint16(len(heads)))
	for i, h := range heads {
		binary.LittleEndian.PutUint16(ram[fzAvail+4+2*i:], h)
	}
	var sz byte
	for s := size; s > 1; s >>= 1 {
		sz++
	}
	return append([]byte{sz, 1}, ram...)
}

// FuzzDescriptorChain fuzzes the descriptor table, the available ring and
// the memory indirect tables live in. The walker must never panic, never
// return a segment outside guest memory, never walk more descriptors than
// its TTL, and stop at a broken avail index.
func FuzzDescriptorChain(f *testing.F) {
	w := qt.DescWrite
	n := qt.DescNext
	f.Add(fzSeedChain(4, []qt.Desc{{Addr: 0x200, Len: 12, Flags: n, Next: 1}, {Addr: 0x3f0, Len: 0x20, Flags: w}}, []uint16{0}, nil))
	f.Add(fzSeedChain(8, []qt.Desc{{Addr: fzTable, Len: 48, Flags: qt.DescIndirect}}, []uint16{0, 0},
		[]qt.Desc{{Addr: 0x200, Len: 10, Flags: n, Next: 1}, {Addr: fzC, Len: 100, Flags: n | w, Next: 2}, {Addr: 0x300, Len: 5, Flags: w}}))
	f.Add(fzSeedChain(2, []qt.Desc{{Addr: 0x10, Len: 1, Flags: n, Next: 1}, {Addr: 0x10, Len: 1, Flags: n, Next: 0}}, []uint16{1, 0, 1}, nil))
	f.Add(fzSeedChain(16, []qt.Desc{{Addr: fzTable, Len: 32, Flags: qt.DescIndirect}}, []uint16{0},
		[]qt.Desc{{Addr: fzTable, Len: 32, Flags: qt.DescIndirect}}))
	f.Add(fzSeedChain(32, []qt.Desc{{Addr: 0x3fc, Len: 8, Flags: n, Next: 31}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {},
		{Addr: fzTable, Len: 64, Flags: qt.DescIndirect}}, []uint16{0, 31},
		[]qt.Desc{{Addr: fzUsed, Len: 8, Flags: n, Next: 3}, {}, {}, {Addr: fzC + 0xf0, Len: 0x20, Flags: w}}))
	f.Add([]byte{5, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		size := uint16(1) << (data[0] % 6) // 1..32
		ctl := data[1]
		ab := make([]byte, fzEnd)
		copy(ab, data[2:])
		c := make([]byte, fzCSize)
		if len(data) > 2+fzEnd {
			copy(c, data[2+fzEnd:])
		}
		m, err := mem.FromRegions(mem.NewRegion(fzA, ab[:fzB]), mem.NewRegion(fzB, ab[fzB:]), mem.NewRegion(fzC, c))
		if err != nil {
			t.Fatal(err)
		}
		q, _ := queue.New(32)
		q.SetSize(size)
		q.SetAddrs(fzDesc, fzAvail, fzUsed)
		var feat uint64
		if ctl&1 != 0 {
			feat |= qt.FeatureIndirectDesc
		}
		if ctl&2 != 0 {
			feat |= qt.FeatureEventIdx
		}
		q.SetFeatures(feat)
		maxSegs := queue.DefaultMaxSegments
		if ctl&4 != 0 {
			maxSegs = int(ctl>>3) + 1
			q.SetMaxSegments(maxSegs)
		}
		if err := q.Validate(m); err != nil {
			t.Fatal(err)
		}
		var ch queue.Chain
		popped := 0
		for i := 0; i < 2*int(size)+2; i++ {
			cp := &ch
			var ok bool
			if ctl&0x80 != 0 {
				cp, err = q.PopCached()
				ok = cp != nil
			} else {
				ok, err = q.Pop(cp)
			}
			if errors.Is(err, queue.ErrBroken) {
				if _, err := q.Pop(&ch); err != queue.ErrBroken {
					t.Fatalf("broken queue popped again: %v", err)
				}
				break
			}
			if err != nil && !errors.Is(err, queue.ErrMalformedChain) {
				t.Fatalf("unexpected error %v", err)
			}
			if !ok && err == nil {
				break
			}
			popped++
			if ok {
				checkChain(t, cp, size, maxSegs, ab[:fzB], ab[fzB:], c)
				q.Push(cp.Head, cp.WriteLen)
			}
			q.Publish()
			q.NeedsInterrupt()
		}
		if popped > int(size) {
			t.Fatalf("popped %d entries from a ring of %d", popped, size)
		}
		q.EnableNotifications()
		q.DisableNotifications()
	})
}

// argReader returns the operation-program fuzzers' argument reader: the
// byte after *i (advancing it), 0 past the end.
func argReader(data []byte) func(i *int) byte {
	return func(i *int) byte {
		*i++
		if *i < len(data) {
			return data[*i]
		}
		return 0
	}
}

// addOp is ops 0 (direct) and 1 (indirect) of FuzzQueue and
// FuzzPackedRing: the driver adds a chain of 1..4 buffers, readable ones
// first, their number and lengths derived from a.
func addOp(op, a byte, add, addIndirect func(...qt.Buf) (uint16, error)) {
	k := int(a&3) + 1
	nr := int(a>>2) % (k + 1)
	bufs := make([]qt.Buf, k)
	for j := range bufs {
		bufs[j] = qt.Buf{Len: uint32(a)*7 + 1, Write: j >= nr}
	}
	if op == 0 {
		add(bufs...)
	} else {
		addIndirect(bufs...)
	}
}

// deviceOp runs a device-side operation of FuzzQueue and FuzzPackedRing:
// 5 pop (PopCached if a is odd), check the chain and push it; 6 publish
// and decide on the interrupt; 7 enable (a odd) or disable notifications;
// 10 undo a%4 chains.
func deviceOp(t *testing.T, q *queue.Queue, ch *queue.Chain, op, a byte, size uint16, ram []byte) {
	t.Helper()
	switch op {
	case 5:
		var ok bool
		var err error
		cp := ch
		if a&1 != 0 {
			cp, err = q.PopCached()
			ok = cp != nil
		} else {
			ok, err = q.Pop(cp)
		}
		if err != nil && !errors.Is(err, queue.ErrMalformedChain) && err != queue.ErrBroken {
			t.Fatalf("Pop: %v", err)
		}
		if (err == queue.ErrBroken) != q.Broken() {
			t.Fatalf("broken=%v err=%v", q.Broken(), err)
		}
		if ok {
			checkChain(t, cp, size, queue.DefaultMaxSegments, ram)
			cp.WriteAt([]byte("written"), 0)
			q.Push(cp.Head, cp.WriteLen)
		}
	case 6:
		q.Publish()
		q.NeedsInterrupt()
	case 7:
		if a&1 != 0 {
			q.EnableNotifications()
		} else {
			q.DisableNotifications()
		}
	case 10:
		q.Undo(int(a % 4))
	}
}

// FuzzQueue interprets the input as a sequence of driver and device
// operations, including raw corruption of the rings, and checks that the
// device side never panics, never hands out memory outside the fake RAM,
// and that a broken queue stays broken until reset.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{0x03, 0, 1, 0, 2, 2, 5, 5, 6, 8})
	f.Add([]byte{0x01, 1, 3, 2, 5, 6, 7, 0, 8, 9, 3, 10})
	f.Add([]byte{0x02, 0, 0, 0, 1, 2, 4, 0x40, 0, 5, 6, 11, 0, 2, 5})
	f.Add([]byte{0x03, 3, 0x10, 0x07, 0x41, 2, 5, 5, 5, 6, 8, 9, 1, 2, 7, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		feat := uint64(data[0]&3) << 28 // INDIRECT_DESC, EVENT_IDX
		size := uint16(8) << (data[0] >> 2 & 1)
		d, err := qt.New(qt.Config{Size: size, Features: feat, DataSize: 1 << 15})
		if err != nil {
			t.Fatal(err)
		}
		q := d.MustQueue(t)
		cfg := d.Config()
		ringLo := cfg.DescAddr
		ringLen := cfg.UsedAddr + queue.UsedRingBytes(size) - ringLo
		var ch queue.Chain
		arg := argReader(data)
		for i := 1; i < len(data); i++ {
			op := data[i] % 12
			switch op {
			case 0, 1: // driver adds a chain of 1..4 buffers, readable first
				addOp(op, arg(&i), d.Add, d.AddIndirect)
			case 2:
				d.Kick()
			case 3: // corrupt a ring byte
				off := uint64(arg(&i)) | uint64(arg(&i))<<8
				if b := d.Bytes(ringLo+off%ringLen, 1); b != nil {
					b[0] = arg(&i)
				}
			case 4:
				d.SetAvailIdx(d.AvailIdx() + uint16(int8(arg(&i))))
			case 5, 7:
				deviceOp(t, q, &ch, op, arg(&i), size, d.RAM)
			case 6:
				deviceOp(t, q, &ch, op, 0, size, d.RAM)
			case 8:
				d.AllUsed()
			case 9:
				v := arg(&i)
				d.SetUsedEvent(uint16(v) | uint16(arg(&i))<<8)
				d.SetNoInterrupt(v&1 != 0)
			case 10:
				deviceOp(t, q, &ch, op, arg(&i), size, d.RAM)
			case 11:
				wasBroken := q.Broken()
				q.Reset()
				if q.Broken() || q.Ready() {
					t.Fatalf("reset: broken %v (was %v) ready %v", q.Broken(), wasBroken, q.Ready())
				}
				if err := d.Configure(q); err != nil {
					t.Fatal(err)
				}
			}
			if q.Broken() {
				if ok, err := q.Pop(&ch); ok || err != queue.ErrBroken {
					t.Fatalf("broken queue popped: %v %v", ok, err)
				}
			}
		}
	})
}
