package queue_test

import (
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// FuzzPackedRing interprets the input as driver and device operations on
// a packed ring of any size from 1 to 16, including raw descriptors with
// fuzzed flags, ids and addresses, raw corruption of the ring and event
// areas, and Undo. The device side must never panic, never hand out
// memory outside the fake RAM or walk past its TTL, keep its positions
// inside the ring, and a broken queue stays broken until reset.
func FuzzPackedRing(f *testing.F) {
	f.Add([]byte{0x03, 0, 1, 2, 5, 0, 6, 8})                          // add, kick, pop, publish, read
	f.Add([]byte{0x14, 0, 7, 1, 3, 2, 5, 0, 5, 1, 10, 2, 5, 0, 6, 8}) // indirect, undo
	f.Add([]byte{0x05, 3, 0x11, 0x22, 0x05, 0x00, 0x10, 2, 5, 0, 6})  // raw chain
	f.Add([]byte{0x2a, 4, 0x00, 0x00, 0xff, 2, 5, 0, 4, 0x01, 0x03, 2, 5, 1})
	f.Add([]byte{0x3f, 9, 2, 0x05, 0x80, 0, 3, 2, 5, 0, 6, 7, 1, 11, 0, 2, 5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		feat := uint64(data[0]&3) << 28 // INDIRECT_DESC, EVENT_IDX
		size := uint16(data[0]>>2)%16 + 1
		d, err := qt.NewPacked(qt.Config{Size: size, Features: feat, DataSize: 1 << 14})
		if err != nil {
			t.Fatal(err)
		}
		q := d.MustQueue(t)
		cfg := d.Config()
		ringLo, ringLen := cfg.DescAddr, cfg.UsedAddr+4-cfg.DescAddr
		var ch queue.Chain
		arg := argReader(data)
		for i := 1; i < len(data); i++ {
			switch op := data[i] % 12; op {
			case 0, 1: // a well-formed buffer of 1..4 descriptors
				addOp(op, arg(&i), d.Add, d.AddIndirect)
			case 2:
				d.Kick()
			case 3: // raw descriptors: count, then per descriptor flags, id, address choice
				n := int(arg(&i))%4 + 1
				descs := make([]qt.PDesc, n)
				for j := range descs {
					fl, id, ad := arg(&i), arg(&i), arg(&i)
					addr := cfg.DescAddr + uint64(ad)*16 // ring, event areas, data, or past RAM
					if ad&1 != 0 {
						addr = uint64(ad) << 12
					}
					descs[j] = qt.PDesc{Addr: addr, Len: uint32(ad) * 3, ID: uint16(id) % (size + 2),
						Flags: uint16(fl&7) | uint16(fl&0x80)<<8 | uint16(fl&0x40)<<1}
				}
				d.AddRaw(descs...)
			case 4: // corrupt a byte of the ring or the event areas
				off := uint64(arg(&i)) | uint64(arg(&i))<<8
				if b := d.Bytes(ringLo+off%ringLen, 1); b != nil {
					b[0] = arg(&i)
				}
			case 5, 7:
				deviceOp(t, q, &ch, op, arg(&i), size, d.RAM)
			case 6:
				deviceOp(t, q, &ch, op, 0, size, d.RAM)
			case 8:
				d.AllUsed()
			case 9:
				d.SetDriverEvent(uint16(arg(&i)&3), uint16(arg(&i))|uint16(arg(&i))<<8)
			case 10:
				deviceOp(t, q, &ch, op, arg(&i), size, d.RAM)
			case 11:
				q.Reset()
				if q.Broken() || q.Ready() {
					t.Fatalf("reset: broken %v ready %v", q.Broken(), q.Ready())
				}
				if err := d.Configure(q); err != nil {
					t.Fatal(err)
				}
				// The driver double does not reset with it: the positions
				// now disagree, which the device must survive too.
			}
			if q.NextAvail()&0x7fff >= size || q.NextUsed()&0x7fff >= size {
				t.Fatalf("positions %#x/%#x outside a ring of %d", q.NextAvail(), q.NextUsed(), size)
			}
			if q.Broken() {
				if ok, err := q.Pop(&ch); ok || err != queue.ErrBroken {
					t.Fatalf("broken queue popped: %v %v", ok, err)
				}
			}
			q.Available()
		}
	})
}
