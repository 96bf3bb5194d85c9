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
