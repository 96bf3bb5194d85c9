package i8042

import "testing"

// FuzzPorts feeds arbitrary port traffic to the controller: no panics, the
// output buffer stays bounded, and both interrupt lines always match the
// state and are driven only on changes. Each operation is two bytes: the
// low two bits of the first pick read/write of port 0x60/0x64, the second
// is the value written.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{3, 0xaa, 2, 0, 3, 0x20, 2, 0, 3, 0x60, 1, 0x47, 3, 0xd3, 1, 0x5a, 0, 0, 3, 0xd4, 1, 0xf2})
	f.Add([]byte{3, 0xd1, 1, 0x03, 3, 0xd0, 0, 0, 3, 0xfe})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newRig()
		for i := 0; i+1 < len(ops); i += 2 {
			switch ops[i] & 3 {
			case 0:
				r.inb(DataPort)
			case 1:
				r.outb(DataPort, ops[i+1])
			case 2:
				if s := r.inb(CommandPort); s&0x82 != 0 {
					t.Fatalf("status %#x: IBF or parity error set", s)
				}
			case 3:
				r.outb(CommandPort, ops[i+1])
			}
			r.c.mu.Lock()
			qLen := r.c.qLen
			var wantKbd, wantAux bool
			if qLen > 0 {
				h := r.c.queue[r.c.qHead]
				wantAux = h.aux && r.c.ram[0]&ctrAuxInt != 0
				wantKbd = !h.aux && r.c.ram[0]&ctrKbdInt != 0
			}
			r.c.mu.Unlock()
			if qLen < 0 || qLen > queueSize {
				t.Fatalf("queue length %d", qLen)
			}
			kbd, _, rk := r.kbd.get()
			aux, _, ra := r.aux.get()
			if kbd != wantKbd || aux != wantAux || rk != 0 || ra != 0 {
				t.Fatalf("lines kbd %v aux %v, want %v %v; redundant %d %d", kbd, aux, wantKbd, wantAux, rk, ra)
			}
		}
	})
}
