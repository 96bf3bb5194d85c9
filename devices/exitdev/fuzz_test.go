package exitdev

import (
	"encoding/binary"
	"testing"
)

// FuzzDevice drives the device with arbitrary accesses: each op is a
// control byte (bit 7 read/write, bits 0-2 offset, bits 3-6 width 0-15)
// followed by up to 4 data bytes. It checks that nothing panics, that the
// first valid report never changes, and that every write is counted once.
func FuzzDevice(f *testing.F) {
	word := func(w uint32) []byte { return binary.LittleEndian.AppendUint32(nil, w) }
	f.Add(append([]byte{0x00 | 4<<3}, word(Exited(7))...))
	f.Add(append(append([]byte{0x80 | 4<<3, 0, 0, 0, 0, 0x00 | 4<<3}, word(Signaled(9, true))...), append([]byte{4 << 3}, word(Exited(1))...)...))
	f.Add([]byte{0x01 | 2<<3, 1, 2, 0x00 | 1<<3, 0xff, 0x86 | 15<<3})
	f.Add(append([]byte{0x04 | 1<<3, 1, 0x04 | 1<<3, 6, 0x04 | 1<<3, 7, 0x00 | 4<<3}, word(Exited(0))...))
	f.Fuzz(func(t *testing.T, ops []byte) {
		var calls int
		d := New(func(Report) { calls++ })
		var first *Report
		var writes uint64
		for i := 0; i < len(ops); {
			c := ops[i]
			i++
			off, n := uint64(c&7), int(c>>3&15)
			data := make([]byte, n)
			i += copy(data, ops[min(i, len(ops)):])
			if c&0x80 != 0 {
				d.Read(off, data)
				if off == 0 && n >= 4 && binary.LittleEndian.Uint32(data) != Magic {
					t.Fatalf("magic reads %x", data)
				}
				continue
			}
			d.Write(off, data)
			writes++
			if r, ok := d.Report(); ok {
				if first == nil {
					first = &r
				} else if r != *first {
					t.Fatalf("report changed from %+v to %+v", *first, r)
				}
			}
		}
		if first != nil && calls != 1 || first == nil && calls != 0 {
			t.Fatalf("callback ran %d times, report %v", calls, first)
		}
		recorded := uint64(0)
		if first != nil {
			recorded = 1
		}
		if got := recorded + d.Ignored() + d.Rejected() + d.Progressed(); got != writes {
			t.Fatalf("%d writes, counted %d", writes, got)
		}
	})
}
