// Package boot puts a Linux x86-64 kernel into guest memory and describes
// the machine to it, so that the VMM can enter the kernel directly: no
// firmware, no real mode on the BSP. Kernels come as a bzImage or as a
// 64-bit ELF vmlinux (what Firecracker boots), told apart by the ELF
// magic. It owns the setup header parser, the ELF program-header loader and
// its PVH note, the zero page (boot_params: setup header, command line,
// initrd, e820 map), the PVH boot ABI's hvm_start_info, the boot GDT, IDT
// and identity-mapping page tables, and the BSP's entry register state
// (Entry) for both entry paths: the 64-bit Linux boot protocol (long mode,
// RSI = zero page) and, for an ELF vmlinux with the PVH note, the PVH entry
// (32-bit protected mode, EBX = hvm_start_info). ACPI tables come from
// boot/acpi.
//
// Usage (vmm): CheckKernel(image, memSize, entry) while validating; then
// m := mem.New(size); e, err := boot.Load(m, boot.Config{...});
// then set the BSP's registers from e (RIP, RSI, RBX, RSP, RFLAGS, CR0/3/4,
// EFER, GDT, IDT, CS..SS, TR) and run. errors.Is(err, ErrInvalidKernel) or
// errors.Is(err, ErrBootConfig) mark user errors.
//
// boot imports mem and boot/acpi only; it knows nothing of KVM.
//
// Guest-physical memory map below 1 MiB (all inside e820 RAM [0, 0x9fc00)
// except the ACPI tables, which sit in the reserved BIOS area):
//
//	0x00000-0x004ff  real-mode IVT and BIOS data area (zeroed)
//	0x00500          GDT (48 bytes), IDT at 0x540 (16 bytes)
//	0x07000          zero page (boot_params, 4 KiB), or for the PVH entry
//	                 hvm_start_info, its module list (0x7040), memory map (0x7080)
//	0x08000-0x08ff0  boot stack (RSP = 0x8ff0)
//	0x09000          PML4, 0xa000 PDPT, 0xb000-0xefff page directories
//	0x20000-0x2ffff  kernel command line
//	0x9fc00-0xfffff  reserved (EBDA, VGA, BIOS); ACPI tables at 0xe0000
//	0x100000         bzImage protected-mode kernel; 64-bit entry at 0x100200
//
// An ELF vmlinux is loaded by its PT_LOAD program headers at their physical
// addresses (16 MiB up for Linux), each checked to stay clear of the areas
// above and inside the low RAM region.
//
// The kernel relocates itself to max(pref_address, 1 MiB rounded up to
// kernel_alignment) (16 MiB for Debian kernels) and needs init_size bytes
// there; the initrd goes page-aligned at the top of low RAM, below
// initrd_addr_max, above the kernel and never below 1 MiB. The kernel
// reserves the whole first MiB for itself once it runs and copies the zero
// page and command line early, so none of the structures above collide
// with its SMP trampoline.
package boot

import (
	"errors"
	"fmt"

	"github.com/flintvm/flint/boot/acpi"
	"github.com/flintvm/flint/mem"
)

// Fixed guest-physical addresses.
const (
	GDTAddr          uint64 = 0x500
	IDTAddr          uint64 = 0x540
	ZeroPageAddr     uint64 = 0x7000
	BootStackPointer uint64 = 0x8ff0
	PML4Addr         uint64 = 0x9000
	PDPTAddr         uint64 = 0xa000
	PDAddr           uint64 = 0xb000 // four page directories: 0xb000-0xefff
	CmdlineAddr      uint64 = 0x20000
	// CmdlineMax bounds the command line area (NUL included).
	CmdlineMax uint64 = 0x10000
	// EBDAStart is where the reserved BIOS area below 1 MiB begins.
	EBDAStart uint64 = 0x9fc00
	// KernelAddr is where the protected-mode kernel is loaded.
	KernelAddr uint64 = 0x100000

	pageSize = 4096
)

// Zero page (struct boot_params) offsets, see zero-page.rst.
const (
	zpACPIRSDPAddr    = 0x070
	zpExtRamdiskImage = 0x0c0
	zpExtRamdiskSize  = 0x0c4
	zpExtCmdLinePtr   = 0x0c8
	zpE820Entries     = 0x1e8
	zpE820Table       = 0x2d0
	zpHardwareSubarch = 0x23c
	zpSubarchData     = 0x240
	zpSetupData       = 0x250
	zpExtLoaderVer    = 0x226
	e820EntrySize     = 20
	// E820MaxEntries is how many entries the zero page holds.
	E820MaxEntries  = 128
	typeOfLoaderAny = 0xff // "undefined" boot loader
)

// Errors for a configuration that cannot boot. They match ErrBootConfig
// and the specific sentinel (errors.Is).
var (
	// ErrBootConfig matches every boot-configuration problem.
	ErrBootConfig = errors.New("invalid boot configuration")
	// ErrCmdline: the command line is too long or contains a NUL.
	ErrCmdline = errors.New("bad kernel command line")
	// ErrNoFit: the kernel or initrd does not fit in guest memory.
	ErrNoFit = errors.New("does not fit in guest memory")
)

func configErr(kind error, format string, args ...any) error {
	return &Error{Err: kind, Class: ErrBootConfig, Msg: fmt.Sprintf(format, args...)}
}

// Config is what to boot.
type Config struct {
	// Kernel is the kernel image: a whole bzImage, or a 64-bit ELF vmlinux
	// (told apart by the ELF magic), whole or as ReadKernel's compact image
	// of its headers and loadable segments.
	Kernel []byte
	// Initrd is the initial ramdisk (optional).
	Initrd []byte
	// Cmdline is the kernel command line.
	Cmdline string
	// CPUs is the number of vCPUs (the ACPI MADT lists them). More than one
	// requires ACPI.
	CPUs int
	// ACPI, when set, has Load write ACPI tables and point the zero page at
	// them. Its CPUs field may be 0 (taken from CPUs) or must equal CPUs.
	// Without ACPI the guest finds no interrupt controller description and
	// one CPU; boot it with "acpi=off" then.
	ACPI *acpi.Config
	// Entry chooses the entry path (EntryAuto: PVH when an ELF kernel has
	// the PVH note, else the 64-bit entry).
	Entry EntryPath
}

// Placement says where Load put the pieces.
type Placement struct {
	// Header is the parsed setup header of a bzImage; for an ELF vmlinux
	// the header Flint writes into the zero page in its place.
	Header *SetupHeader
	// Format is FormatBzImage or FormatELF; EntryPath the path taken
	// (EntryPVH or EntryLinux64).
	Format    string
	EntryPath EntryPath
	// KernelAddr..KernelLoadEnd holds the protected-mode code as loaded
	// (an ELF kernel: its lowest and highest segment addresses); the
	// kernel runs at RunAddr and needs RAM up to KernelEnd.
	KernelAddr, KernelLoadEnd, RunAddr, KernelEnd uint64
	// InitrdAddr and InitrdSize are zero without an initrd.
	InitrdAddr, InitrdSize uint64
	// E820 is the memory map given to the kernel.
	E820 []E820Entry
	// ACPI is nil when no tables were written.
	ACPI *acpi.Tables
}

// Load validates cfg, copies the kernel, initrd and command line into m,
// builds the zero page (or, for the PVH entry, the hvm_start_info), page
// tables, GDT and (optionally) ACPI tables, and returns the BSP's entry
// state. Nothing is written unless every check passes. m must have RAM
// from address 0 past the kernel's needs (68-80 MiB for Debian 6.1
// bzImages: 16 MiB + init_size; a vmlinux needs its segments' end), plus
// the initrd.
func Load(m *mem.Memory, cfg Config) (*Entry, error) {
	var (
		h   *SetupHeader
		k   *ELFKernel
		p   Placement
		err error
	)
	if IsELF(cfg.Kernel) {
		if k, err = ParseELF(cfg.Kernel); err != nil {
			return nil, err
		}
		h = elfSetupHeader(k)
	} else if h, err = ParseSetupHeader(cfg.Kernel); err != nil {
		return nil, err
	}
	lowEnd, err := lowMemoryEnd(m)
	if err != nil {
		return nil, err
	}
	if k != nil {
		if err := k.checkPlacement(lowEnd); err != nil {
			return nil, err
		}
		p = Placement{Header: h, Format: FormatELF, KernelAddr: k.Start, KernelLoadEnd: k.End, RunAddr: k.Start, KernelEnd: k.End}
	} else if p, err = placeBzImage(h, len(cfg.Kernel), lowEnd); err != nil {
		return nil, err
	}
	if p.EntryPath, err = resolveEntry(cfg.Entry, k); err != nil {
		return nil, err
	}
	if err := checkCmdline(cfg.Cmdline, h); err != nil {
		return nil, err
	}
	if n := uint64(len(cfg.Initrd)); n > 0 {
		limit := min(lowEnd, uint64(h.InitrdAddrMax)+1)
		// Above the kernel and never below 1 MiB, where Flint's own
		// areas are (an ELF kernel may end below them).
		floor := max(alignUp(p.KernelEnd, pageSize), KernelAddr)
		if n > limit || (limit-n)&^(pageSize-1) < floor {
			return nil, configErr(ErrNoFit,
				"initrd (%s) does not fit in guest memory below %s (the kernel occupies up to %s); give the guest more memory",
				mib(n), mib(limit), mib(floor))
		}
		p.InitrdAddr, p.InitrdSize = (limit-n)&^(pageSize-1), n
	}
	if cfg.ACPI == nil && cfg.CPUs > 1 {
		return nil, configErr(ErrBootConfig, "%d vCPUs need ACPI tables (Config.ACPI) to be visible to the guest", cfg.CPUs)
	}
	if cfg.ACPI != nil {
		a := *cfg.ACPI
		if a.CPUs == 0 {
			a.CPUs = cfg.CPUs
		} else if a.CPUs != cfg.CPUs {
			return nil, configErr(ErrBootConfig, "ACPI config has %d vCPUs, boot config %d", a.CPUs, cfg.CPUs)
		}
		if p.ACPI, err = acpi.Build(a); err != nil {
			return nil, &Error{Err: err, Class: ErrBootConfig, Msg: err.Error()}
		}
	}
	if p.E820, err = E820Map(m); err != nil {
		return nil, err
	}
	bootInfo, bootInfoAddr := []byte(nil), ZeroPageAddr
	if p.EntryPath == EntryPVH {
		if bootInfo, err = pvhStartInfo(&p); err != nil {
			return nil, err
		}
		bootInfoAddr = PVHStartInfoAddr
	} else {
		bootInfo = zeroPage(h, &p)
	}

	// All checks passed; write guest memory.
	if err := clearLowMemory(m); err != nil {
		return nil, err
	}
	if k != nil {
		err = k.write(m, cfg.Kernel)
	} else if err = m.Write(KernelAddr, cfg.Kernel[h.SetupSize():]); err != nil {
		err = fmt.Errorf("boot: writing kernel: %w", err)
	}
	if err != nil {
		return nil, err
	}
	if p.InitrdSize > 0 {
		if err := m.Write(p.InitrdAddr, cfg.Initrd); err != nil {
			return nil, fmt.Errorf("boot: writing initrd: %w", err)
		}
	}
	if err := m.Write(CmdlineAddr, append([]byte(cfg.Cmdline), 0)); err != nil {
		return nil, fmt.Errorf("boot: writing command line: %w", err)
	}
	if p.ACPI != nil {
		if err := p.ACPI.Write(m); err != nil {
			return nil, err
		}
	}
	if err := m.Write(bootInfoAddr, bootInfo); err != nil {
		return nil, fmt.Errorf("boot: writing the %s boot information: %w", p.EntryPath, err)
	}
	if err := writeCPUTables(m); err != nil {
		return nil, fmt.Errorf("boot: writing GDT and page tables: %w", err)
	}
	var e Entry
	switch {
	case p.EntryPath == EntryPVH:
		e = pvhEntryState(k.PVHEntry)
	case k != nil:
		e = entryState(k.Entry64)
	default:
		e = entryState(KernelAddr + Entry64Offset)
	}
	e.Placement = p
	return &e, nil
}

// placeBzImage places a bzImage of fileSize bytes: its protected-mode code
// at KernelAddr, running at its run address with init_size bytes there,
// all below lowEnd.
func placeBzImage(h *SetupHeader, fileSize int, lowEnd uint64) (Placement, error) {
	p := Placement{Header: h, Format: FormatBzImage, KernelAddr: KernelAddr}
	payload := uint64(fileSize - h.SetupSize())
	p.KernelLoadEnd = KernelAddr + payload
	p.RunAddr = h.runAddress(KernelAddr)
	p.KernelEnd = max(p.KernelLoadEnd, p.RunAddr+uint64(h.InitSize))
	if p.KernelEnd > lowEnd {
		return p, configErr(ErrNoFit,
			"kernel needs guest RAM up to %s (%d bytes loaded at %#x, init_size %s at %#x), but RAM below the %#x hole ends at %s",
			mib(p.KernelEnd), payload, KernelAddr, mib(uint64(h.InitSize)), p.RunAddr, mem.MMIOHoleStart, mib(lowEnd))
	}
	return p, nil
}

// lowMemoryEnd returns the end of the RAM region at guest address 0, which
// must reach past 1 MiB.
func lowMemoryEnd(m *mem.Memory) (uint64, error) {
	rs := m.Regions()
	if len(rs) == 0 || rs[0].GuestAddr != 0 {
		return 0, configErr(ErrNoFit, "guest RAM must start at address 0")
	}
	if rs[0].End() <= KernelAddr {
		return 0, configErr(ErrNoFit, "guest RAM at 0 ends at %#x, below the kernel load address %#x", rs[0].End(), KernelAddr)
	}
	return rs[0].End(), nil
}

func checkCmdline(s string, h *SetupHeader) error {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return configErr(ErrCmdline, "kernel command line contains a NUL byte at offset %d", i)
		}
	}
	limit := min(uint64(h.CmdlineSize), CmdlineMax-1)
	if uint64(len(s)) > limit {
		return configErr(ErrCmdline, "kernel command line is %d bytes, the kernel accepts at most %d", len(s), limit)
	}
	return nil
}

// clearLowMemory zeroes the structures Load writes below 1 MiB (they may
// hold a previous boot's data): the first page (IVT, BDA, GDT, IDT), the
// zero page, stack and page tables, and the command line area.
func clearLowMemory(m *mem.Memory) error {
	for _, r := range []mem.Range{{Start: 0, Size: pageSize}, {Start: ZeroPageAddr, Size: 0xf000 - ZeroPageAddr},
		{Start: CmdlineAddr, Size: CmdlineMax}} {
		b, err := m.Slice(r.Start, r.Size)
		if err != nil {
			return fmt.Errorf("boot: low memory [%#x, %#x): %w", r.Start, r.End(), err)
		}
		clear(b)
	}
	return nil
}

// zeroPage builds struct boot_params.
func zeroPage(h *SetupHeader, p *Placement) []byte {
	zp := make([]byte, pageSize)
	copy(zp[offSetupSects:], h.Raw)
	zp[offTypeOfLoader] = typeOfLoaderAny
	// LOADED_HIGH only: no heap (real-mode setup is skipped), segments
	// are reloaded by the kernel, messages are not quieted.
	zp[offLoadFlags] = LoadedHigh
	le.PutUint32(zp[offCode32Start:], uint32(p.KernelAddr))
	le.PutUint16(zp[offHeapEndPtr:], 0)
	zp[zpExtLoaderVer], zp[zpExtLoaderVer+1] = 0, 0
	le.PutUint32(zp[offCmdLinePtr:], uint32(CmdlineAddr))
	le.PutUint32(zp[zpExtCmdLinePtr:], uint32(CmdlineAddr>>32))
	le.PutUint32(zp[offRamdiskImage:], uint32(p.InitrdAddr))
	le.PutUint32(zp[offRamdiskSize:], uint32(p.InitrdSize))
	le.PutUint32(zp[zpExtRamdiskImage:], uint32(p.InitrdAddr>>32))
	le.PutUint32(zp[zpExtRamdiskSize:], uint32(p.InitrdSize>>32))
	if h.HeaderEnd > zpSetupData {
		// Never pass on setup_data pointers or a subarch from the file.
		le.PutUint64(zp[zpSetupData:], 0)
	}
	le.PutUint32(zp[zpHardwareSubarch:], 0)
	le.PutUint64(zp[zpSubarchData:], 0)
	if p.ACPI != nil {
		le.PutUint64(zp[zpACPIRSDPAddr:], p.ACPI.RSDP)
	}
	zp[zpE820Entries] = byte(len(p.E820))
	for i, e := range p.E820 {
		o := zpE820Table + e820EntrySize*i
		le.PutUint64(zp[o:], e.Addr)
		le.PutUint64(zp[o+8:], e.Size)
		le.PutUint32(zp[o+16:], e.Type)
	}
	return zp
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// mib formats a byte count or address in MiB for error messages.
func mib(n uint64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
