// Package cmos emulates the PC's CMOS memory and real-time clock, a
// Motorola MC146818: 128 bytes addressed through an index port (0x70) and
// a data port (0x71). Insert it on the PIO bus with
// Insert(rtc, cmos.IndexPort, cmos.Size).
//
// # Clock
//
// Registers 0x00-0x09 show the host's UTC wall clock plus an offset the
// guest sets by writing them, in BCD or binary as register B's DM bit says
// and in 24- or 12-hour format per its 24/12 bit (default: BCD, 24-hour).
// The century is kept at CenturyRegister (0x32), the byte an ACPI FADT
// century field should name. Setting register B's SET bit freezes the
// registers so the guest can write a new time field by field; clearing it
// starts the clock from those values together. A time write with SET clear
// changes that field of the running clock at once. Day of week is computed
// from the date: writes to it only show while SET is on.
//
// Register A's UIP bit is set during the last 244 us of every second, as on
// the real part, so software that waits for an update edge (hwclock
// --directisa) works; Linux's reader retries around it. Register D reads
// 0x80 (valid RAM and time), which rtc-cmos checks before it registers the
// clock. Register C reads 0: the device raises no interrupts (no IRQ 8), so
// periodic, alarm and update-ended interrupts are not available; the alarm
// registers are stored but never fire. The divider bits of register A are
// stored but the clock always runs.
//
// # Memory size bytes
//
// Bytes 0x15/0x16 (base memory, 640 KiB), 0x17/0x18 and 0x30/0x31 (KiB of
// memory above 1 MiB, at most 0xFFFF), 0x34/0x35 (64 KiB blocks above
// 16 MiB below 4 GiB) and 0x5B-0x5D (64 KiB blocks above 4 GiB) describe
// the configured RAM, as firmware and some bootloaders expect; bytes
// 0x2E/0x2F hold the standard checksum over 0x10-0x2D. All other bytes are
// plain NVRAM the guest can read and write.
//
// The index port's bit 7 disables NMIs on a PC; it is stored and reported
// by NMIDisabled but has no other effect.
//
// The package imports only devices, never kvm.
package cmos

import (
	"sync"
	"time"

	"github.com/flintvm/flint/devices"
)

const (
	// IndexPort is the register-select port.
	IndexPort = 0x70
	// DataPort is the data port.
	DataPort = 0x71
	// Size is the number of ports the device occupies from IndexPort.
	Size = 2
	// NVRAMSize is the number of addressable CMOS bytes.
	NVRAMSize = 128
	// CenturyRegister holds the century (BCD or binary like the other time
	// registers); point the FADT's century field at it.
	CenturyRegister = 0x32
)

// Clock and status registers.
const (
	regSeconds = 0x00
	regMinutes = 0x02
	regHours   = 0x04
	regWeekday = 0x06
	regDay     = 0x07
	regMonth   = 0x08
	regYear    = 0x09
	regA       = 0x0a
	regB       = 0x0b
	regC       = 0x0c
	regD       = 0x0d

	aUIP      = 0x80
	aDivMask  = 0x70
	aDivOn    = 0x20 // 32.768 kHz time base, divider running
	bSET      = 0x80
	bUIE      = 0x10
	bBinary   = 0x04
	b24Hour   = 0x02
	dVRT      = 0x80
	hourPM    = 0x80
	nmiBit    = 0x80
	indexMask = 0x7f

	// uipWindow is how long before each second's update UIP reads 1.
	uipWindow = 244 * time.Microsecond
)

// Memory size registers.
const (
	regBaseMemLo  = 0x15
	regExtMemLo   = 0x17
	regChecksumHi = 0x2e
	regExtMem2Lo  = 0x30
	regMem16MLo   = 0x34
	regHighMem    = 0x5b // three bytes
)

// Config describes the machine the CMOS reports.
type Config struct {
	// LowMemory is the guest RAM below 4 GiB in bytes, counted from 0.
	LowMemory uint64
	// HighMemory is the guest RAM at and above 4 GiB in bytes.
	HighMemory uint64
	// Now returns the host time; nil means time.Now. Tests inject a clock.
	Now func() time.Time
}

// RTC is the emulated CMOS/RTC. It is safe for concurrent use; its one
// mutex is never held while calling out, except to Config.Now.
type RTC struct {
	mu     sync.Mutex
	now    func() time.Time
	index  uint8 // last index written, including the NMI bit
	nvram  [NVRAMSize]byte
	offset time.Duration // guest time = host UTC + offset
	// held holds the raw time registers 0x00-0x09 and the century while
	// register B's SET bit is on; they are parsed together when it clears.
	held        [regYear + 1]byte
	heldCentury byte
}

var _ devices.Device = (*RTC)(nil)

// New returns a CMOS/RTC showing the host's UTC time and the memory sizes
// in cfg.
func New(cfg Config) *RTC {
	r := &RTC{now: cfg.Now}
	if r.now == nil {
		r.now = time.Now
	}
	r.nvram[regA] = aDivOn | 0x06 // 1024 Hz periodic rate selected
	r.nvram[regB] = b24Hour
	r.nvram[regD] = dVRT
	r.setMemory(cfg.LowMemory, cfg.HighMemory)
	return r
}

func (r *RTC) put16(reg int, v uint64) {
	v = min(v, 0xffff)
	r.nvram[reg] = byte(v)
	r.nvram[reg+1] = byte(v >> 8)
}

func (r *RTC) setMemory(low, high uint64) {
	const kib, mib = 1 << 10, 1 << 20
	r.put16(regBaseMemLo, 640)
	if low > mib {
		r.put16(regExtMemLo, (low-mib)/kib)
		r.put16(regExtMem2Lo, (low-mib)/kib)
	}
	if low > 16*mib {
		r.put16(regMem16MLo, (low-16*mib)/(64*kib))
	}
	blocks := min(high/(64*kib), 0xff_ffff)
	r.nvram[regHighMem] = byte(blocks)
	r.nvram[regHighMem+1] = byte(blocks >> 8)
	r.nvram[regHighMem+2] = byte(blocks >> 16)
	var sum uint16
	for _, b := range r.nvram[0x10:regChecksumHi] {
		sum += uint16(b)
	}
	r.nvram[regChecksumHi] = byte(sum >> 8)
	r.nvram[regChecksumHi+1] = byte(sum)
}

// NMIDisabled reports whether the guest last wrote the index port with
// bit 7 set.
func (r *RTC) NMIDisabled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index&nmiBit != 0
}

// Read implements devices.Device. Offset 0 is the index port, 1 the data
// port; a wider access covers both, byte by byte.
func (r *RTC) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		switch offset + uint64(i) {
		case 0:
			data[i] = r.index
		case 1:
			data[i] = r.readReg(r.index & indexMask)
		}
	}
}

// Write implements devices.Device.
func (r *RTC) Write(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			r.index = v
		case 1:
			r.writeReg(r.index&indexMask, v)
		}
	}
}

// clock returns the guest's current time. Caller holds mu.
func (r *RTC) clock() time.Time { return r.now().UTC().Add(r.offset) }

// timeReg encodes time register reg (0x00-0x09 or the century) from t in the
// current mode; the alarm registers come from NVRAM. Caller holds mu.
func (r *RTC) timeReg(reg uint8, t time.Time) byte {
	switch reg {
	case regSeconds:
		return r.encode(t.Second())
	case regMinutes:
		return r.encode(t.Minute())
	case regHours:
		return r.encodeHour(t.Hour())
	case regWeekday:
		return r.encode(int(t.Weekday()) + 1)
	case regDay:
		return r.encode(t.Day())
	case regMonth:
		return r.encode(int(t.Month()))
	case regYear:
		return r.encode(t.Year() % 100)
	case CenturyRegister:
		return r.encode(t.Year() / 100 % 100)
	}
	return r.nvram[reg]
}

// isTimeReg reports whether reg is one of the clock's date/time registers.
func isTimeReg(reg uint8) bool {
	switch reg {
	case regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, CenturyRegister:
		return true
	}
	return false
}

// hold latches the running clock into the raw registers. Caller holds mu.
func (r *RTC) hold() {
	t := r.clock()
	for reg := range r.held {
		r.held[reg] = r.timeReg(uint8(reg), t)
	}
	r.heldCentury = r.timeReg(CenturyRegister, t)
}

// release starts the clock from the raw registers, at a second boundary.
// Out-of-range values are normalised (31 February becomes early March)
// rather than rejected. Caller holds mu.
func (r *RTC) release() {
	year := r.decode(r.heldCentury)*100 + r.decode(r.held[regYear])
	t := time.Date(year, time.Month(r.decode(r.held[regMonth])), r.decode(r.held[regDay]),
		r.decodeHour(r.held[regHours]), r.decode(r.held[regMinutes]), r.decode(r.held[regSeconds]), 0, time.UTC)
	r.offset = t.Sub(r.now().UTC())
}

func (r *RTC) encode(v int) byte {
	if r.nvram[regB]&bBinary != 0 {
		return byte(v)
	}
	return byte(v/10%10<<4 | v%10)
}

func (r *RTC) decode(b byte) int {
	if r.nvram[regB]&bBinary != 0 {
		return int(b)
	}
	return int(b>>4)*10 + int(b&0x0f)
}

func (r *RTC) encodeHour(h int) byte {
	if r.nvram[regB]&b24Hour != 0 {
		return r.encode(h)
	}
	h12 := h % 12
	if h12 == 0 {
		h12 = 12
	}
	b := r.encode(h12)
	if h >= 12 {
		b |= hourPM
	}
	return b
}

func (r *RTC) decodeHour(b byte) int {
	if r.nvram[regB]&b24Hour != 0 {
		return r.decode(b)
	}
	h := r.decode(b&^hourPM) % 12
	if b&hourPM != 0 {
		h += 12
	}
	return h
}

// readReg returns CMOS byte reg. Caller holds mu.
func (r *RTC) readReg(reg uint8) byte {
	set := r.nvram[regB]&bSET != 0
	switch {
	case isTimeReg(reg) && set:
		if reg == CenturyRegister {
			return r.heldCentury
		}
		return r.held[reg]
	case isTimeReg(reg):
		return r.timeReg(reg, r.clock())
	case reg == regA:
		v := r.nvram[regA] &^ aUIP
		if !set && v&aDivMask == aDivOn {
			if ns := r.clock().Nanosecond(); time.Duration(ns) >= time.Second-uipWindow {
				v |= aUIP
			}
		}
		return v
	case reg == regC:
		return 0
	}
	return r.nvram[reg]
}

// writeReg stores CMOS byte reg. Caller holds mu.
func (r *RTC) writeReg(reg uint8, v byte) {
	set := r.nvram[regB]&bSET != 0
	switch {
	case isTimeReg(reg) && set:
		if reg == CenturyRegister {
			r.heldCentury = v
		} else {
			r.held[reg] = v
		}
	case reg == regWeekday, reg == regC, reg == regD:
		// Computed from the date, or read-only.
	case isTimeReg(reg):
		r.setField(reg, v)
	case reg == regA:
		r.nvram[regA] = v &^ aUIP
	case reg == regB:
		if v&bSET != 0 {
			v &^= bUIE // setting SET clears UIE
		}
		if !set && v&bSET != 0 {
			r.hold()
		}
		r.nvram[regB] = v
		if set && v&bSET == 0 {
			r.release()
		}
	default:
		r.nvram[reg] = v
	}
}

// setField changes one date/time field of the running clock at once, as a
// write with SET clear does. Out-of-range values are normalised. Caller
// holds mu.
func (r *RTC) setField(reg uint8, v byte) {
	t := r.clock()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	switch reg {
	case regSeconds:
		sec = r.decode(v)
	case regMinutes:
		minute = r.decode(v)
	case regHours:
		hour = r.decodeHour(v)
	case regDay:
		day = r.decode(v)
	case regMonth:
		month = time.Month(r.decode(v))
	case regYear:
		year = year/100*100 + r.decode(v)
	case CenturyRegister:
		year = r.decode(v)*100 + year%100
	}
	nt := time.Date(year, month, day, hour, minute, sec, t.Nanosecond(), time.UTC)
	r.offset = nt.Sub(r.now().UTC())
}
