package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/flintvm/flint/mem"
)

// fullConfig exercises every table feature.
func fullConfig(cpus int) Config {
	return Config{
		CPUs:             cpus,
		SleepControlPort: 0x600, SleepStatusPort: 0x601,
		ResetPort: 0x64, ResetValue: 0xfe,
		I8042:  true,
		Serial: []SerialPort{{Port: 0x3f8, IRQ: 4}, {Port: 0x2f8, IRQ: 3}},
		Devices: []Device{
			{HID: "LNRO0005", UID: 0, MMIOBase: 0xd0000000, MMIOSize: 0x1000, IRQ: 5},
			{HID: "LNRO0005", UID: 1, MMIOBase: 0xd0001000, MMIOSize: 0x1000, IRQ: 6, LevelTriggered: true},
			{HID: "PNP0C0F", UID: 0, MMIOBase: 0x10_0000_0000, MMIOSize: 0x2000, IRQ: 7},
		},
		PCI: &PCIHostBridge{
			IO:     []PortRange{{First: 0x1000, Last: 0xffff}},
			MMIO32: mem.Range{Start: 0xc0000000, Size: 0x10000000},
			MMIO64: mem.Range{Start: 0x80_0000_0000, Size: 0x40_0000_0000},
			INTx:   []PCIInterrupt{{Slot: 1, Pin: 0, GSI: 16}, {Slot: 2, Pin: 1, GSI: 17}},
		},
	}
}

type parsed struct {
	tables map[string][]byte // by signature
	addrs  map[string]uint64
}

// parseAll walks RSDP -> XSDT -> tables -> DSDT in img (placed at
// TableStart), checking every signature, length and checksum.
func parseAll(t *testing.T, img []byte) parsed {
	t.Helper()
	le := binary.LittleEndian
	at := func(addr uint64, n uint64) []byte {
		if addr < TableStart || addr+n > TableStart+uint64(len(img)) {
			t.Fatalf("address %#x+%d outside the table image", addr, n)
		}
		return img[addr-TableStart : addr-TableStart+n]
	}
	sum := func(b []byte) (s byte) {
		for _, c := range b {
			s += c
		}
		return s
	}
	rsdp := at(RSDPAddr, 36)
	if string(rsdp[:8]) != "RSD PTR " || rsdp[15] != 2 || le.Uint32(rsdp[20:]) != 36 {
		t.Fatalf("bad RSDP % x", rsdp)
	}
	if sum(rsdp[:20]) != 0 || sum(rsdp) != 0 {
		t.Fatal("RSDP checksums wrong")
	}
	p := parsed{tables: map[string][]byte{}, addrs: map[string]uint64{}}
	getTable := func(addr uint64, sig string) []byte {
		hdr := at(addr, 36)
		if string(hdr[:4]) != sig {
			t.Fatalf("table at %#x is %q, want %q", addr, hdr[:4], sig)
		}
		tb := at(addr, uint64(le.Uint32(hdr[4:])))
		if sum(tb) != 0 {
			t.Fatalf("%s checksum wrong", sig)
		}
		if string(tb[10:16]) != OEMID || addr%8 != 0 {
			t.Fatalf("%s: OEM ID %q, address %#x", sig, tb[10:16], addr)
		}
		p.tables[sig], p.addrs[sig] = tb, addr
		return tb
	}
	xsdt := getTable(le.Uint64(rsdp[24:]), "XSDT")
	if (len(xsdt)-36)%8 != 0 {
		t.Fatalf("XSDT length %d", len(xsdt))
	}
	for off := 36; off < len(xsdt); off += 8 {
		addr := le.Uint64(xsdt[off:])
		sig := string(at(addr, 4))
		getTable(addr, sig)
	}
	fadt := p.tables["FACP"]
	if fadt == nil || p.tables["APIC"] == nil {
		t.Fatalf("XSDT lacks FACP or APIC: %v", p.addrs)
	}
	if len(fadt) != 276 || fadt[8] != 6 {
		t.Fatalf("FADT length %d revision %d", len(fadt), fadt[8])
	}
	if le.Uint64(fadt[140:]) != uint64(le.Uint32(fadt[40:])) {
		t.Fatal("FADT DSDT and X_DSDT differ")
	}
	getTable(le.Uint64(fadt[140:]), "DSDT")
	return p
}

func TestTablesParseBack(t *testing.T) {
	tb, err := Build(fullConfig(4))
	if err != nil {
		t.Fatal(err)
	}
	p := parseAll(t, tb.Image)
	if p.addrs["FACP"] != tb.FADT || p.addrs["APIC"] != tb.MADT || p.addrs["DSDT"] != tb.DSDT || p.addrs["XSDT"] != tb.XSDT {
		t.Fatalf("addresses %v vs %+v", p.addrs, tb)
	}
	le := binary.LittleEndian
	f := p.tables["FACP"]
	flags := le.Uint32(f[112:])
	if flags&fadtHWReducedACPI == 0 || flags&fadtResetRegSup == 0 {
		t.Errorf("FADT flags %#x", flags)
	}
	iapc := le.Uint16(f[109:])
	if iapc&iapcVGANotPresent == 0 || iapc&iapc8042 == 0 || iapc&iapcMSINotSupp != 0 || iapc&iapcNoCMOSRTC == 0 {
		t.Errorf("IAPC_BOOT_ARCH %#x", iapc)
	}
	gas := func(off int) (byte, byte, uint64) { return f[off], f[off+1], le.Uint64(f[off+4:]) }
	for _, c := range []struct {
		off  int
		port uint64
	}{{116, 0x64}, {244, 0x600}, {256, 0x601}} {
		if sp, w, a := gas(c.off); sp != 1 || w != 8 || a != c.port {
			t.Errorf("GAS at %d: space %d width %d addr %#x, want I/O 8-bit %#x", c.off, sp, w, a, c.port)
		}
	}
	if f[128] != 0xfe {
		t.Errorf("RESET_VALUE %#x", f[128])
	}
	dsdt := p.tables["DSDT"]
	for _, want := range [][]byte{
		{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0}, // Name(\_S5, Package{5,0,0,0})
		[]byte("\x0dLNRO0005\x00"), []byte("\x0dACPI0007\x00"), []byte("PCI0"), []byte("_PRT"), []byte("COM2"), []byte("PS2K"),
	} {
		if !bytes.Contains(dsdt, want) {
			t.Errorf("DSDT lacks % x", want)
		}
	}
}

func TestMADTPerCPU(t *testing.T) {
	le := binary.LittleEndian
	for _, cpus := range []int{1, 2, 7, 64, MaxCPUs} {
		tb, err := Build(Config{CPUs: cpus})
		if err != nil {
			t.Fatal(err)
		}
		madt := parseAll(t, tb.Image).tables["APIC"]
		if le.Uint32(madt[36:]) != LocalAPICAddr || le.Uint32(madt[40:])&1 == 0 {
			t.Fatalf("MADT header fields % x", madt[36:44])
		}
		var lapics, ioapics, overrides, nmis int
		for off := 44; off < len(madt); {
			typ, n := madt[off], int(madt[off+1])
			if n < 2 || off+n > len(madt) {
				t.Fatalf("bad MADT entry length %d at %d", n, off)
			}
			e := madt[off : off+n]
			switch typ {
			case madtTypeLocalAPIC:
				if n != 8 || int(e[2]) != lapics || int(e[3]) != lapics || le.Uint32(e[4:])&1 != 1 {
					t.Fatalf("LAPIC entry %d: % x", lapics, e)
				}
				lapics++
			case madtTypeIOAPIC:
				if n != 12 || e[2] != IOAPICID || le.Uint32(e[4:]) != IOAPICAddr || le.Uint32(e[8:]) != 0 {
					t.Fatalf("IOAPIC entry % x", e)
				}
				ioapics++
			case madtTypeIntOverride:
				if n != 10 || e[2] != 0 || e[3] != 0 || le.Uint32(e[4:]) != 2 {
					t.Fatalf("override % x", e)
				}
				overrides++
			case madtTypeLAPICNMI:
				nmis++
			default:
				t.Fatalf("unexpected MADT entry type %d", typ)
			}
			off += n
		}
		if lapics != cpus || ioapics != 1 || overrides != 1 || nmis != 1 {
			t.Fatalf("%d CPUs: %d LAPICs, %d IOAPICs, %d overrides, %d NMIs", cpus, lapics, ioapics, overrides, nmis)
		}
	}
}

func TestMinimalConfigHasNoSleepOrReset(t *testing.T) {
	tb, err := Build(Config{CPUs: 1, RTC: true})
	if err != nil {
		t.Fatal(err)
	}
	p := parseAll(t, tb.Image)
	f := p.tables["FACP"]
	if binary.LittleEndian.Uint32(f[112:])&fadtResetRegSup != 0 || f[244] != 0 || f[256] != 0 {
		t.Error("reset or sleep registers present without ports")
	}
	if iapc := binary.LittleEndian.Uint16(f[109:]); iapc&(iapc8042|iapcNoCMOSRTC|iapcLegacyDevices) != 0 {
		t.Errorf("IAPC_BOOT_ARCH %#x for a machine without legacy devices", iapc)
	}
	if bytes.Contains(p.tables["DSDT"], []byte("_S5_")) {
		t.Error("_S5_ without sleep registers")
	}
}

func TestConfigErrors(t *testing.T) {
	mod := func(f func(c *Config)) Config { c := fullConfig(2); f(&c); return c }
	cases := map[string]Config{
		"0 vCPUs":               mod(func(c *Config) { c.CPUs = 0 }),
		"255 vCPUs":             mod(func(c *Config) { c.CPUs = MaxCPUs + 1 }),
		"status port":           mod(func(c *Config) { c.SleepStatusPort = 0 }),
		"share port":            mod(func(c *Config) { c.SleepStatusPort = c.SleepControlPort }),
		"5 serial ports":        mod(func(c *Config) { c.Serial = make([]SerialPort, 5) }),
		"COM1 IRQ 24":           mod(func(c *Config) { c.Serial[0].IRQ = 24 }),
		`_HID "virtio"`:         mod(func(c *Config) { c.Devices[0].HID = "virtio" }),
		`_HID "lnro0005"`:       mod(func(c *Config) { c.Devices[0].HID = "lnro0005" }),
		"_UID 0 repeats":        mod(func(c *Config) { c.Devices[1].UID = 0 }),
		"is empty":              mod(func(c *Config) { c.Devices[0].MMIOSize = 0 }),
		"wraps":                 mod(func(c *Config) { c.Devices[0].MMIOBase = ^uint64(0) }),
		"IRQ 24":                mod(func(c *Config) { c.Devices[0].IRQ = 24 }),
		"overlaps device 0":     mod(func(c *Config) { c.Devices[1].MMIOBase = 0xd0000800 }),
		"below the MMIO hole":   mod(func(c *Config) { c.Devices[0].MMIOBase = 0x1000 }),
		"overlaps the IOAPIC":   mod(func(c *Config) { c.Devices[0].MMIOBase = uint64(IOAPICAddr) }),
		"config ports":          mod(func(c *Config) { c.PCI.IO[0].First = 0 }),
		"inverted":              mod(func(c *Config) { c.PCI.IO[0].Last = 0 }),
		"end below 4 GiB":       mod(func(c *Config) { c.PCI.MMIO32.Size = 0x50000000 }),
		"lie above 4 GiB":       mod(func(c *Config) { c.PCI.MMIO64.Start = 0xe0000000 }),
		"slot 32":               mod(func(c *Config) { c.PCI.INTx[0].Slot = 32 }),
		"routed twice":          mod(func(c *Config) { c.PCI.INTx[1] = c.PCI.INTx[0] }),
		"PCI slot 1 pin 0: GSI": mod(func(c *Config) { c.PCI.INTx[0].GSI = 30 }),
	}
	for want, c := range cases {
		_, err := Build(c)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
}

func TestWriteClearsArea(t *testing.T) {
	m, err := mem.New(2 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	junk, _ := m.Slice(TableStart, TableEnd-TableStart)
	for i := range junk {
		junk[i] = 0xaa
	}
	tb, err := Write(m, fullConfig(2))
	if err != nil {
		t.Fatal(err)
	}
	area, _ := m.Slice(TableStart, TableEnd-TableStart)
	if !bytes.Equal(area[:len(tb.Image)], tb.Image) || area[len(tb.Image)] != 0 || area[len(area)-1] != 0 {
		t.Fatal("tables not written or stale bytes left")
	}
	small, _ := mem.FromRegions(mem.NewRegion(0, make([]byte, 0x80000)))
	if _, err := Write(small, fullConfig(1)); err == nil {
		t.Fatal("Write to memory without the BIOS area succeeded")
	}
}
