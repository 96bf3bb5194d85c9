package acpi

import (
	"fmt"

	"github.com/flintvm/flint/boot/acpi/aml"
)

// Fixed resources of the legacy devices the DSDT can describe.
const (
	i8042DataPort    = 0x60
	i8042CommandPort = 0x64
	i8042IRQ         = 1
	pciConfigPort    = 0xCF8
	rtcPort          = 0x70
)

// hidTerm encodes a _HID: an EISA ID ("PNP0501") compressed, an ACPI ID
// ("LNRO0005") as a string.
func hidTerm(hid string) (aml.Term, error) {
	switch len(hid) {
	case 7:
		id := aml.EISAID(hid)
		if _, err := id.Value(); err != nil {
			return nil, err
		}
		return id, nil
	case 8:
		for i := 0; i < 8; i++ {
			c := hid[i]
			hex := (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')
			if i < 4 && !hex && (c < 'A' || c > 'Z') {
				return nil, fmt.Errorf("_HID %q: ACPI IDs start with 4 upper-case letters or digits", hid)
			}
			if i >= 4 && !hex {
				return nil, fmt.Errorf("_HID %q: ACPI IDs end with 4 upper-case hex digits", hid)
			}
		}
		return aml.Str(hid), nil
	}
	return nil, fmt.Errorf("_HID %q: want an EISA ID (PNP0501) or an ACPI ID (LNRO0005)", hid)
}

func buildDSDT(c *Config) ([]byte, error) {
	var top []aml.Term
	if c.SleepControlPort != 0 {
		// \_S5_: SLP_TYPa, SLP_TYPb, reserved, reserved. Hardware-reduced
		// ACPI uses SLP_TYPa only (acpi_hw_extended_sleep).
		top = append(top, aml.Name{Path: `\_S5`, Value: aml.Package{
			aml.Int(S5SleepType), aml.Int(0), aml.Int(0), aml.Int(0)}})
	}
	var sb []aml.Term
	for i := 0; i < c.CPUs; i++ {
		sb = append(sb, aml.Device{Name: fmt.Sprintf("C%03X", i), Body: []aml.Term{
			aml.Name{Path: "_HID", Value: aml.Str("ACPI0007")},
			aml.Name{Path: "_UID", Value: aml.Int(i)},
		}})
	}
	for i, s := range c.Serial {
		sb = append(sb, aml.Device{Name: fmt.Sprintf("COM%d", i+1), Body: []aml.Term{
			aml.Name{Path: "_HID", Value: aml.EISAID("PNP0501")},
			aml.Name{Path: "_UID", Value: aml.Int(i + 1)},
			aml.Name{Path: "_CRS", Value: aml.ResourceTemplate{
				aml.IO{Min: s.Port, Max: s.Port, Align: 1, Length: 8},
				aml.Interrupt{Edge: true, GSIs: []uint32{s.IRQ}},
			}},
		}})
	}
	if c.I8042 {
		sb = append(sb, aml.Device{Name: "PS2K", Body: []aml.Term{
			aml.Name{Path: "_HID", Value: aml.EISAID("PNP0303")},
			aml.Name{Path: "_CRS", Value: aml.ResourceTemplate{
				aml.IO{Min: i8042DataPort, Max: i8042DataPort, Align: 1, Length: 1},
				aml.IO{Min: i8042CommandPort, Max: i8042CommandPort, Align: 1, Length: 1},
				aml.Interrupt{Edge: true, GSIs: []uint32{i8042IRQ}},
			}},
		}})
	}
	if c.RTC {
		// PNP0B00 lets Linux's rtc_cmos bind through PNP; without it, it
		// falls back to a platform device that a hardware-reduced FADT
		// leaves without the IRQ it insists on, and the probe fails. The
		// RTC raises no interrupt, so none is described: Linux then runs
		// it without alarms.
		sb = append(sb, aml.Device{Name: "RTC0", Body: []aml.Term{
			aml.Name{Path: "_HID", Value: aml.EISAID("PNP0B00")},
			aml.Name{Path: "_CRS", Value: aml.ResourceTemplate{
				aml.IO{Min: rtcPort, Max: rtcPort, Align: 1, Length: 2},
			}},
		}})
	}
	for i, d := range c.Devices {
		hid, err := hidTerm(d.HID)
		if err != nil {
			return nil, configErr("device %d: %v", i, err)
		}
		var window aml.Resource = aml.Memory32Fixed{Base: uint32(d.MMIOBase), Length: uint32(d.MMIOSize)}
		if d.MMIOBase+d.MMIOSize > 1<<32 {
			window = aml.QWordMemory{Min: d.MMIOBase, Max: d.MMIOBase + d.MMIOSize - 1, Consumer: true}
		}
		sb = append(sb, aml.Device{Name: fmt.Sprintf("V%03X", i), Body: []aml.Term{
			aml.Name{Path: "_HID", Value: hid},
			aml.Name{Path: "_UID", Value: aml.Int(d.UID)},
			aml.Name{Path: "_CRS", Value: aml.ResourceTemplate{
				window,
				aml.Interrupt{Edge: !d.LevelTriggered, GSIs: []uint32{d.IRQ}},
			}},
		}})
	}
	if c.PCI != nil {
		sb = append(sb, pciHostBridge(c.PCI))
	}
	sb = append(sb, c.Extra...)
	top = append(top, aml.Scope{Path: `\_SB`, Body: sb})
	body, err := aml.Encode(top...)
	if err != nil {
		return nil, configErr("DSDT: %v", err)
	}
	return table("DSDT", dsdtRevision, "FLINTDSD", body), nil
}

// pciHostBridge describes PCI segment 0, bus 0..LastBus, reached through
// configuration mechanism #1.
func pciHostBridge(p *PCIHostBridge) aml.Term {
	crs := aml.ResourceTemplate{
		aml.WordBusNumber{Min: 0, Max: uint16(p.LastBus)},
		aml.IO{Min: pciConfigPort, Max: pciConfigPort, Align: 1, Length: 8},
	}
	for _, w := range p.IO {
		crs = append(crs, aml.WordIO{Min: w.First, Max: w.Last})
	}
	if w := p.MMIO32; w.Size != 0 {
		crs = append(crs, aml.DWordMemory{Min: uint32(w.Start), Max: uint32(w.End() - 1)})
	}
	if w := p.MMIO64; w.Size != 0 {
		crs = append(crs, aml.QWordMemory{Min: w.Start, Max: w.End() - 1, Prefetchable: true})
	}
	body := []aml.Term{
		aml.Name{Path: "_HID", Value: aml.EISAID("PNP0A03")},
		aml.Name{Path: "_UID", Value: aml.Int(0)},
		aml.Name{Path: "_SEG", Value: aml.Int(0)},
		aml.Name{Path: "_BBN", Value: aml.Int(0)},
		aml.Name{Path: "_CRS", Value: crs},
	}
	if len(p.INTx) > 0 {
		prt := make(aml.Package, 0, len(p.INTx))
		for _, r := range p.INTx {
			// {Address: slot<<16 | 0xFFFF (any function), Pin, Source 0
			// (hard-wired to a GSI), Source index = the GSI}.
			prt = append(prt, aml.Package{
				aml.Int(uint64(r.Slot)<<16 | 0xffff), aml.Int(r.Pin), aml.Int(0), aml.Int(r.GSI),
			})
		}
		body = append(body, aml.Name{Path: "_PRT", Value: prt})
	}
	return aml.Device{Name: "PCI0", Body: body}
}
