// Package acpi builds the ACPI tables that describe a Flint machine to the
// guest: RSDP (revision 2), XSDT, FADT (ACPI 6.x, hardware-reduced), MADT
// and a DSDT generated with package aml. The tables live in the legacy BIOS
// area [TableStart, TableEnd), which boot's e820 map marks reserved, so an
// OS finds the RSDP both through boot_params.acpi_rsdp_addr and by the
// legacy scan of 0xE0000-0xFFFFF.
//
// The machine described: one vCPU per Processor Local APIC (APIC ID and
// ACPI processor UID = vCPU index), the local APIC at LocalAPICAddr, one
// 24-pin IOAPIC (ID 0, GSI base 0) at IOAPICAddr as KVM's in-kernel irqchip
// provides, ISA IRQ 0 routed to GSI 2, a power-off register pair
// (SLEEP_CONTROL_REG / SLEEP_STATUS_REG) and a reset register in I/O space,
// and in the DSDT: \_S5_, processor devices, legacy COM ports, the i8042,
// caller-supplied MMIO devices (virtio-mmio: HID "LNRO0005") and an
// optional PCI host bridge (PNP0A03, config mechanism #1 at 0xCF8) with a
// _PRT routing INTx pins to GSIs.
//
// Call sequence (vmm): after guest memory exists and before the first
// KVM_RUN, call boot.Load with Config.ACPI set (it calls Write and stores
// the RSDP address in the zero page), or call Write directly and put
// Tables.RSDP into boot_params yourself. Poweroff arrives as an 8-bit write
// of SleepEnable|S5SleepType<<SleepTypeShift to SleepControlPort; reset as
// ResetValue written to ResetPort.
//
// acpi imports only mem and aml; it knows nothing of KVM.
package acpi

import (
	"errors"
	"fmt"

	"github.com/flintvm/flint/boot/acpi/aml"
	"github.com/flintvm/flint/mem"
)

// Guest-physical addresses used by the tables.
const (
	// TableStart and TableEnd bound the area the tables are written to.
	TableStart uint64 = 0xE0000
	TableEnd   uint64 = 0x100000
	// RSDPAddr is where the RSDP goes (16-byte aligned, inside the legacy
	// scan range).
	RSDPAddr = TableStart

	// LocalAPICAddr is the local APIC base every vCPU sees.
	LocalAPICAddr uint32 = 0xFEE00000
	// IOAPICAddr, IOAPICID and IOAPICPins describe the one IOAPIC (KVM's
	// in-kernel IOAPIC has 24 pins and resets to ID 0).
	IOAPICAddr uint32 = 0xFEC00000
	IOAPICID          = 0
	IOAPICPins        = 24

	// MaxCPUs is the most vCPUs the MADT describes (xAPIC IDs 0-253).
	MaxCPUs = 254
)

// Sleep register encoding (ACPI 6.x, 4.8.3.7): the guest writes
// SleepEnable|type<<SleepTypeShift to the sleep control register, and polls
// the sleep status register for WakeStatus after clearing it.
const (
	S5SleepType    = 5 // SLP_TYP for S5 (soft off), from \_S5_ in the DSDT
	SleepTypeShift = 2
	SleepTypeMask  = 0x7 << SleepTypeShift
	SleepEnable    = 1 << 5
	WakeStatus     = 1 << 7
)

// ErrConfig marks invalid ACPI configurations (errors.Is).
var ErrConfig = errors.New("invalid ACPI configuration")

func configErr(format string, args ...any) error {
	return fmt.Errorf("acpi: %w: "+format, append([]any{ErrConfig}, args...)...)
}

// Config describes the machine the tables announce.
type Config struct {
	// CPUs is the number of vCPUs, 1 to MaxCPUs.
	CPUs int
	// SleepControlPort and SleepStatusPort are the I/O ports of the FADT's
	// 8-bit SLEEP_CONTROL_REG and SLEEP_STATUS_REG (e.g. 0x600 and 0x601).
	// Both zero: no sleep registers and no \_S5_, so the guest cannot power
	// off through ACPI.
	SleepControlPort, SleepStatusPort uint16
	// ResetPort and ResetValue form the FADT's RESET_REG (I/O space, 8-bit),
	// e.g. 0x64 and 0xFE. ResetPort 0: no reset register.
	ResetPort  uint16
	ResetValue uint8 // the byte the guest writes to ResetPort to reset
	// I8042 announces a PS/2 controller at ports 0x60/0x64 (IRQ 1): sets the
	// FADT 8042 flag and describes a PNP0303 keyboard in the DSDT.
	I8042 bool
	// RTC announces a CMOS RTC at 0x70/0x71; when false the FADT says
	// "CMOS RTC not present" and Linux never touches those ports.
	RTC bool
	// Serial lists up to 4 16550 UARTs (COM1..COM4 in that order).
	Serial []SerialPort
	// Devices lists MMIO platform devices, virtio-mmio among them.
	Devices []Device
	// PCI describes a PCI host bridge, nil for none. Linux with ACPI finds
	// PCI root buses only through the DSDT.
	PCI *PCIHostBridge
	// Extra holds AML terms appended inside \_SB after everything else.
	Extra []aml.Term
}

// SerialPort is a 16550 UART: 8 I/O ports at Port, edge-triggered IRQ.
type SerialPort struct {
	Port uint16 // first of the 8 I/O ports (0x3f8 for COM1)
	IRQ  uint32 // GSI (4 for COM1)
}

// Device is an MMIO platform device in the DSDT.
type Device struct {
	// HID is an ACPI ID ("LNRO0005": 4 upper-case letters or digits and
	// 4 hex digits), encoded as a string, or an EISA ID ("PNP0501"),
	// encoded compressed.
	HID string
	// UID tells devices with the same HID apart; it must be unique per HID.
	UID uint32
	// MMIOBase and MMIOSize give the register window.
	MMIOBase, MMIOSize uint64
	// IRQ is the GSI (IOAPIC pin, below IOAPICPins).
	IRQ uint32
	// LevelTriggered selects a level-triggered interrupt; otherwise edge.
	// Both are active high.
	LevelTriggered bool
}

// PortRange is the I/O port range [First, Last].
type PortRange struct {
	First, Last uint16 // inclusive bounds
}

// PCIHostBridge describes PCI segment 0 behind config mechanism #1
// (ports 0xCF8-0xCFF).
type PCIHostBridge struct {
	// LastBus is the highest bus number decoded (0: bus 0 only).
	LastBus uint8
	// IO lists I/O port windows forwarded to PCI devices (for I/O BARs),
	// e.g. {0x1000, 0xFFFF}; they must not cover 0xCF8-0xCFF. May be empty.
	IO []PortRange
	// MMIO32 is the 32-bit memory window for BARs (inside the MMIO hole,
	// clear of the IOAPIC and local APIC pages). Size 0: none.
	MMIO32 mem.Range
	// MMIO64 is an optional 64-bit prefetchable window above RAM.
	MMIO64 mem.Range
	// INTx routes a device pin to a GSI (level triggered, active low per
	// the ACPI _PRT rules; KVM's IOAPIC ignores the polarity bit).
	INTx []PCIInterrupt
}

// PCIInterrupt routes interrupt pin Pin (0 = INTA .. 3 = INTD) of the
// device in slot Slot (0-31) on bus 0 to global system interrupt GSI.
type PCIInterrupt struct {
	Slot uint8  // device number on bus 0, 0-31
	Pin  uint8  // 0 = INTA, 1 = INTB, 2 = INTC, 3 = INTD
	GSI  uint32 // IOAPIC input, below IOAPICPins
}

// Tables is what Build produced: the image for [TableStart, ...) and the
// guest address of each table.
type Tables struct {
	// Guest-physical addresses of the tables; RSDP goes into
	// boot_params.acpi_rsdp_addr.
	RSDP, XSDT, FADT, MADT, DSDT uint64
	// Image holds the bytes to place at TableStart.
	Image []byte
}

// Write builds the tables for cfg and copies them into guest memory at
// TableStart. The range [TableStart, TableEnd) must be guest RAM.
func Write(m *mem.Memory, cfg Config) (*Tables, error) {
	t, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	return t, t.Write(m)
}

// Write copies the built tables into guest memory at TableStart and zeroes
// the rest of [TableStart, TableEnd), so stale bytes never look like a table.
func (t *Tables) Write(m *mem.Memory) error {
	area, err := m.Slice(TableStart, TableEnd-TableStart)
	if err != nil {
		return fmt.Errorf("acpi: table area [%#x, %#x) is not guest RAM: %w", TableStart, TableEnd, err)
	}
	clear(area)
	copy(area, t.Image)
	return nil
}

// Build lays out all tables for cfg without touching guest memory.
func Build(cfg Config) (*Tables, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dsdt, err := buildDSDT(&cfg)
	if err != nil {
		return nil, err
	}
	t := &Tables{RSDP: RSDPAddr}
	img := make([]byte, 64) // RSDP, filled in last
	place := func(b []byte) uint64 {
		for len(img)%16 != 0 {
			img = append(img, 0)
		}
		addr := TableStart + uint64(len(img))
		img = append(img, b...)
		return addr
	}
	t.DSDT = place(dsdt)
	t.FADT = place(buildFADT(&cfg, t.DSDT))
	t.MADT = place(buildMADT(&cfg))
	t.XSDT = place(buildXSDT([]uint64{t.FADT, t.MADT}))
	copy(img, buildRSDP(t.XSDT))
	if uint64(len(img)) > TableEnd-TableStart {
		return nil, configErr("tables need %d bytes, only %d fit in [%#x, %#x)",
			len(img), TableEnd-TableStart, TableStart, TableEnd)
	}
	t.Image = img
	return t, nil
}

func (c *Config) validate() error {
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return configErr("%d vCPUs: want 1 to %d", c.CPUs, MaxCPUs)
	}
	if (c.SleepControlPort == 0) != (c.SleepStatusPort == 0) {
		return configErr("sleep control port %#x and status port %#x: set both or neither",
			c.SleepControlPort, c.SleepStatusPort)
	}
	if c.SleepControlPort != 0 && c.SleepControlPort == c.SleepStatusPort {
		return configErr("sleep control and status registers share port %#x", c.SleepControlPort)
	}
	if len(c.Serial) > 4 {
		return configErr("%d serial ports: at most 4 (COM1-COM4)", len(c.Serial))
	}
	for i, s := range c.Serial {
		if s.IRQ >= IOAPICPins {
			return configErr("COM%d IRQ %d: the IOAPIC has pins 0-%d", i+1, s.IRQ, IOAPICPins-1)
		}
		if s.Port > 0xfff8 {
			return configErr("COM%d at port %#x: 8 ports do not fit below 0x10000", i+1, s.Port)
		}
	}
	var ranges []namedRange
	uids := map[string]map[uint32]bool{}
	for i, d := range c.Devices {
		if _, err := hidTerm(d.HID); err != nil {
			return configErr("device %d: %v", i, err)
		}
		if uids[d.HID] == nil {
			uids[d.HID] = map[uint32]bool{}
		}
		if uids[d.HID][d.UID] {
			return configErr("device %d: _UID %d repeats for _HID %q", i, d.UID, d.HID)
		}
		uids[d.HID][d.UID] = true
		if d.MMIOSize == 0 || d.MMIOBase+d.MMIOSize < d.MMIOBase {
			return configErr("device %d (%s): MMIO [%#x, +%#x) is empty or wraps", i, d.HID, d.MMIOBase, d.MMIOSize)
		}
		if d.IRQ >= IOAPICPins {
			return configErr("device %d (%s): IRQ %d, the IOAPIC has pins 0-%d", i, d.HID, d.IRQ, IOAPICPins-1)
		}
		ranges = append(ranges, namedRange{fmt.Sprintf("device %d (%s)", i, d.HID), mem.Range{Start: d.MMIOBase, Size: d.MMIOSize}})
	}
	if p := c.PCI; p != nil {
		if err := p.validate(); err != nil {
			return err
		}
		ranges = append(ranges, namedRange{"the PCI 32-bit window", p.MMIO32}, namedRange{"the PCI 64-bit window", p.MMIO64})
	}
	return checkOverlaps(ranges)
}

func (p *PCIHostBridge) validate() error {
	for _, r := range p.IO {
		if r.Last < r.First {
			return configErr("PCI I/O window [%#x, %#x] is inverted", r.First, r.Last)
		}
		if r.First <= 0xcff && r.Last >= 0xcf8 {
			return configErr("PCI I/O window [%#x, %#x] covers the config ports 0xcf8-0xcff", r.First, r.Last)
		}
	}
	if w := p.MMIO32; w.Size != 0 && (w.End() > 1<<32 || w.End() < w.Start) {
		return configErr("PCI 32-bit window [%#x, +%#x) must end below 4 GiB", w.Start, w.Size)
	}
	if w := p.MMIO64; w.Size != 0 && (w.Start < 1<<32 || w.End() < w.Start) {
		return configErr("PCI 64-bit window [%#x, +%#x) must lie above 4 GiB", w.Start, w.Size)
	}
	seen := map[[2]uint8]bool{}
	for _, r := range p.INTx {
		if r.Slot > 31 || r.Pin > 3 {
			return configErr("PCI interrupt slot %d pin %d: want slot 0-31, pin 0-3 (INTA-INTD)", r.Slot, r.Pin)
		}
		if r.GSI >= IOAPICPins {
			return configErr("PCI slot %d pin %d: GSI %d, the IOAPIC has pins 0-%d", r.Slot, r.Pin, r.GSI, IOAPICPins-1)
		}
		if seen[[2]uint8{r.Slot, r.Pin}] {
			return configErr("PCI slot %d pin %d is routed twice", r.Slot, r.Pin)
		}
		seen[[2]uint8{r.Slot, r.Pin}] = true
	}
	if len(p.INTx) > 255 {
		return configErr("%d PCI interrupt routes, at most 255", len(p.INTx))
	}
	return nil
}

type namedRange struct {
	name string
	r    mem.Range
}

// checkOverlaps rejects MMIO ranges that overlap each other, lie below the
// MMIO hole (where RAM is), or cover the IOAPIC or local APIC page. Empty
// ranges are ignored.
func checkOverlaps(rs []namedRange) error {
	all := append([]namedRange{
		{"the IOAPIC", mem.Range{Start: uint64(IOAPICAddr), Size: 0x1000}},
		{"the local APIC", mem.Range{Start: uint64(LocalAPICAddr), Size: 0x1000}},
	}, rs...)
	for i := 2; i < len(all); i++ {
		a := all[i]
		if a.r.Size == 0 {
			continue
		}
		if a.r.Start < mem.MMIOHoleStart {
			return configErr("%s at [%#x, %#x) lies below the MMIO hole at %#x", a.name, a.r.Start, a.r.End(), mem.MMIOHoleStart)
		}
		for _, b := range all[:i] {
			if b.r.Size != 0 && a.r.Start < b.r.End() && b.r.Start < a.r.End() {
				return configErr("%s at [%#x, %#x) overlaps %s at [%#x, %#x)", a.name, a.r.Start, a.r.End(), b.name, b.r.Start, b.r.End())
			}
		}
	}
	return nil
}
