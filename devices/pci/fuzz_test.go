package pci

import (
	"encoding/binary"
	"testing"
)

// fuzzRig is a bus with the host bridge and one device with every BAR kind
// and two capabilities, plus a model of the windows the BAR callbacks
// report.
type fuzzRig struct {
	t      *testing.T
	bus    *Bus
	dev    *ConfigSpace
	msix   int
	vendor int
	mapped [NumBARs]BARState // as last reported by the callback
	resets int
}

func newFuzzRig(t *testing.T) *fuzzRig {
	r := &fuzzRig{t: t}
	r.bus = NewBus(BusConfig{OnReset: func() { r.resets++ }})
	r.dev = NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1041, Class: 0x020000, InterruptPin: 1})
	for i, b := range map[int]BAR{
		0: {Kind: BARMem32, Size: 0x1000, Addr: 0xc000_0000},
		1: {Kind: BARIO, Size: 0x20, Addr: 0x6000},
		2: {Kind: BARMem64, Size: 0x4000, Addr: 0x1_0000_0000, Prefetchable: true},
		4: {Kind: BARMem64, Size: 1 << 33, Addr: 0x2_0000_0000},
	} {
		if err := r.dev.SetBAR(i, b); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if r.vendor, err = r.dev.AddCapability(CapVendorSpecific, []byte{16, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.SetWritable(r.vendor+4, []byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if r.msix, err = r.dev.AddCapability(CapMSIX, []byte{0x03, 0x00, 0x01, 0, 0, 0, 0x01, 0x08, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.SetWritable(r.msix+2, []byte{0x00, 0xc0}); err != nil {
		t.Fatal(err)
	}
	for i := range r.mapped {
		r.mapped[i], _ = r.dev.BAR(i)
	}
	r.dev.SetBARChangeFunc(func(i int, old, new BARState) {
		if old != r.mapped[i] && (old.Enabled || r.mapped[i].Enabled) {
			t.Fatalf("BAR%d callback old %+v, model had %+v", i, old, r.mapped[i])
		}
		if !moved(old, new) {
			t.Fatalf("BAR%d callback without a move: %+v -> %+v", i, old, new)
		}
		r.mapped[i] = new
	})
	if err := r.bus.Attach(1, 0, r.dev); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *fuzzRig) check() {
	t := r.t
	host := r.bus.HostBridge()
	if host.Uint32(0) != 0x0d57_8086 || host.Uint32(8)>>8 != HostBridgeClass || host.Uint8(RegHeaderType) != 0 {
		t.Fatal("host bridge identity changed")
	}
	d := r.dev
	if d.Uint32(0) != 0x1041_1af4 || d.Uint32(8) != 0x0200_0000 || d.Uint8(RegInterruptPin) != 1 {
		t.Fatal("device identity changed")
	}
	if off, ok := d.FindCapability(CapMSIX); !ok || off != r.msix || d.Uint16(r.msix+2)&0x3fff != 0x0003 {
		t.Fatal("MSI-X capability damaged")
	}
	if off, ok := d.FindCapability(CapVendorSpecific); !ok || off != r.vendor || d.Uint8(r.vendor+1) != byte(r.msix) {
		t.Fatal("capability chain damaged")
	}
	if d.Uint16(RegStatus)&StatusCapList == 0 || d.Uint32(RegExpansionROM) != 0 {
		t.Fatal("read-only header bits changed")
	}
	for i := 0; i < NumBARs; i++ {
		s, ok := d.BAR(i)
		if !ok {
			continue
		}
		if s.Addr&(s.Size-1) != 0 {
			t.Fatalf("BAR%d address %#x not aligned to %#x", i, s.Addr, s.Size)
		}
		low := d.Uint32(RegBAR0 + 4*i)
		switch s.Kind {
		case BARMem32:
			if low&0xf != 0 {
				t.Fatalf("BAR%d type bits %#x", i, low&0xf)
			}
		case BARIO:
			if low&0x3 != 1 {
				t.Fatalf("BAR%d type bits %#x", i, low&0x3)
			}
		case BARMem64:
			if low&0xf != 0x4 && low&0xf != 0xc {
				t.Fatalf("BAR%d type bits %#x", i, low&0xf)
			}
		}
		m := r.mapped[i]
		if m.Enabled != s.Enabled || s.Enabled && m.Addr != s.Addr {
			t.Fatalf("BAR%d model %+v, device %+v", i, m, s)
		}
	}
}

// FuzzConfigAccess plays arbitrary port I/O against ports 0xCF8-0xCFF.
// Each operation is five bytes: a control byte and a 32-bit value. Control
// bits 0-2 pick the port offset, bits 3-4 the width (1, 2, 4, 4), bit 5
// read or write, and bit 6 turns the operation into a well-formed
// CONFIG_ADDRESS write for device value[0]%3, function value[1]%2, register
// value[2] | (value[3]&0xf)<<8, so the fuzzer reaches real registers.
func FuzzConfigAccess(f *testing.F) {
	seq := func(ops ...[5]byte) []byte {
		var b []byte
		for _, o := range ops {
			b = append(b, o[:]...)
		}
		return b
	}
	addr := func(dev, fn, reg byte) [5]byte { return [5]byte{0x40, dev, fn, reg, 0} }
	wr := func(off, width byte, v uint32) [5]byte {
		var o [5]byte
		o[0] = 0x20 | width<<3 | off
		binary.LittleEndian.PutUint32(o[1:], v)
		return o
	}
	rd := func(off, width byte) [5]byte { return [5]byte{width<<3 | off, 0, 0, 0, 0} }
	// Size BAR0 with memory decoding on, then enable I/O and memory.
	f.Add(seq(addr(1, 0, 0x10), wr(4, 2, 0xffff_ffff), rd(4, 2), wr(4, 2, 0xc000_1000),
		addr(1, 0, 0x04), wr(4, 1, 0x0003)))
	// 64-bit BAR rewrite, capability writes, reset register.
	f.Add(seq(addr(1, 0, 0x18), wr(4, 2, 0xffff_fff0), addr(1, 0, 0x1c), wr(4, 2, 0x3),
		addr(1, 0, 0x04), wr(6, 0, 0xff), addr(1, 0, 0x50), wr(4, 2, 0xffff_ffff), wr(1, 0, 0x06)))
	// Host bridge and an empty slot.
	f.Add(seq(addr(0, 0, 0x00), rd(4, 2), wr(4, 2, 0), addr(2, 1, 0), rd(6, 1), wr(0, 1, 0x1234)))
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newFuzzRig(t)
		for i := 0; i+5 <= len(ops); i += 5 {
			ctl := ops[i]
			v := ops[i+1 : i+5]
			if ctl&0x40 != 0 {
				a := ConfigAddress(0, v[0]%3, v[1]%2, uint16(v[2])|uint16(v[3]&0xf)<<8)
				r.bus.Write(0, binary.LittleEndian.AppendUint32(nil, a))
				r.check()
				continue
			}
			off := uint64(ctl & 7)
			width := [4]int{1, 2, 4, 4}[(ctl>>3)&3]
			data := make([]byte, width)
			resets := r.resets
			if ctl&0x20 != 0 {
				copy(data, v)
				r.bus.Write(off, data)
				wantReset := off == 1 && width == 1 && data[0]&resetCPU != 0
				if (r.resets != resets) != wantReset {
					t.Fatalf("reset callback %v for write %x at %d", r.resets != resets, data, off)
				}
			} else {
				r.bus.Read(off, data)
				fn, _, _ := r.bus.target(off - 4)
				if off >= 4 && off+uint64(width) <= PortsSize && fn == nil {
					for _, b := range data {
						if b != 0xff {
							t.Fatalf("empty slot read %x", data)
						}
					}
				}
			}
			r.check()
		}
	})
}
