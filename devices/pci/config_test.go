package pci

import (
	"errors"
	"fmt"
	"testing"
)

func cfgRead32(c *ConfigSpace, reg uint32) uint32 {
	var d [4]byte
	c.ReadConfig(reg, d[:])
	return uint32(d[0]) | uint32(d[1])<<8 | uint32(d[2])<<16 | uint32(d[3])<<24
}

func cfgWrite32(c *ConfigSpace, reg uint32, v uint32) {
	c.WriteConfig(reg, []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

func cfgWrite16(c *ConfigSpace, reg uint32, v uint16) {
	c.WriteConfig(reg, []byte{byte(v), byte(v >> 8)})
}

func TestHeaderMasks(t *testing.T) {
	c := NewConfigSpace(Header{
		VendorID: 0x1af4, DeviceID: 0x1041, RevisionID: 1, Class: 0x020000,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100, InterruptPin: 1,
	})
	tests := []struct {
		name       string
		reg        uint32
		write      uint32
		wantBefore uint32
		wantAfter  uint32
	}{
		{"IDs read-only", 0x00, 0, 0x1041_1af4, 0x1041_1af4},
		{"command writable bits only", 0x04, 0x0000_ffff, 0, commandWritable},
		{"class/revision read-only", 0x08, 0, 0x0200_0001, 0x0200_0001},
		{"cache line rw, header type ro", 0x0c, 0xffff_ffff, 0, 0x0000_00ff},
		{"subsystem read-only", 0x2c, 0, 0x1100_1af4, 0x1100_1af4},
		{"no expansion ROM", 0x30, 0xffff_ffff, 0, 0},
		{"interrupt line rw, pin ro", 0x3c, 0xffff_ffff, 0x0000_0100, 0x0000_01ff},
	}
	for _, tc := range tests {
		if got := cfgRead32(c, tc.reg); got != tc.wantBefore {
			t.Errorf("%s: before %#x, want %#x", tc.name, got, tc.wantBefore)
		}
		cfgWrite32(c, tc.reg, tc.write)
		if got := cfgRead32(c, tc.reg); got != tc.wantAfter {
			t.Errorf("%s: after %#x, want %#x", tc.name, got, tc.wantAfter)
		}
	}
}

func TestStatusWriteOneToClear(t *testing.T) {
	c := NewConfigSpace(Header{})
	c.SetUint16(RegStatus, 0xf900|StatusInterrupt)
	cfgWrite16(c, RegStatus, 0x2000) // clear received master abort only
	if got := c.Uint16(RegStatus); got != 0xd900|StatusInterrupt {
		t.Fatalf("status %#x", got)
	}
	cfgWrite16(c, RegStatus, 0xffff)
	if got := c.Uint16(RegStatus); got != StatusInterrupt {
		t.Fatalf("status %#x: only W1C bits may clear", got)
	}
	// Writing the command register with a dword write leaves status alone.
	c.SetUint16(RegStatus, 0x8000)
	cfgWrite32(c, RegCommand, CommandMemory)
	if c.Uint16(RegStatus) != 0x8000 {
		t.Fatal("command write with zero status bits cleared status")
	}
	c.SetInterruptStatus(true)
	if c.Uint16(RegStatus)&StatusInterrupt == 0 {
		t.Fatal("SetInterruptStatus")
	}
	c.SetInterruptStatus(false)
	if c.Uint16(RegStatus)&StatusInterrupt != 0 {
		t.Fatal("SetInterruptStatus(false)")
	}
}

// linuxSizeBAR plays __pci_read_base for the BAR at index i: decoding off,
// save, write all ones, read, restore, decoding back. It returns the size
// Linux computes (pci_size).
func linuxSizeBAR(c *ConfigSpace, i int) (size uint64, is64 bool) {
	cmd := c.Command()
	cfgWrite16(c, RegCommand, cmd&^(CommandIO|CommandMemory))
	reg := uint32(RegBAR0 + 4*i)
	l := cfgRead32(c, reg)
	cfgWrite32(c, reg, 0xffff_ffff)
	sz := cfgRead32(c, reg)
	cfgWrite32(c, reg, l)
	if l&1 == 1 {
		// I/O: Linux masks with IO_SPACE_LIMIT (0xffff).
		sz64 := uint64(sz) & 0xfffc
		size = sz64 & ^(sz64 - 1)
	} else {
		mask := uint64(0xffff_fff0)
		sz64 := uint64(sz)
		if l&0x6 == 0x4 {
			is64 = true
			lh := cfgRead32(c, reg+4)
			cfgWrite32(c, reg+4, 0xffff_ffff)
			szh := cfgRead32(c, reg+4)
			cfgWrite32(c, reg+4, lh)
			sz64 |= uint64(szh) << 32
			mask |= 0xffff_ffff << 32
		}
		sz64 &= mask
		size = sz64 & ^(sz64 - 1)
	}
	cfgWrite16(c, RegCommand, cmd)
	return size, is64
}

func TestBARSizing(t *testing.T) {
	c := NewConfigSpace(Header{})
	bars := []struct {
		index int
		bar   BAR
		low   uint32 // value of the low register
	}{
		{0, BAR{Kind: BARMem32, Size: 0x1000, Addr: 0xc000_1000}, 0xc000_1000},
		{1, BAR{Kind: BARIO, Size: 0x40, Addr: 0x6040}, 0x6041},
		{2, BAR{Kind: BARMem64, Size: 0x4000, Addr: 0x1_0000_4000, Prefetchable: true}, 0x0000_400c},
		{4, BAR{Kind: BARMem64, Size: 1 << 34, Addr: 0x40_0000_0000}, 0x0000_0004},
	}
	for _, b := range bars {
		if err := c.SetBAR(b.index, b.bar); err != nil {
			t.Fatal(err)
		}
		if got := cfgRead32(c, uint32(RegBAR0+4*b.index)); got != b.low {
			t.Errorf("BAR%d reads %#x, want %#x", b.index, got, b.low)
		}
	}
	calls := 0
	c.SetBARChangeFunc(func(int, BARState, BARState) { calls++ })
	for _, b := range bars {
		size, is64 := linuxSizeBAR(c, b.index)
		if size != b.bar.Size || is64 != (b.bar.Kind == BARMem64) {
			t.Errorf("BAR%d: Linux sizes %#x (64-bit %v), want %#x", b.index, size, is64, b.bar.Size)
		}
		s, ok := c.BAR(b.index)
		if !ok || s.BAR != b.bar || s.Enabled {
			t.Errorf("BAR%d after sizing: %+v", b.index, s)
		}
	}
	if calls != 0 {
		t.Fatalf("%d BAR callbacks while decoding was off", calls)
	}
	if _, ok := c.BAR(3); ok {
		t.Fatal("upper half of a 64-bit BAR reported as a BAR")
	}
	if _, ok := c.BAR(5); ok {
		t.Fatal("unused BAR reported")
	}
	// Writes to the type bits are ignored.
	cfgWrite32(c, RegBAR0, 0xffff_ffff)
	if got := cfgRead32(c, RegBAR0); got != 0xffff_f000 {
		t.Fatalf("32-bit sizing reads %#x", got)
	}
	cfgWrite32(c, RegBAR0+4, 0xffff_ffff)
	if got := cfgRead32(c, RegBAR0+4); got != 0xffff_ffc1 {
		t.Fatalf("I/O sizing reads %#x", got)
	}
}

func TestSetBARErrors(t *testing.T) {
	c := NewConfigSpace(Header{})
	bad := []struct {
		index int
		bar   BAR
	}{
		{-1, BAR{Kind: BARMem32, Size: 0x1000}},
		{6, BAR{Kind: BARMem32, Size: 0x1000}},
		{0, BAR{Kind: BARUnused, Size: 0x1000}},
		{0, BAR{Kind: BARMem32, Size: 0x1800}},
		{0, BAR{Kind: BARMem32, Size: 8}},
		{0, BAR{Kind: BARMem32, Size: 0x1000, Addr: 0x800}},
		{0, BAR{Kind: BARMem32, Size: 0x1000, Addr: 0x1_0000_0000}},
		{0, BAR{Kind: BARIO, Size: 512}},
		{0, BAR{Kind: BARIO, Size: 16, Prefetchable: true}},
		{5, BAR{Kind: BARMem64, Size: 0x1000}},
	}
	for _, b := range bad {
		if err := c.SetBAR(b.index, b.bar); err == nil {
			t.Errorf("SetBAR(%d, %+v) accepted", b.index, b.bar)
		}
	}
	if err := c.SetBAR(1, BAR{Kind: BARMem64, Size: 0x1000}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} {
		if err := c.SetBAR(i, BAR{Kind: BARMem32, Size: 0x1000}); err == nil {
			t.Errorf("BAR%d redefined", i)
		}
	}
	if err := c.SetBAR(0, BAR{Kind: BARMem64, Size: 0x1000}); err == nil {
		t.Error("64-bit BAR0 overlapping BAR1 accepted")
	}
}

func TestBARChangeCallback(t *testing.T) {
	c := NewConfigSpace(Header{})
	if err := c.SetBAR(0, BAR{Kind: BARMem64, Size: 0x2000, Addr: 0xc000_0000}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBAR(2, BAR{Kind: BARIO, Size: 0x20, Addr: 0x6000}); err != nil {
		t.Fatal(err)
	}
	type call struct {
		index    int
		old, new BARState
	}
	var calls []call
	c.SetBARChangeFunc(func(i int, old, new BARState) {
		// Callbacks may read the config space.
		if s, _ := c.BAR(i); s != new {
			t.Errorf("BAR(%d) inside callback = %+v, want %+v", i, s, new)
		}
		calls = append(calls, call{i, old, new})
	})
	cfgWrite16(c, RegCommand, CommandMemory)
	if len(calls) != 1 || calls[0].index != 0 || calls[0].old.Enabled || !calls[0].new.Enabled || calls[0].new.Addr != 0xc000_0000 {
		t.Fatalf("enable memory: %+v", calls)
	}
	calls = nil
	// Linux reassigns a 64-bit BAR with memory decoding off.
	cfgWrite16(c, RegCommand, 0)
	cfgWrite32(c, RegBAR0, 0x0000_4000)
	cfgWrite32(c, RegBAR0+4, 0x1)
	cfgWrite16(c, RegCommand, CommandMemory|CommandIO)
	if len(calls) != 3 {
		t.Fatalf("calls %+v", calls)
	}
	if calls[0].index != 0 || !calls[0].old.Enabled || calls[0].new.Enabled {
		t.Errorf("disable: %+v", calls[0])
	}
	if calls[1].index != 0 || calls[1].new.Addr != 0x1_0000_4000 || !calls[1].new.Enabled || calls[1].new.Size != 0x2000 {
		t.Errorf("re-enable BAR0: %+v", calls[1])
	}
	if calls[2].index != 2 || calls[2].new.Addr != 0x6000 || !calls[2].new.Enabled {
		t.Errorf("enable I/O BAR2: %+v", calls[2])
	}
	calls = nil
	// Moving an enabled 32-bit-addressed window reports old and new.
	cfgWrite32(c, RegBAR0+8, 0x7000)
	if len(calls) != 1 || calls[0].old.Addr != 0x6000 || calls[0].new.Addr != 0x7000 {
		t.Fatalf("move I/O BAR: %+v", calls)
	}
}

func TestCapabilities(t *testing.T) {
	c := NewConfigSpace(Header{})
	if _, ok := c.FindCapability(CapMSIX); ok {
		t.Fatal("capability found in an empty list")
	}
	// A virtio-style vendor capability (odd length) and an MSI-X capability.
	vOff, err := c.AddCapability(CapVendorSpecific, []byte{14, 1, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0})
	if err != nil || vOff != 0x40 {
		t.Fatalf("vendor cap at %#x, %v", vOff, err)
	}
	mOff, err := c.AddCapability(CapMSIX, []byte{0x03, 0x00, 0x01, 0, 0, 0, 0x01, 0x08, 0, 0})
	if err != nil || mOff != 0x50 {
		t.Fatalf("MSI-X cap at %#x, %v", mOff, err)
	}
	if err := c.SetWritable(mOff+2, []byte{0x00, 0xc0}); err != nil {
		t.Fatal(err)
	}
	if c.Uint16(RegStatus)&StatusCapList == 0 || c.Uint8(RegCapabilitiesPointer) != 0x40 {
		t.Fatal("capability list not advertised")
	}
	// Walk the list as a guest does.
	var ids []byte
	for off := cfgRead32(c, RegCapabilitiesPointer) & 0xff; off != 0; {
		v := cfgRead32(c, off)
		ids = append(ids, byte(v))
		off = (v >> 8) & 0xfc
	}
	if fmt.Sprint(ids) != fmt.Sprint([]byte{CapVendorSpecific, CapMSIX}) {
		t.Fatalf("list %v", ids)
	}
	if off, ok := c.FindCapability(CapMSIX); !ok || off != mOff {
		t.Fatalf("FindCapability = %#x %v", off, ok)
	}
	// Guest: enable MSI-X and mask; the table size field stays.
	cfgWrite32(c, uint32(mOff), 0xffff_ffff)
	if got := c.Uint16(mOff + 2); got != 0xc003 {
		t.Fatalf("message control %#x", got)
	}
	if c.Uint8(mOff) != CapMSIX || c.Uint8(mOff+1) != 0 {
		t.Fatal("capability header writable")
	}
	if cfgRead32(c, uint32(vOff))&0xffff != 0x5009 {
		t.Fatal("vendor capability header wrong")
	}
	// Fill the space.
	n := 0
	for {
		_, err := c.AddCapability(0x0a, make([]byte, 14))
		if err != nil {
			if !errors.Is(err, ErrNoCapabilitySpace) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	if n != (0x100-0x5c)/16 {
		t.Fatalf("fitted %d more capabilities", n)
	}
	if err := c.SetWritable(0xff, []byte{1, 2}); err == nil {
		t.Fatal("mask beyond the space accepted")
	}
	if err := c.SetWriteOneToClear(-1, []byte{1}); err == nil {
		t.Fatal("negative offset accepted")
	}
}

func TestWriteOneToClearCapabilityField(t *testing.T) {
	c := NewConfigSpace(Header{})
	off, _ := c.AddCapability(CapPowerManagement, []byte{0x03, 0x00, 0x00, 0x00, 0, 0})
	// PMCSR: power state bits 0-1 writable, PME_Status (bit 15) W1C.
	if err := c.SetWritable(off+4, []byte{0x03, 0x00}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteOneToClear(off+4, []byte{0x00, 0x80}); err != nil {
		t.Fatal(err)
	}
	c.SetUint16(off+4, 0x8000)
	cfgWrite16(c, uint32(off+4), 0x0003)
	if got := c.Uint16(off + 4); got != 0x8003 {
		t.Fatalf("PMCSR %#x", got)
	}
	cfgWrite16(c, uint32(off+4), 0x8000)
	if got := c.Uint16(off + 4); got != 0x0000 {
		t.Fatalf("PMCSR %#x after W1C", got)
	}
}

func TestAccessBeyondSpace(t *testing.T) {
	c := NewConfigSpace(Header{VendorID: 1})
	d := []byte{9, 9, 9, 9}
	c.ReadConfig(0xfe, d)
	if d[0] != 0 || d[1] != 0 || d[2] != 0 || d[3] != 0 {
		t.Fatalf("read across the end: %v", d)
	}
	c.WriteConfig(0x3fc, []byte{1, 2, 3, 4})
	c.WriteConfig(0xffff_fffe, []byte{1, 2, 3, 4})
	if c.Uint16(0) != 1 {
		t.Fatal("wrapped write landed")
	}
}

// ExampleConfigSpace_AddCapability shows how a device adds an MSI-X
// capability and reacts when the guest enables it.
func ExampleConfigSpace_AddCapability() {
	cs := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1041, Class: 0x020000})
	// Message Control: table size 3 (4 vectors); table in BAR 1 at 0,
	// PBA in BAR 1 at 0x800.
	body := []byte{0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00}
	off, err := cs.AddCapability(CapMSIX, body)
	if err != nil {
		panic(err)
	}
	// The guest may write MSI-X Enable (bit 15) and Function Mask (bit 14).
	if err := cs.SetWritable(off+2, []byte{0x00, 0xc0}); err != nil {
		panic(err)
	}
	dev := &msixDevice{cs: cs, cap: off}
	dev.WriteConfig(uint32(off+2), []byte{0x03, 0x80}) // guest sets Enable
	fmt.Printf("MSI-X at %#x, enabled %v\n", off, dev.enabled)
	// Output: MSI-X at 0x40, enabled true
}

// msixDevice wraps a ConfigSpace to watch its MSI-X Message Control.
type msixDevice struct {
	cs      *ConfigSpace
	cap     int
	enabled bool
}

func (d *msixDevice) ReadConfig(reg uint32, data []byte) { d.cs.ReadConfig(reg, data) }

func (d *msixDevice) WriteConfig(reg uint32, data []byte) {
	d.cs.WriteConfig(reg, data)
	ctl := uint32(d.cap + 2)
	if reg < ctl+2 && ctl < reg+uint32(len(data)) {
		d.enabled = d.cs.Uint16(d.cap+2)&0x8000 != 0
	}
}
