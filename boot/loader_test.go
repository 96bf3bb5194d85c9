package boot

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/flintvm/flint/boot/acpi"
	"github.com/flintvm/flint/mem"
)

func newMem(t *testing.T, size uint64) *mem.Memory {
	t.Helper()
	m, err := mem.New(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func acpiConfig() *acpi.Config {
	return &acpi.Config{
		SleepControlPort: 0x600, SleepStatusPort: 0x601, ResetPort: 0x64, ResetValue: 0xfe, I8042: true,
		Serial:  []acpi.SerialPort{{Port: 0x3f8, IRQ: 4}},
		Devices: []acpi.Device{{HID: "LNRO0005", MMIOBase: 0xd0000000, MMIOSize: 0x1000, IRQ: 5}},
	}
}

func u32(t *testing.T, m *mem.Memory, a uint64) uint64 {
	t.Helper()
	v, err := m.ReadU32(a)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(v)
}

func u64(t *testing.T, m *mem.Memory, a uint64) uint64 {
	t.Helper()
	v, err := m.ReadU64(a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoadLaysOutMemory(t *testing.T) {
	m := newMem(t, 128<<20)
	kernel := defaultFake().bytes()
	initrd := bytes.Repeat([]byte{0x5a}, 3<<20+123)
	cmdline := "console=ttyS0 reboot=k"
	// Junk from a "previous boot" must not survive in the structures.
	junk, _ := m.Slice(0, 0x30000)
	for i := range junk {
		junk[i] = 0xcc
	}
	e, err := Load(m, Config{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, CPUs: 2, ACPI: acpiConfig()})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Placement
	// Kernel payload at 1 MiB, entry at +0x200.
	got := make([]byte, len(kernel)-2560)
	if err := m.Read(KernelAddr, got); err != nil || !bytes.Equal(got, kernel[2560:]) {
		t.Fatal("payload not at 1 MiB")
	}
	if e.RIP != 0x100200 || e.RSI != ZeroPageAddr || e.RFLAGS != 2 || e.RSP != BootStackPointer {
		t.Fatalf("regs %+v", e)
	}
	if p.RunAddr != 16<<20 || p.KernelEnd != 24<<20 {
		t.Fatalf("run %#x end %#x", p.RunAddr, p.KernelEnd)
	}
	// Initrd page-aligned at the top of RAM.
	if p.InitrdAddr%4096 != 0 || p.InitrdAddr+p.InitrdSize > 128<<20 || 128<<20-(p.InitrdAddr+p.InitrdSize) >= 4096 {
		t.Fatalf("initrd at %#x+%#x", p.InitrdAddr, p.InitrdSize)
	}
	gotInitrd := make([]byte, len(initrd))
	if err := m.Read(p.InitrdAddr, gotInitrd); err != nil || !bytes.Equal(gotInitrd, initrd) {
		t.Fatal("initrd not written")
	}
	// Zero page.
	zp := ZeroPageAddr
	hdr := make([]byte, 0x26c-0x1f1)
	m.Read(zp+0x1f1, hdr)
	if hdr[0] != kernel[0x1f1] || !bytes.Equal(hdr[0x202-0x1f1:0x206-0x1f1], []byte("HdrS")) {
		t.Fatal("setup header not copied")
	}
	b, _ := m.ReadU8(zp + offTypeOfLoader)
	lf, _ := m.ReadU8(zp + offLoadFlags)
	if b != 0xff || lf != LoadedHigh {
		t.Fatalf("type_of_loader %#x loadflags %#x", b, lf)
	}
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"cmd_line_ptr", u32(t, m, zp+offCmdLinePtr), CmdlineAddr},
		{"ext_cmd_line_ptr", u32(t, m, zp+zpExtCmdLinePtr), 0},
		{"ramdisk_image", u32(t, m, zp+offRamdiskImage), p.InitrdAddr},
		{"ramdisk_size", u32(t, m, zp+offRamdiskSize), uint64(len(initrd))},
		{"ext_ramdisk_image", u32(t, m, zp+zpExtRamdiskImage), 0},
		{"code32_start", u32(t, m, zp+offCode32Start), KernelAddr},
		{"setup_data", u64(t, m, zp+zpSetupData), 0},
		{"acpi_rsdp_addr", u64(t, m, zp+zpACPIRSDPAddr), acpi.RSDPAddr},
		{"sentinel", uint64(must8(t, m, zp+0x1ef)), 0},
		{"screen_info", u64(t, m, zp), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	cl := make([]byte, len(cmdline)+1)
	m.Read(CmdlineAddr, cl)
	if string(cl) != cmdline+"\x00" {
		t.Errorf("cmdline %q", cl)
	}
	// e820 in the zero page.
	n := must8(t, m, zp+zpE820Entries)
	want := []E820Entry{{0, 0x9fc00, E820RAM}, {0x9fc00, 0x100000 - 0x9fc00, E820Reserved}, {0x100000, 127 << 20, E820RAM}}
	if int(n) != len(want) {
		t.Fatalf("%d e820 entries", n)
	}
	for i, w := range want {
		o := zp + zpE820Table + uint64(20*i)
		g := E820Entry{u64(t, m, o), u64(t, m, o+8), uint32(u32(t, m, o+16))}
		if g != w {
			t.Errorf("e820[%d] = %+v, want %+v", i, g, w)
		}
	}
	// ACPI tables in the reserved area.
	if p.ACPI == nil || must8(t, m, acpi.RSDPAddr) != 'R' {
		t.Fatal("no RSDP")
	}
	checkPageTables(t, m)
	checkGDT(t, m, e)
	// Junk below the GDT and in unused low memory is cleared where Load
	// owns it.
	if must8(t, m, 0x40e) != 0 || must8(t, m, 0x413) != 0 || must8(t, m, CmdlineAddr+uint64(len(cmdline))+1) != 0 {
		t.Error("low memory not cleared")
	}
}

func must8(t *testing.T, m *mem.Memory, a uint64) uint8 {
	t.Helper()
	v, err := m.ReadU8(a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// walk translates a virtual address through the guest page tables.
func walk(t *testing.T, m *mem.Memory, cr3, va uint64) (uint64, bool) {
	t.Helper()
	const addrMask = 0x000f_ffff_ffff_f000
	pml4e := u64(t, m, cr3&addrMask+8*(va>>39&0x1ff))
	if pml4e&1 == 0 {
		return 0, false
	}
	pdpte := u64(t, m, pml4e&addrMask+8*(va>>30&0x1ff))
	if pdpte&1 == 0 || pdpte&ptePageSize != 0 {
		return 0, false
	}
	pde := u64(t, m, pdpte&addrMask+8*(va>>21&0x1ff))
	if pde&1 == 0 || pde&ptePageSize == 0 || pde&pteWritable == 0 {
		return 0, false
	}
	return pde&0x000f_ffff_ffe0_0000 | va&0x1f_ffff, true
}

func checkPageTables(t *testing.T, m *mem.Memory) {
	for _, va := range []uint64{0, 0x7000, 0x100200, 16 << 20, 0x7fff_f123, 0xbfff_ffff, 0xfee0_0000, IdentityMapSize - 1} {
		pa, ok := walk(t, m, PML4Addr, va)
		if !ok || pa != va {
			t.Errorf("va %#x -> %#x (%v), want identity", va, pa, ok)
		}
	}
	if _, ok := walk(t, m, PML4Addr, IdentityMapSize); ok {
		t.Error("4 GiB is mapped")
	}
}

func checkGDT(t *testing.T, m *mem.Memory, e *Entry) {
	if e.GDT.Base != GDTAddr || e.GDT.Limit != 47 || e.IDT.Base != IDTAddr {
		t.Fatalf("GDT %+v IDT %+v", e.GDT, e.IDT)
	}
	if d := u64(t, m, GDTAddr+SelectorCode); d != 0x00af9b000000ffff {
		t.Errorf("code descriptor %#x", d)
	}
	if d := u64(t, m, GDTAddr+SelectorData); d != 0x00cf93000000ffff {
		t.Errorf("data descriptor %#x", d)
	}
	if d := u64(t, m, GDTAddr+SelectorTSS); d != 0x00008b0000000067 {
		t.Errorf("TSS descriptor %#x", d)
	}
	if d := u64(t, m, GDTAddr+SelectorCode32); d != 0x00cf9b000000ffff {
		t.Errorf("32-bit code descriptor %#x", d)
	}
	if u64(t, m, GDTAddr) != 0 {
		t.Error("null descriptor not null")
	}
	if e.CS.Selector != 0x10 || e.CS.L != 1 || e.CS.DB != 0 || e.CS.Type != 0xb || e.CS.Limit != 0xffffffff {
		t.Errorf("CS %+v", e.CS)
	}
	for _, s := range []Segment{e.DS, e.ES, e.FS, e.GS, e.SS} {
		if s != dataSegment || s.Selector != 0x18 {
			t.Errorf("data segment %+v", s)
		}
	}
	if e.CR0&(CR0PE|CR0PG) != CR0PE|CR0PG || e.CR4&CR4PAE == 0 || e.EFER != EFERLME|EFERLMA || e.CR3 != PML4Addr {
		t.Errorf("CR0 %#x CR4 %#x EFER %#x CR3 %#x", e.CR0, e.CR4, e.EFER, e.CR3)
	}
}

func TestLoadErrors(t *testing.T) {
	kernel := defaultFake().bytes()
	m := newMem(t, 64<<20)
	cases := []struct {
		name string
		m    *mem.Memory
		cfg  Config
		kind error
		msg  string
	}{
		{"bad kernel", m, Config{Kernel: kernel[:100]}, ErrKernelTruncated, "kernel: truncated"},
		{"long cmdline", m, Config{Kernel: kernel, Cmdline: strings.Repeat("x", 2048)}, ErrCmdline, "2048 bytes, the kernel accepts at most 2047"},
		{"NUL cmdline", m, Config{Kernel: kernel, Cmdline: "a\x00b"}, ErrCmdline, "NUL"},
		{"initrd", m, Config{Kernel: kernel, Initrd: make([]byte, 41<<20)}, ErrNoFit, "initrd (41 MiB) does not fit in guest memory below 64 MiB"},
		{"small RAM", newMem(t, 20<<20), Config{Kernel: kernel}, ErrNoFit, "kernel needs guest RAM up to 24 MiB"},
		{"tiny RAM", newMem(t, 1<<20), Config{Kernel: kernel}, ErrNoFit, "below the kernel load address"},
		{"CPU mismatch", m, Config{Kernel: kernel, CPUs: 2, ACPI: &acpi.Config{CPUs: 3}}, ErrBootConfig, "3 vCPUs"},
		{"SMP without ACPI", m, Config{Kernel: kernel, CPUs: 2}, ErrBootConfig, "2 vCPUs need ACPI"},
		{"ACPI", m, Config{Kernel: kernel, CPUs: 300, ACPI: &acpi.Config{}}, acpi.ErrConfig, "300 vCPUs"},
	}
	for _, c := range cases {
		_, err := Load(c.m, c.cfg)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %v containing %q", c.name, err, c.kind, c.msg)
		}
		if c.kind != ErrKernelTruncated && !errors.Is(err, ErrBootConfig) {
			t.Errorf("%s: %v does not match ErrBootConfig", c.name, err)
		}
	}
	// CheckKernel, with no guest memory yet, refuses a bzImage the RAM
	// cannot hold just as Load does, and takes one it can.
	lerr, cerr := loadErr(newMem(t, 20<<20), Config{Kernel: kernel}), CheckKernel(kernel, 20<<20, EntryAuto)
	if lerr == nil || cerr == nil || cerr.Error() != lerr.Error() || !errors.Is(cerr, ErrNoFit) {
		t.Errorf("bzImage in 20 MiB: CheckKernel %v, Load %v", cerr, lerr)
	}
	if err := CheckKernel(kernel, 24<<20, EntryAuto); err != nil {
		t.Errorf("bzImage in 24 MiB: %v", err)
	}
	// The initrd that just fits.
	if _, err := Load(m, Config{Kernel: kernel, Initrd: make([]byte, 40<<20)}); err != nil {
		t.Errorf("40 MiB initrd in 64 MiB: %v", err)
	}
	// Memory not starting at 0.
	hi, _ := mem.FromRegions(mem.NewRegion(1<<20, make([]byte, 1<<20)))
	if _, err := Load(hi, Config{Kernel: kernel}); !errors.Is(err, ErrNoFit) {
		t.Errorf("RAM at 1 MiB: %v", err)
	}
}

func TestInitrdBelowInitrdAddrMax(t *testing.T) {
	f := defaultFake()
	f.initrdMax = 48<<20 - 1
	m := newMem(t, 128<<20)
	e, err := Load(m, Config{Kernel: f.bytes(), Initrd: make([]byte, 5000)})
	if err != nil {
		t.Fatal(err)
	}
	if p := e.Placement; p.InitrdAddr != 48<<20-8192 {
		t.Fatalf("initrd at %#x", p.InitrdAddr)
	}
}

func TestE820HighMemory(t *testing.T) {
	m := newMem(t, mem.MMIOHoleStart+(1<<30))
	got, err := E820Map(m)
	if err != nil {
		t.Fatal(err)
	}
	want := []E820Entry{{0, 0x9fc00, E820RAM}, {0x9fc00, 0x60400, E820Reserved},
		{0x100000, mem.MMIOHoleStart - 0x100000, E820RAM}, {mem.HighMemStart, 1 << 30, E820RAM}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("e820[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestLoadRealKernel loads the bzImage FLINT_KERNEL names with ACPI tables.
func TestLoadRealKernel(t *testing.T) {
	path := os.Getenv("FLINT_KERNEL")
	if path == "" {
		t.Skip("FLINT_KERNEL is not set (point it at a bzImage, e.g. a Debian vmlinuz)")
	}
	kernel, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := newMem(t, 256<<20)
	e, err := Load(m, Config{Kernel: kernel, Initrd: make([]byte, 20<<20), Cmdline: "console=ttyS0 panic=-1", CPUs: 2, ACPI: acpiConfig()})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Placement
	t.Logf("kernel loaded [%#x, %#x), runs at %#x, needs RAM to %#x; initrd at %#x", p.KernelAddr, p.KernelLoadEnd, p.RunAddr, p.KernelEnd, p.InitrdAddr)
	if p.InitrdAddr < p.KernelEnd {
		t.Fatal("initrd overlaps the kernel")
	}
}
