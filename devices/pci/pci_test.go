package pci

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
)

func outl(b *Bus, port uint64, v uint32) {
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], v)
	b.Write(port-ConfigAddressPort, d[:])
}

func inl(b *Bus, port uint64) uint32 {
	var d [4]byte
	b.Read(port-ConfigAddressPort, d[:])
	return binary.LittleEndian.Uint32(d[:])
}

func inw(b *Bus, port uint64) uint16 {
	var d [2]byte
	b.Read(port-ConfigAddressPort, d[:])
	return binary.LittleEndian.Uint16(d[:])
}

func inb(b *Bus, port uint64) uint8 {
	var d [1]byte
	b.Read(port-ConfigAddressPort, d[:])
	return d[0]
}

func outb(b *Bus, port uint64, v uint8) { b.Write(port-ConfigAddressPort, []byte{v}) }

func outw(b *Bus, port uint64, v uint16) {
	var d [2]byte
	binary.LittleEndian.PutUint16(d[:], v)
	b.Write(port-ConfigAddressPort, d[:])
}

// confRead plays Linux's pci_conf1_read: address, then an access of size
// len at 0xCFC + (reg & 3).
func confRead(b *Bus, dev, fn uint8, reg uint16, size int) uint32 {
	outl(b, ConfigAddressPort, ConfigAddress(0, dev, fn, reg))
	port := uint64(ConfigDataPort + reg&3)
	switch size {
	case 1:
		return uint32(inb(b, port))
	case 2:
		return uint32(inw(b, port))
	}
	return inl(b, port)
}

func confWrite(b *Bus, dev, fn uint8, reg uint16, size int, v uint32) {
	outl(b, ConfigAddressPort, ConfigAddress(0, dev, fn, reg))
	port := uint64(ConfigDataPort + reg&3)
	switch size {
	case 1:
		outb(b, port, uint8(v))
	case 2:
		outw(b, port, uint16(v))
	default:
		outl(b, port, v)
	}
}

func TestLinuxType1Probe(t *testing.T) {
	b := NewBus(BusConfig{})
	// pci_check_type1.
	outb(b, 0xcfb, 0x01)
	tmp := inl(b, ConfigAddressPort)
	outl(b, ConfigAddressPort, 0x8000_0000)
	if got := inl(b, ConfigAddressPort); got != 0x8000_0000 {
		t.Fatalf("CONFIG_ADDRESS reads %#x", got)
	}
	// pci_sanity_check: class word of some devfn on bus 0 is a host bridge.
	found := false
	for devfn := 0; devfn < 256; devfn++ {
		if confRead(b, uint8(devfn>>3), uint8(devfn&7), 0x0a, 2) == 0x0600 {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("sanity check fails: no host bridge")
	}
	outl(b, ConfigAddressPort, tmp)
}

func TestHostBridgeIdentity(t *testing.T) {
	b := NewBus(BusConfig{})
	if v := confRead(b, 0, 0, 0, 4); v != 0x0d57_8086 {
		t.Fatalf("vendor/device %#x", v)
	}
	if v := confRead(b, 0, 0, 8, 4); v>>8 != HostBridgeClass {
		t.Fatalf("class %#x", v>>8)
	}
	if v := confRead(b, 0, 0, RegHeaderType, 1); v != 0 {
		t.Fatalf("header type %#x", v)
	}
	// Read-only identity ignores writes.
	confWrite(b, 0, 0, 0, 4, 0)
	confWrite(b, 0, 0, 8, 4, 0)
	if confRead(b, 0, 0, 0, 4) != 0x0d57_8086 || confRead(b, 0, 0, 8, 4)>>8 != HostBridgeClass {
		t.Fatal("identity changed by a write")
	}
	// Byte and word reads anywhere in the dword.
	if confRead(b, 0, 0, 1, 1) != 0x80 || confRead(b, 0, 0, 2, 2) != 0x0d57 || confRead(b, 0, 0, 3, 1) != 0x0d {
		t.Fatal("sub-dword reads wrong")
	}
	// No BARs: sizing reads back zero.
	confWrite(b, 0, 0, RegBAR0, 4, 0xffff_ffff)
	if confRead(b, 0, 0, RegBAR0, 4) != 0 {
		t.Fatal("host bridge BAR0 sizes")
	}
	// Extended config space reads zero (no extended capabilities).
	if confRead(b, 0, 0, 0x100, 4) != 0 {
		t.Fatal("extended space not zero")
	}
}

func TestFloatingBus(t *testing.T) {
	b := NewBus(BusConfig{})
	tests := []struct {
		name string
		addr uint32
	}{
		{"enable bit clear", ConfigAddress(0, 0, 0, 0) &^ addrEnable},
		{"empty slot", ConfigAddress(0, 5, 0, 0)},
		{"empty function", ConfigAddress(0, 0, 3, 0)},
		{"bus 1", ConfigAddress(1, 0, 0, 0)},
	}
	for _, tc := range tests {
		outl(b, ConfigAddressPort, tc.addr)
		if v := inl(b, ConfigDataPort); v != 0xffff_ffff {
			t.Errorf("%s: dword read %#x", tc.name, v)
		}
		if v := inw(b, ConfigDataPort+2); v != 0xffff {
			t.Errorf("%s: word read %#x", tc.name, v)
		}
		outl(b, ConfigDataPort, 0) // dropped
	}
	if confRead(b, 0, 0, 0, 4) != 0x0d57_8086 {
		t.Fatal("write with enable clear reached the host bridge")
	}
}

func TestAddressRegister(t *testing.T) {
	b := NewBus(BusConfig{})
	outl(b, ConfigAddressPort, 0xffff_ffff)
	if v := inl(b, ConfigAddressPort); v != addrMask {
		t.Fatalf("reserved bits kept: %#x", v)
	}
	// Sub-dword accesses to 0xCF8-0xCFB do not touch CONFIG_ADDRESS.
	outw(b, ConfigAddressPort, 0)
	outb(b, 0xcfa, 0)
	outb(b, 0xcfb, 0)
	if v := inl(b, ConfigAddressPort); v != addrMask {
		t.Fatalf("partial write changed CONFIG_ADDRESS: %#x", v)
	}
	if v := inw(b, ConfigAddressPort); v != 0xffff {
		t.Fatalf("word read of 0xCF8 %#x", v)
	}
	// Unaligned dword on the data window is not a config cycle.
	var d [4]byte
	b.Read(5, d[:])
	if binary.LittleEndian.Uint32(d[:]) != 0xffff_ffff {
		t.Fatal("unaligned data access answered")
	}
}

func TestResetControl(t *testing.T) {
	var resets atomic.Int32
	b := NewBus(BusConfig{OnReset: func() { resets.Add(1) }})
	// Linux's reboot=pci (BOOT_CF9_FORCE, cold reboot code 0x0e).
	cf9 := inb(b, ResetControlPort) &^ 0x0e
	outb(b, ResetControlPort, cf9|0x02)
	if resets.Load() != 0 {
		t.Fatal("SYS_RST alone reset")
	}
	outb(b, ResetControlPort, cf9|0x0e)
	if resets.Load() != 1 {
		t.Fatal("RST_CPU did not reset")
	}
	if v := inb(b, ResetControlPort); v != 0x0a {
		t.Fatalf("reset control reads %#x, RST_CPU should self-clear", v)
	}
	// ACPI reset register style: write 0x06.
	outb(b, ResetControlPort, 0x06)
	if resets.Load() != 2 {
		t.Fatal("0x06 did not reset")
	}
	NewBus(BusConfig{}).Write(1, []byte{0x06}) // no callback: no panic
}

func TestAttach(t *testing.T) {
	b := NewBus(BusConfig{})
	f := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1041, Class: 0x020000})
	if err := b.Attach(0, 0, f); err == nil {
		t.Fatal("replaced the host bridge")
	}
	if err := b.Attach(32, 0, f); err == nil {
		t.Fatal("device 32 accepted")
	}
	if err := b.Attach(1, 8, f); err == nil {
		t.Fatal("function 8 accepted")
	}
	dev, err := b.AttachNext(f)
	if err != nil || dev != 1 {
		t.Fatalf("AttachNext = %d, %v", dev, err)
	}
	if confRead(b, 1, 0, 0, 4) != 0x1041_1af4 {
		t.Fatal("attached function not visible")
	}
	// A second function makes function 0 multi-function.
	g := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1042})
	if err := b.Attach(1, 1, g); err != nil {
		t.Fatal(err)
	}
	if confRead(b, 1, 0, RegHeaderType, 1) != 0x80 || confRead(b, 1, 0, 0x0c, 4)>>16 != 0x80 {
		t.Fatal("multi-function bit missing on function 0")
	}
	if confRead(b, 1, 1, RegHeaderType, 1) != 0 {
		t.Fatal("multi-function bit on function 1")
	}
	if dev, _ := b.AttachNext(g); dev != 2 {
		t.Fatalf("AttachNext skipped to %d", dev)
	}
	if !b.Detach(1, 1) || b.Detach(1, 1) || b.Detach(0, 0) {
		t.Fatal("Detach results wrong")
	}
	if confRead(b, 1, 0, RegHeaderType, 1) != 0 {
		t.Fatal("multi-function bit stuck after detach")
	}
	if b.FunctionAt(2, 0) != g || b.FunctionAt(40, 0) != nil {
		t.Fatal("FunctionAt")
	}
	if err := b.Attach(2, 0, f); err == nil {
		t.Fatal("occupied slot accepted")
	}
	for dev := 3; dev < NumDevices; dev++ {
		if _, err := b.AttachNext(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.AttachNext(f); err == nil {
		t.Fatal("full bus accepted a device")
	}
}

func TestExtendedRegisterBits(t *testing.T) {
	b := NewBus(BusConfig{})
	rec := &recorder{}
	if err := b.Attach(3, 0, rec); err != nil {
		t.Fatal(err)
	}
	confRead(b, 3, 0, 0x2a4, 4)
	confRead(b, 3, 0, 0x2a6, 2)
	confWrite(b, 3, 0, 0xffd, 1, 1)
	want := []access{{0x2a4, 4, false}, {0x2a6, 2, false}, {0xffd, 1, true}}
	if len(rec.log) != len(want) {
		t.Fatalf("log %v", rec.log)
	}
	for i := range want {
		if rec.log[i] != want[i] {
			t.Fatalf("access %d = %+v, want %+v", i, rec.log[i], want[i])
		}
	}
}

type access struct {
	reg   uint32
	n     int
	write bool
}

type recorder struct {
	mu  sync.Mutex
	log []access
}

func (r *recorder) ReadConfig(reg uint32, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, access{reg, len(data), false})
}

func (r *recorder) WriteConfig(reg uint32, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, access{reg, len(data), true})
}

func TestConcurrentConfigCycles(t *testing.T) {
	b := NewBus(BusConfig{})
	f := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1000})
	if err := f.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1000, Addr: 0xc000_0000}); err != nil {
		t.Fatal(err)
	}
	if err := b.Attach(1, 0, f); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // the guest's pci_lock
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				mu.Lock()
				if v := confRead(b, 1, 0, 0, 4); v != 0x1000_1af4 {
					t.Errorf("read %#x", v)
				}
				confWrite(b, 1, 0, RegCommand, 2, uint32(i&3))
				confWrite(b, 1, 0, RegBAR0, 4, 0xffff_ffff)
				confWrite(b, 1, 0, RegBAR0, 4, 0xc000_0000)
				mu.Unlock()
				f.BAR(0)
			}
		}()
	}
	wg.Wait()
}
