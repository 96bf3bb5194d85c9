package serial

import "testing"

// FuzzRegisters drives the UART with an arbitrary stream of guest register
// accesses and host input, checking that nothing panics and that the state
// stays consistent: the FIFO never exceeds its capacity, IER keeps four
// bits, IIR reports a valid source, and the interrupt line always matches
// the state and is only driven on changes.
//
// Each operation takes two bytes: op (bits 0-2 register, bits 3-4 kind) and
// a value.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{
		0x08 | regIIR, 0x01, 0x08 | regMCR, 0x18, 0x08 | regIER, 0x0f, // FIFO, OUT2|LOOP, all IRQs
		0x08 | regData, 'a', 0x00 | regIIR, 0, 0x00 | regLSR, 0, 0x00 | regData, 0,
		0x10, 'h', 0x08 | regMCR, 0x08, 0x10, 'i', 0x00 | regMSR, 0,
	})
	f.Add([]byte{0x08 | regLCR, 0x80, 0x08 | regData, 0x01, 0x08 | regIER, 0x00, 0x08 | regLCR, 0x03})
	f.Fuzz(func(t *testing.T, ops []byte) {
		irq := &fakeIRQ{}
		u := New(nil, irq)
		for i := 0; i+1 < len(ops); i += 2 {
			reg := uint64(ops[i] & 7)
			v := ops[i+1]
			switch (ops[i] >> 3) & 3 {
			case 0:
				got := in(u, reg)
				if reg == regIIR && got&0x30 != 0 {
					t.Fatalf("IIR %#x has bits 4-5 set", got)
				}
			case 1:
				out(u, reg, v)
			case 2:
				n := int(v%20) + 1
				p := make([]byte, n)
				if took := u.Enqueue(p); took > n {
					t.Fatalf("Enqueue took %d of %d", took, n)
				}
			case 3:
				// A wide access from the op's register onwards.
				buf := make([]byte, int(v%4)+1)
				if v&0x80 != 0 {
					u.Write(reg, buf)
				} else {
					u.Read(reg, buf)
				}
			}
			u.mu.Lock()
			if u.rxLen < 0 || u.rxLen > u.rxCapacity() {
				t.Fatalf("rxLen %d over capacity %d", u.rxLen, u.rxCapacity())
			}
			if u.rxLen > FIFOSize || u.ier&^ierMask != 0 || u.mcr&^mcrMask != 0 {
				t.Fatalf("state out of range: rxLen %d ier %#x mcr %#x", u.rxLen, u.ier, u.mcr)
			}
			switch id := u.interruptID(); id {
			case iirNoInt, iirMSI, iirTHRI, iirRDI, iirRLSI, iirTimeout:
			default:
				t.Fatalf("bad interrupt id %#x", id)
			}
			want := u.mcr&mcrOUT2 != 0 && u.interruptID() != iirNoInt
			u.mu.Unlock()
			if level, _, redundant := irq.snapshot(); level != want || redundant != 0 {
				t.Fatalf("line %v, state wants %v; %d redundant SetLevel calls", level, want, redundant)
			}
		}
	})
}
