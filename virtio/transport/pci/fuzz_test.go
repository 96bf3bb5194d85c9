package pci

import (
	"encoding/binary"
	"testing"

	pcidev "github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/virtio"
)

// Fuzz ops are 8 bytes: kind, offset (2 bytes LE), width selector,
// value (4 bytes LE). Configuration offsets wrap at 256, BAR offsets at
// BARSize.
const opSize = 8

const (
	opCfgRead = iota
	opCfgWrite
	opBARRead
	opBARWrite
	opDevice // signal a queue, change config, or need a reset
	numOps
)

var widths = [4]int{1, 2, 4, 8}

// record appends an access as a fuzz op when the rig is recording.
func (r *rig) record(kind byte, off uint64, n int, v uint64) {
	if r.rec == nil {
		return
	}
	var b [opSize]byte
	b[0] = kind
	binary.LittleEndian.PutUint16(b[1:], uint16(off))
	for i, w := range widths {
		if w == n {
			b[3] = byte(i)
		}
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(v))
	*r.rec = append(*r.rec, b[:]...)
}

// linuxSeed records a whole Linux bring-up (MSI-X or INTx), traffic and
// a reset as fuzz ops.
func linuxSeed(t testing.TB, msix bool) []byte {
	r := newRig(t, rigOpt{quiet: true})
	var ops []byte
	r.rec = &ops
	r.bringUp(msix)
	r.notify(1)
	ops = append(ops, opDevice, 0, 0, 0, 0, 0, 0, 0) // Signal(0)
	r.isr()
	r.iowrite(MSIXTableOffset+16+msixVectorCtrl, 4, 1)
	ops = append(ops, opDevice, 0, 0, 0, 1, 0, 0, 0) // SignalConfig
	r.iowrite(MSIXTableOffset+16+msixVectorCtrl, 4, 0)
	r.cfgWrite(pcidev.RegCommand, 2, 0)
	r.cfgWrite(pcidev.RegBAR0, 4, testBAR+BARSize)
	r.cfgWrite(pcidev.RegCommand, 2, pcidev.CommandMemory)
	r.bar = testBAR + BARSize
	r.setCommon(cfgDeviceStatus, 1, 0)
	r.rec = nil
	return ops
}

// TestLinuxSeedReplays checks the recorded seeds bring a fresh rig to
// activation when replayed, so the fuzzer starts from deep states.
func TestLinuxSeedReplays(t *testing.T) {
	for _, msix := range []bool{true, false} {
		r := newRig(t, rigOpt{quiet: true})
		runOps(t, r, linuxSeed(t, msix))
		if r.dev.Activations() != 1 || r.tr.GuestErrors() != 0 {
			t.Fatalf("msix %v: %d activations, %d guest errors", msix, r.dev.Activations(), r.tr.GuestErrors())
		}
	}
}

// FuzzAccess plays random configuration-space and BAR access sequences
// (seeded with Linux's bring-up): never panic, never trigger a masked
// vector, keep the status, the INTx line and the BAR mapping consistent.
func FuzzAccess(f *testing.F) {
	f.Add(linuxSeed(f, true))
	f.Add(linuxSeed(f, false))
	f.Add([]byte{opCfgWrite, 0x04, 0, 1, 0x06, 0x04, 0, 0, opBARWrite, 0x00, 0x40, 2, 0, 0, 0xe0, 0xfe})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRig(t, rigOpt{quiet: true, noINTx: len(data)%5 == 4, notifier: len(data)%3 == 0})
		runOps(t, r, data)
	})
}

// runOps applies fuzz ops to r, checking invariants after each.
func runOps(t *testing.T, r *rig, data []byte) {
	for len(data) >= opSize {
		kind, off := data[0]%numOps, uint64(binary.LittleEndian.Uint16(data[1:]))
		n, v := widths[data[3]%4], binary.LittleEndian.Uint32(data[4:])
		data = data[opSize:]
		buf := make([]byte, n)
		var le [8]byte
		binary.LittleEndian.PutUint32(le[:], v)
		switch kind {
		case opCfgRead, opCfgWrite:
			if n == 8 || off%256+uint64(n) > 256 || off%4+uint64(n) > 4 { // not a config cycle
				continue
			}
			if kind == opCfgRead {
				r.tr.ReadConfig(uint32(off%256), buf)
			} else {
				copy(buf, le[:])
				r.tr.WriteConfig(uint32(off%256), buf)
			}
		case opBARRead, opBARWrite:
			off %= BARSize
			if off+uint64(n) > BARSize {
				continue
			}
			if kind == opBARRead {
				r.tr.Read(off, buf)
			} else {
				copy(buf, le[:])
				r.tr.Write(off, buf)
			}
		case opDevice:
			if irq := r.dev.IRQ(); irq != nil {
				switch v % 3 {
				case 0:
					irq.Signal(int(v>>8) % 2)
				case 1:
					irq.SignalConfig()
				case 2:
					irq.NeedsReset()
				}
			}
		}
		r.check(t)
	}
}

// check asserts the invariants that must hold after any access.
func (r *rig) check(t *testing.T) {
	st := r.tr.Status()
	if r.tr.core.Active() && !st.Has(virtio.StatusFeaturesOK|virtio.StatusDriverOK) {
		t.Fatalf("device active with status %v", st)
	}
	if n := r.tr.core.Contained(); n != 0 {
		t.Fatalf("%d panics under register accesses (contained as DEVICE_NEEDS_RESET; the log has the stack)", n)
	}
	if r.router != nil {
		for v := 0; v <= len(r.drivers); v++ {
			if x := r.router.Vector(v); x.BadTriggers != 0 {
				t.Fatalf("vector %d triggered while masked: %+v", v, x)
			}
		}
	}
	if r.line != nil {
		want := r.tr.isr.Load() != 0 && !r.tr.msixOn.Load() && !r.tr.intxOff.Load()
		if r.line.Level() != want {
			t.Fatalf("INTx line %v, want %v", r.line.Level(), want)
		}
	}
	bar, _ := r.tr.cs.BAR(BARIndex)
	addr, mapped := r.tr.BAR()
	fits := bar.Addr+BARSize > bar.Addr // the bus refuses a window that wraps
	if mapped != (bar.Enabled && fits) || mapped && addr != bar.Addr {
		t.Fatalf("BAR mapped %v at %#x, registers say %+v", mapped, addr, bar)
	}
}
