package acpipm

import (
	"sync/atomic"
	"testing"
)

const wakSts = 0x80

func TestLinuxPowerOff(t *testing.T) {
	var off, resets atomic.Int32
	c := New(Config{OnPowerOff: func() { off.Add(1) }, OnReset: func() { resets.Add(1) }})
	// acpi_hw_extended_sleep: clear WAK_STS, write SLP_TYP|SLP_EN, poll.
	c.Write(SleepStatusPort-Base, []byte{wakSts})
	if off.Load() != 0 {
		t.Fatal("power off on the status write")
	}
	c.Write(SleepControlPort-Base, []byte{SleepTypeS5<<2 | slpEn})
	if off.Load() != 1 || resets.Load() != 0 {
		t.Fatalf("power off %d, resets %d", off.Load(), resets.Load())
	}
	if c.LastSleepType() != SleepTypeS5 {
		t.Fatalf("sleep type %d", c.LastSleepType())
	}
	var b [1]byte
	c.Read(SleepStatusPort-Base, b[:])
	if b[0]&wakSts != 0 {
		t.Fatal("WAK_STS set: the guest would think it woke up")
	}
	c.Read(SleepControlPort-Base, b[:])
	if b[0] != SleepTypeS5<<2 {
		t.Fatalf("control reads %#x: SLP_EN must read 0", b[0])
	}
}

func TestRegisters(t *testing.T) {
	tests := []struct {
		name        string
		offset      uint64
		data        []byte
		off, resets int32
	}{
		{"SLP_TYP without SLP_EN", 0, []byte{0x1c}, 0, 0},
		{"SLP_EN with type 0", 0, []byte{slpEn}, 1, 0},
		{"reserved bits only", 0, []byte{0xc3}, 0, 0},
		{"reset value", 2, []byte{ResetValue}, 0, 1},
		{"reset zero", 2, []byte{0}, 0, 0},
		{"wide write covering control and reset", 0, []byte{slpEn, 0, 1}, 1, 1},
		{"beyond the block", 3, []byte{0xff}, 0, 0},
	}
	for _, tc := range tests {
		var off, resets atomic.Int32
		c := New(Config{OnPowerOff: func() { off.Add(1) }, OnReset: func() { resets.Add(1) }})
		c.Write(tc.offset, tc.data)
		if off.Load() != tc.off || resets.Load() != tc.resets {
			t.Errorf("%s: power off %d reset %d, want %d %d", tc.name, off.Load(), resets.Load(), tc.off, tc.resets)
		}
	}
	// Nil callbacks are fine.
	New(Config{}).Write(0, []byte{slpEn, 0, 1})
	c := New(Config{})
	var b [3]byte
	c.Write(0, []byte{0xff})
	c.Read(0, b[:])
	if b != [3]byte{0x1c, 0, 0} {
		t.Fatalf("reads %x", b)
	}
}
