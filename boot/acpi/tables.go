package acpi

import "encoding/binary"

// Identification written into every table header.
const (
	OEMID           = "FLINT "
	CreatorID       = "FLNT"
	OEMRevision     = 1
	CreatorRevision = 1
)

// Header sizes and revisions.
const (
	headerSize   = 36
	rsdpSize     = 36
	fadtSize     = 276 // ACPI 6.0 - 6.5
	fadtRevision = 6
	fadtMinor    = 5
	madtRevision = 5
	xsdtRevision = 1
	dsdtRevision = 2 // 64-bit AML integers
)

// FADT fixed feature flags (ACPI 6.x, table 5.10).
const (
	fadtPwrButton     = 1 << 4
	fadtSlpButton     = 1 << 5
	fadtResetRegSup   = 1 << 10
	fadtHWReducedACPI = 1 << 20
)

// IA-PC boot architecture flags (ACPI 6.x, table 5.11).
const (
	iapcLegacyDevices = 1 << 0
	iapc8042          = 1 << 1
	iapcVGANotPresent = 1 << 2
	iapcMSINotSupp    = 1 << 3 // never set: virtio-pci uses MSI-X
	iapcPCIeASPMCtrl  = 1 << 4
	iapcNoCMOSRTC     = 1 << 5
)

// MADT entry types and flags.
const (
	madtPCATCompat      = 1 << 0
	madtTypeLocalAPIC   = 0
	madtTypeIOAPIC      = 1
	madtTypeIntOverride = 2
	madtTypeLAPICNMI    = 4
	lapicEnabled        = 1 << 0
)

var le = binary.LittleEndian

// checksum returns the byte that makes b sum to zero.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// table makes a System Description Table: a 36-byte header with signature
// sig followed by body, length and checksum filled in.
func table(sig string, rev byte, oemTable string, body []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(body))
	copy(b[0:4], sig)
	le.PutUint32(b[4:], uint32(headerSize+len(body)))
	b[8] = rev
	copy(b[10:16], OEMID)
	copy(b[16:24], oemTable)
	le.PutUint32(b[24:], OEMRevision)
	copy(b[28:32], CreatorID)
	le.PutUint32(b[32:], CreatorRevision)
	b = append(b, body...)
	b[9] = checksum(b)
	return b
}

func buildRSDP(xsdt uint64) []byte {
	b := make([]byte, rsdpSize)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], OEMID)
	b[15] = 2 // ACPI 2.0+: XSDT
	// RsdtAddress (16) stays 0: OSes use the XSDT when revision >= 2.
	le.PutUint32(b[20:], rsdpSize)
	le.PutUint64(b[24:], xsdt)
	b[8] = checksum(b[:20])
	b[32] = checksum(b)
	return b
}

func buildXSDT(entries []uint64) []byte {
	body := make([]byte, 8*len(entries))
	for i, e := range entries {
		le.PutUint64(body[8*i:], e)
	}
	return table("XSDT", xsdtRevision, "FLINTXSD", body)
}

// gasIO8 fills b with a Generic Address Structure for an 8-bit System I/O
// register at port; port 0 leaves it all zero (register absent).
func gasIO8(b []byte, port uint16) {
	if port == 0 {
		return
	}
	b[0] = 1 // System I/O
	b[1] = 8 // bit width
	b[2] = 0 // bit offset
	b[3] = 1 // byte access
	le.PutUint64(b[4:], uint64(port))
}

// rtcCenturyIndex is the CMOS register that holds the century (BCD), as
// devices/cmos implements it.
const rtcCenturyIndex = 0x32

func buildFADT(c *Config, dsdt uint64) []byte {
	f := make([]byte, fadtSize)
	// Offsets below are from the start of the table (header included).
	le.PutUint32(f[40:], uint32(dsdt)) // DSDT (same as X_DSDT; below 4 GiB)
	// Preferred_PM_Profile (45) 0: unspecified. SCI_INT, SMI_CMD and all
	// PM1/PM2/PM timer/GPE blocks stay 0: hardware-reduced ACPI.
	iapc := uint16(iapcVGANotPresent | iapcPCIeASPMCtrl)
	if c.I8042 {
		iapc |= iapc8042
	}
	if c.I8042 || len(c.Serial) > 0 {
		iapc |= iapcLegacyDevices
	}
	if !c.RTC {
		iapc |= iapcNoCMOSRTC
	} else {
		f[108] = rtcCenturyIndex // CENTURY: the CMOS byte holding the century
	}
	le.PutUint16(f[109:], iapc)
	flags := uint32(fadtHWReducedACPI | fadtPwrButton | fadtSlpButton)
	if c.ResetPort != 0 {
		flags |= fadtResetRegSup
		gasIO8(f[116:128], c.ResetPort)
		f[128] = c.ResetValue
	}
	le.PutUint32(f[112:], flags)
	f[131] = fadtMinor
	le.PutUint64(f[140:], dsdt) // X_DSDT
	gasIO8(f[244:256], c.SleepControlPort)
	gasIO8(f[256:268], c.SleepStatusPort)
	copy(f[268:276], "FLINTVMM") // Hypervisor Vendor Identity
	return table("FACP", fadtRevision, "FLINTFAC", f[headerSize:])
}

func buildMADT(c *Config) []byte {
	body := make([]byte, 8, 8+8*c.CPUs+12+10+6)
	le.PutUint32(body[0:], LocalAPICAddr)
	le.PutUint32(body[4:], madtPCATCompat) // KVM's irqchip includes dual 8259s
	for i := 0; i < c.CPUs; i++ {
		// Processor Local APIC: type, length, ACPI processor UID, APIC ID, flags.
		e := []byte{madtTypeLocalAPIC, 8, byte(i), byte(i), 0, 0, 0, 0}
		le.PutUint32(e[4:], lapicEnabled)
		body = append(body, e...)
	}
	ioapic := make([]byte, 12)
	ioapic[0], ioapic[1], ioapic[2] = madtTypeIOAPIC, 12, IOAPICID
	le.PutUint32(ioapic[4:], IOAPICAddr)
	le.PutUint32(ioapic[8:], 0) // GSI base
	body = append(body, ioapic...)
	// ISA IRQ 0 (the PIT) is wired to IOAPIC pin 2; flags 0 = bus defaults
	// (edge, active high).
	iso := make([]byte, 10)
	iso[0], iso[1], iso[2], iso[3] = madtTypeIntOverride, 10, 0, 0
	le.PutUint32(iso[4:], 2)
	body = append(body, iso...)
	// LINT1 of every processor (UID 0xFF) is the NMI input.
	body = append(body, madtTypeLAPICNMI, 6, 0xff, 0, 0, 1)
	return table("APIC", madtRevision, "FLINTAPC", body)
}
