package cmos

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable host clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func read(r *RTC, reg byte) byte {
	r.Write(0, []byte{reg})
	var b [1]byte
	r.Read(1, b[:])
	return b[0]
}

func write(r *RTC, reg, v byte) {
	r.Write(0, []byte{reg})
	r.Write(1, []byte{v})
}

func newClockRTC(t time.Time, cfg Config) (*RTC, *fakeClock) {
	c := &fakeClock{t: t}
	cfg.Now = c.now
	return New(cfg), c
}

// 2024-02-29 (Thursday) 23:59:58.5 UTC
var leapDay = time.Date(2024, 2, 29, 23, 59, 58, 500_000_000, time.UTC)

func TestClockBCD24(t *testing.T) {
	r, _ := newClockRTC(leapDay, Config{})
	want := map[byte]byte{0: 0x58, 2: 0x59, 4: 0x23, 6: 0x05, 7: 0x29, 8: 0x02, 9: 0x24, CenturyRegister: 0x20, regB: 0x02, regD: 0x80, regC: 0}
	for reg, v := range want {
		if got := read(r, reg); got != v {
			t.Errorf("register %#x = %#02x, want %#02x", reg, got, v)
		}
	}
	if a := read(r, regA); a != 0x26 {
		t.Errorf("register A = %#x, want 0x26 (UIP clear mid-second)", a)
	}
}

func TestClockBinary12Hour(t *testing.T) {
	r, c := newClockRTC(leapDay, Config{})
	write(r, regB, bBinary) // binary, 12-hour
	if h := read(r, regHours); h != 0x80|11 {
		t.Fatalf("hours %#x, want PM|11", h)
	}
	if s, y, cen := read(r, regSeconds), read(r, regYear), read(r, CenturyRegister); s != 58 || y != 24 || cen != 20 {
		t.Fatalf("binary seconds %d year %d century %d", s, y, cen)
	}
	c.advance(2 * time.Second) // 2024-03-01 00:00:00.5
	if h := read(r, regHours); h != 12 {
		t.Fatalf("midnight reads %#x, want 12 AM", h)
	}
	if d, m := read(r, regDay), read(r, regMonth); d != 1 || m != 3 {
		t.Fatalf("rolled over to %d/%d", d, m)
	}
	// Write 1 PM in 12-hour binary.
	write(r, regHours, 0x80|1)
	write(r, regB, bBinary|b24Hour)
	if h := read(r, regHours); h != 13 {
		t.Fatalf("hours after 12h write %d, want 13", h)
	}
}

func TestUIP(t *testing.T) {
	r, c := newClockRTC(time.Date(2030, 1, 1, 0, 0, 0, int(time.Second-100*time.Microsecond), time.UTC), Config{})
	if read(r, regA)&aUIP == 0 {
		t.Fatal("UIP clear 100us before the update")
	}
	c.advance(200 * time.Microsecond)
	if read(r, regA)&aUIP != 0 {
		t.Fatal("UIP set just after the update")
	}
	// UIP cannot be written and stays clear while SET holds the clock.
	c.advance(time.Second - 200*time.Microsecond)
	write(r, regA, 0xff)
	if read(r, regA) != 0x7f {
		t.Fatalf("register A %#x", read(r, regA))
	}
	write(r, regA, 0x26)
	write(r, regB, bSET|b24Hour)
	if read(r, regA)&aUIP != 0 {
		t.Fatal("UIP set while SET")
	}
}

// TestLinuxGetTime plays mc146818_get_time's read sequence.
func TestLinuxGetTime(t *testing.T) {
	r := New(Config{})
	before := time.Now().UTC()
	var sec, min, hour, day, mon, year, cent byte
	for tries := 0; ; tries++ {
		if tries > 10 {
			t.Fatal("RTC not responding: UIP never cleared")
		}
		seconds := read(r, regSeconds)
		if read(r, regA)&aUIP != 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		if seconds != read(r, regSeconds) {
			continue
		}
		sec, min, hour = read(r, regSeconds), read(r, regMinutes), read(r, regHours)
		day, mon, year = read(r, regDay), read(r, regMonth), read(r, regYear)
		cent = read(r, CenturyRegister)
		if read(r, regA)&aUIP != 0 || seconds != read(r, regSeconds) {
			continue
		}
		break
	}
	if read(r, regD)&0x40 != 0 || read(r, regD)&0x80 == 0 {
		t.Fatal("rtc-cmos would say: not accessible")
	}
	ctrl := read(r, regB)
	if ctrl&bBinary != 0 || ctrl&b24Hour == 0 {
		t.Fatalf("control %#x", ctrl)
	}
	bcd := func(b byte) int { return int(b>>4)*10 + int(b&15) }
	got := time.Date(bcd(cent)*100+bcd(year), time.Month(bcd(mon)), bcd(day), bcd(hour), bcd(min), bcd(sec), 0, time.UTC)
	if got.Before(before.Truncate(time.Second)) || got.After(time.Now().UTC()) {
		t.Fatalf("RTC time %v, host %v", got, before)
	}
}

func TestSetTime(t *testing.T) {
	r, c := newClockRTC(leapDay, Config{})
	// The guest sets 1999-12-31 23:59:50 with SET, BCD.
	write(r, regB, bSET|b24Hour|bUIE)
	if b := read(r, regB); b != bSET|b24Hour {
		t.Fatalf("register B %#x: SET must clear UIE", b)
	}
	for reg, v := range map[byte]byte{regSeconds: 0x50, regMinutes: 0x59, regHours: 0x23, regDay: 0x31, regMonth: 0x12, regYear: 0x99, CenturyRegister: 0x19} {
		write(r, reg, v)
	}
	c.advance(5 * time.Second) // frozen while SET
	if s := read(r, regSeconds); s != 0x50 {
		t.Fatalf("clock ran while SET: %#x", s)
	}
	write(r, regB, b24Hour)
	c.advance(15 * time.Second)
	want := map[byte]byte{regSeconds: 0x05, regMinutes: 0x00, regHours: 0x00, regDay: 0x01, regMonth: 0x01, regYear: 0x00, CenturyRegister: 0x20, regWeekday: 0x07}
	for reg, v := range want {
		if got := read(r, reg); got != v {
			t.Errorf("after Y2K rollover register %#x = %#x, want %#x", reg, got, v)
		}
	}
	// Direct write without SET.
	write(r, regMinutes, 0x30)
	if m := read(r, regMinutes); m != 0x30 {
		t.Fatalf("minutes %#x", m)
	}
	// Garbage BCD normalises instead of panicking.
	write(r, regMonth, 0xff)
	write(r, regDay, 0x00)
	write(r, regWeekday, 0x03) // ignored
	_ = read(r, regMonth)
}

func TestMemoryBytes(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	tests := []struct {
		name          string
		low, high     uint64
		ext, m16      uint16
		hi0, hi1, hi2 byte
	}{
		{"32 MiB", 32 * mib, 0, 31 * 1024, 16 * 16, 0, 0, 0},
		{"512 MiB", 512 * mib, 0, 0xffff, (512 - 16) * 16, 0, 0, 0},
		{"3 GiB + 5 GiB", 3 * gib, 5 * gib, 0xffff, 0xbf00, 0x00, 0x40, 0x01},
		{"above the 16-bit limits", 4 * gib, 1 << 40, 0xffff, 0xff00, 0xff, 0xff, 0xff},
		{"tiny", 640 * 1024, 0, 0, 0, 0, 0, 0},
	}
	for _, tc := range tests {
		r := New(Config{LowMemory: tc.low, HighMemory: tc.high})
		w16 := func(reg byte) uint16 { return uint16(read(r, reg)) | uint16(read(r, reg+1))<<8 }
		if w16(regBaseMemLo) != 640 {
			t.Errorf("%s: base memory %d", tc.name, w16(regBaseMemLo))
		}
		if w16(regExtMemLo) != tc.ext || w16(regExtMem2Lo) != tc.ext {
			t.Errorf("%s: extended %#x/%#x, want %#x", tc.name, w16(regExtMemLo), w16(regExtMem2Lo), tc.ext)
		}
		if w16(regMem16MLo) != tc.m16 {
			t.Errorf("%s: above 16M %#x, want %#x", tc.name, w16(regMem16MLo), tc.m16)
		}
		if read(r, 0x5b) != tc.hi0 || read(r, 0x5c) != tc.hi1 || read(r, 0x5d) != tc.hi2 {
			t.Errorf("%s: above 4G %x %x %x", tc.name, read(r, 0x5b), read(r, 0x5c), read(r, 0x5d))
		}
		var sum uint16
		for reg := byte(0x10); reg < 0x2e; reg++ {
			sum += uint16(read(r, reg))
		}
		if w := uint16(read(r, 0x2e))<<8 | uint16(read(r, 0x2f)); w != sum {
			t.Errorf("%s: checksum %#x, want %#x", tc.name, w, sum)
		}
	}
}

func TestNVRAMAndIndex(t *testing.T) {
	r := New(Config{})
	for reg := byte(0x0e); reg < NVRAMSize; reg++ {
		if reg == CenturyRegister {
			continue
		}
		write(r, reg, reg^0xa5)
	}
	for reg := byte(0x0e); reg < NVRAMSize; reg++ {
		if reg == CenturyRegister {
			continue
		}
		if got := read(r, reg); got != reg^0xa5 {
			t.Fatalf("NVRAM %#x = %#x", reg, got)
		}
	}
	// Bit 7 of the index is the NMI mask, not part of the address.
	r.Write(0, []byte{0x80 | 0x20})
	var b [1]byte
	r.Read(1, b[:])
	if b[0] != 0x20^0xa5 || !r.NMIDisabled() {
		t.Fatalf("NMI-masked index read %#x, NMI disabled %v", b[0], r.NMIDisabled())
	}
	r.Read(0, b[:])
	if b[0] != 0xa0 {
		t.Fatalf("index reads %#x", b[0])
	}
	// Registers C and D are read-only.
	write(r, regC, 0xff)
	write(r, regD, 0x00)
	if read(r, regC) != 0 || read(r, regD) != 0x80 {
		t.Fatal("C/D writable")
	}
	// A 16-bit access writes the index then the data.
	r.Write(0, []byte{0x40, 0x77})
	if read(r, 0x40) != 0x77 {
		t.Fatal("wide write")
	}
	var w [2]byte
	r.Write(0, []byte{0x40})
	r.Read(0, w[:])
	if w[0] != 0x40 || w[1] != 0x77 {
		t.Fatalf("wide read %x", w)
	}
}

func FuzzAccess(f *testing.F) {
	f.Add([]byte{0, 0x0b, 1, 0x86, 0, 0x09, 1, 0x99, 0, 0x0b, 1, 0x06, 0, 0x04, 2, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		c := &fakeClock{t: leapDay}
		r := New(Config{LowMemory: 1 << 30, Now: c.now})
		for i := 0; i+1 < len(ops); i += 2 {
			switch ops[i] % 4 {
			case 0:
				r.Write(0, ops[i+1:i+2])
			case 1:
				r.Write(1, ops[i+1:i+2])
			case 2:
				var b [1]byte
				r.Read(1, b[:])
			case 3:
				c.advance(time.Duration(ops[i+1]) * 37 * time.Millisecond)
			}
			if read(r, regD) != dVRT || read(r, regC) != 0 {
				t.Fatal("status registers changed")
			}
		}
	})
}
