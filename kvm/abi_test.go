package kvm

import (
	"slices"
	"testing"
)

func TestLAPICVectors(t *testing.T) {
	var l LAPICState
	set := func(off int, v uint8) { l.Regs[off+16*int(v/32)+int(v%32)/8] |= 1 << (v % 8) }
	for _, v := range []uint8{0x22, 0x41, 0xef, 0xff} {
		set(lapicIRR, v)
	}
	set(lapicISR, 0x30)
	l.Regs[lapicTPR] = 0x20
	l.Regs[lapicPPR+1] = 0x01
	if got := l.IRR(); !slices.Equal(got, []uint8{0x22, 0x41, 0xef, 0xff}) {
		t.Errorf("IRR = %#x", got)
	}
	if got := l.ISR(); !slices.Equal(got, []uint8{0x30}) {
		t.Errorf("ISR = %#x", got)
	}
	if l.TPR() != 0x20 || l.PPR() != 0x100 {
		t.Errorf("TPR %#x PPR %#x", l.TPR(), l.PPR())
	}
}

func TestDecodeIOAPIC(t *testing.T) {
	chip := make([]byte, 512)
	chip[0], chip[1], chip[2], chip[3] = 0x00, 0x00, 0xc0, 0xfe // base 0xfec00000
	chip[16] = 0x20                                             // irr: pin 5
	// pin 5: vector 0x25, level, remote IRR, dest 1; pin 6: masked.
	e5 := uint64(0x25) | 1<<15 | 1<<14 | 1<<56
	for i := range 8 {
		chip[24+8*5+i] = byte(e5 >> (8 * i))
	}
	chip[24+8*6+2] = 1
	st := decodeIOAPIC(chip)
	e := st.RedirTbl[5]
	if st.BaseAddress != 0xfec00000 || st.IRR != 0x20 || e.Vector() != 0x25 || !e.Level() || !e.RemoteIRR() || e.Masked() || e.Dest() != 1 || !st.RedirTbl[6].Masked() {
		t.Fatalf("decoded %+v", st)
	}
}

// TestInterruptStateFromKVM reads the dump's interrupt state from a real
// in-kernel irqchip, where a wrong offset shows (a fresh vCPU's state is
// mostly zeros, which any offset reads alike): KVM_GET_VCPU_EVENTS always
// sets KVM_VCPUEVENT_VALID_SHADOW in flags (offset 20), and KVM computes
// the PPR from the TPR it was given (with nothing in service, PPR = TPR).
func TestInterruptStateFromKVM(t *testing.T) {
	tv := newTestVM(t, []byte{0xf4})
	vm, err := tv.sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	v, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const validShadow = 0x4 // KVM_VCPUEVENT_VALID_SHADOW
	if ev, err := v.Events(); err != nil || ev.Flags&validShadow == 0 || ev.IntrInjected != 0 {
		t.Fatalf("fresh vCPU's events: %+v, %v", ev, err)
	}
	l, err := v.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	l.Regs[lapicTPR] = 0x50
	if err := v.SetLAPIC(l); err != nil {
		t.Fatal(err)
	}
	if l, err = v.LAPIC(); err != nil {
		t.Fatal(err)
	}
	if l.TPR() != 0x50 || l.PPR() != 0x50 || len(l.ISR()) != 0 || len(l.IRR()) != 0 {
		t.Fatalf("LAPIC after TPR 0x50: tpr %#x ppr %#x isr %#x irr %#x", l.TPR(), l.PPR(), l.ISR(), l.IRR())
	}
}
