package mmio

import (
	"encoding/binary"
	"testing"

	"github.com/flintvm/flint/virtio"
)

// Fuzz ops are 6 bytes: kind, offset (2 bytes, little endian), width
// selector, value selector/low byte, value high byte.
const opSize = 6

const (
	opRead = iota
	opWrite
	opWriteUseful // write a value from the rig's useful values
	opDevice      // the device signals, changes config or needs a reset
	numOps
)

// usefulValues are values a driver writes that random bytes rarely hit:
// ring addresses (low and high halves), sizes, status steps.
func (r *rig) usefulValues() []uint32 {
	cf := uint64(virtio.CommonFeatures)
	vals := []uint32{0, 1, 2, 4, 8, 16, 256, 0xffffffff,
		uint32(virtio.StatusAcknowledge), uint32(virtio.StatusAcknowledge | virtio.StatusDriver),
		uint32(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK),
		uint32(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK),
		uint32(cf), uint32(cf >> 32)}
	for _, d := range r.drivers {
		c := d.Config()
		vals = append(vals, uint32(c.DescAddr), uint32(c.AvailAddr), uint32(c.UsedAddr), uint32(c.Size))
	}
	return vals
}

// encodeOps builds a fuzz input from (kind, offset, width, value) tuples.
func encodeOps(ops ...[4]uint32) []byte {
	var out []byte
	for _, o := range ops {
		var b [opSize]byte
		b[0] = byte(o[0])
		binary.LittleEndian.PutUint16(b[1:], uint16(o[1]))
		b[3] = byte(o[2])
		binary.LittleEndian.PutUint16(b[4:], uint16(o[3]))
		out = append(out, b[:]...)
	}
	return out
}

// linuxSeed is the Linux bring-up as fuzz ops (width selector 2 = 4
// bytes; useful-value indices as laid out by usefulValues).
func linuxSeed() []byte {
	w := func(off, useful uint32) [4]uint32 { return [4]uint32{opWriteUseful, off, 2, useful} }
	ops := [][4]uint32{
		{opRead, RegMagicValue, 2, 0}, w(RegStatus, 0), w(RegStatus, 8), w(RegStatus, 9),
		w(RegDeviceFeaturesSel, 1), {opRead, RegDeviceFeatures, 2, 0}, w(RegDriverFeaturesSel, 1),
		w(RegDriverFeatures, 13), w(RegDriverFeaturesSel, 0), w(RegDriverFeatures, 12), w(RegStatus, 10),
	}
	for q := uint32(0); q < 2; q++ {
		base := 14 + 4*q
		ops = append(ops, w(RegQueueSel, q), w(RegQueueNum, base+3), w(RegQueueDescLow, base),
			w(RegQueueDescHigh, 0), w(RegQueueDriverLow, base+1), w(RegQueueDriverHigh, 0),
			w(RegQueueDeviceLow, base+2), w(RegQueueDeviceHigh, 0), w(RegQueueReady, 1))
	}
	ops = append(ops, w(RegStatus, 11), [4]uint32{opWriteUseful, RegQueueNotify, 2, 1},
		[4]uint32{opDevice, 0, 0, 0}, [4]uint32{opRead, RegInterruptStatus, 2, 0},
		w(RegInterruptACK, 1), [4]uint32{opDevice, 0, 0, 2}, w(RegStatus, 0))
	return encodeOps(ops...)
}

// TestLinuxSeedActivates makes sure the main fuzz seed reaches DRIVER_OK,
// so the fuzzer starts from deep states.
func TestLinuxSeedActivates(t *testing.T) {
	r := newRig(t, rigOpt{quiet: true})
	runOps(t, r, linuxSeed())
	if r.dev.Activations() != 1 || r.dev.Resets() != 2 || r.tr.GuestErrors() != 0 {
		t.Fatalf("seed: %d activations, %d resets, %d guest errors", r.dev.Activations(), r.dev.Resets(), r.tr.GuestErrors())
	}
}

// FuzzRegisters plays random register sequences (seeded with Linux's
// bring-up) against the window: it must never panic, and the status must
// stay consistent with the device's state.
func FuzzRegisters(f *testing.F) {
	f.Add(linuxSeed())
	f.Add(encodeOps([4]uint32{opWrite, RegStatus, 0, 0xff}, [4]uint32{opRead, 0x1fe, 3, 0}))
	f.Add(encodeOps([4]uint32{opWriteUseful, RegQueueReady, 2, 1}, [4]uint32{opWrite, 0x100, 3, 0xffff}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRig(t, rigOpt{quiet: true, level: len(data)%2 == 1, notifier: len(data)%3 == 0})
		runOps(t, r, data)
	})
}

// runOps applies fuzz ops to r, checking invariants after each.
func runOps(t *testing.T, r *rig, data []byte) {
	useful := r.usefulValues()
	widths := [4]int{1, 2, 4, 8}
	for len(data) >= opSize {
		op, off := data[0]%numOps, uint64(binary.LittleEndian.Uint16(data[1:]))%(WindowSize+8)
		width, val := widths[data[3]%4], binary.LittleEndian.Uint16(data[4:])
		data = data[opSize:]
		if off+uint64(width) > WindowSize { // the bus never delivers these
			continue
		}
		buf := make([]byte, width)
		switch op {
		case opRead:
			r.tr.Read(off, buf)
		case opWrite:
			var v [8]byte
			binary.LittleEndian.PutUint16(v[:], val)
			copy(buf, v[:])
			r.tr.Write(off, buf)
		case opWriteUseful:
			if width == 4 {
				binary.LittleEndian.PutUint32(buf, useful[int(val)%len(useful)])
			}
			r.tr.Write(off, buf)
		case opDevice:
			if irq := r.dev.IRQ(); irq != nil {
				switch val % 3 {
				case 0:
					irq.Signal(int(val>>8) % 3)
				case 1:
					irq.SignalConfig()
				case 2:
					irq.NeedsReset()
				}
			}
		}
		st := r.tr.Status()
		if r.tr.core.Active() && !st.Has(virtio.StatusFeaturesOK|virtio.StatusDriverOK) {
			t.Fatalf("device active with status %v", st)
		}
		if n := r.tr.core.Contained(); n != 0 {
			t.Fatalf("%d panics under register accesses (contained as DEVICE_NEEDS_RESET; the log has the stack)", n)
		}
		if r.line != nil && r.line.Level() != (r.tr.isr.Load() != 0) {
			t.Fatalf("level line %v with status bits %#x", r.line.Level(), r.tr.isr.Load())
		}
	}
}
