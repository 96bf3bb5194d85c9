package boot

import "github.com/flintvm/flint/mem"

// Control register and EFER bits of the 64-bit entry state.
const (
	CR0PE    = 1 << 0  // protection enable
	CR0ET    = 1 << 4  // extension type (hard-wired to 1 on modern CPUs)
	CR0NE    = 1 << 5  // native x87 error reporting
	CR0PG    = 1 << 31 // paging
	CR4PAE   = 1 << 5  // physical address extension
	EFERLME  = 1 << 8  // long mode enable
	EFERLMA  = 1 << 10 // long mode active
	RFLAGSRe = 1 << 1  // RFLAGS bit 1 is reserved and always set
)

// GDT selectors the 64-bit boot protocol requires (__BOOT_CS, __BOOT_DS),
// plus the TSS Flint adds so the vCPU has a valid task register, and the
// flat 32-bit code segment of the PVH entry (whose selector the PVH ABI
// leaves unspecified; Linux loads its own GDT at once).
const (
	SelectorCode32 = 0x08
	SelectorCode   = 0x10
	SelectorData   = 0x18
	SelectorTSS    = 0x20
)

// Page-table entry bits.
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7
)

// IdentityMapSize is how much of the guest-physical address space the boot
// page tables identity-map (with 2 MiB pages).
const IdentityMapSize = 4 << 30

// Segment is a segment register's hidden state in the layout KVM's
// struct kvm_segment uses, so vmm converts it field by field. Limit is the
// byte-granular limit (already scaled when G is 1).
type Segment struct {
	Base     uint64 // segment base address
	Limit    uint32 // limit in bytes (0xffffffff for the flat segments)
	Selector uint16 // GDT selector
	Type     uint8  // 4-bit descriptor type (0xb code/busy TSS, 0x3 data)
	Present  uint8  // 1: present
	DPL      uint8  // descriptor privilege level
	DB       uint8  // default operation size (32-bit)
	S        uint8  // 1: code/data, 0: system (TSS)
	L        uint8  // 64-bit code segment
	G        uint8  // 4 KiB limit granularity
	AVL      uint8  // available to software
}

// Descriptor returns the 8-byte GDT descriptor for s (the low half of a
// 16-byte system descriptor in long mode).
func (s Segment) Descriptor() uint64 {
	limit := s.Limit
	if s.G != 0 {
		limit >>= 12
	}
	access := uint64(s.Type&0xf) | uint64(s.S&1)<<4 | uint64(s.DPL&3)<<5 | uint64(s.Present&1)<<7
	flags := uint64(s.AVL&1) | uint64(s.L&1)<<1 | uint64(s.DB&1)<<2 | uint64(s.G&1)<<3
	return uint64(limit&0xffff) | (s.Base&0xffffff)<<16 | access<<40 |
		uint64(limit>>16&0xf)<<48 | flags<<52 | (s.Base>>24&0xff)<<56
}

// The flat segments of the boot GDT.
var (
	code32Segment = Segment{Limit: 0xffffffff, Selector: SelectorCode32, Type: 0xb, Present: 1, S: 1, DB: 1, G: 1}
	codeSegment   = Segment{Limit: 0xffffffff, Selector: SelectorCode, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	dataSegment   = Segment{Limit: 0xffffffff, Selector: SelectorData, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	tssSegment    = Segment{Limit: 0x67, Selector: SelectorTSS, Type: 0xb, Present: 1}
)

// DescriptorTable is a GDTR/IDTR value.
type DescriptorTable struct {
	Base  uint64 // guest-physical (= linear, identity-mapped) address
	Limit uint16 // size in bytes minus one
}

// Entry is the BSP's register state at the kernel's entry point, as
// plain data: vmm copies it into KVM_SET_REGS / KVM_SET_SREGS (every
// Segment field maps 1:1 onto struct kvm_segment; unusable = 0). Registers
// not named here are zero. Application processors get no state from boot:
// they wait for INIT/SIPI from the guest.
type Entry struct {
	// General registers. The 64-bit entry: RIP the 64-bit entry point
	// (bzImage: load address + 0x200; ELF: startup_64), RSI the zero
	// page, RBX 0. The PVH entry: RIP the PVH entry point, RBX the
	// hvm_start_info, RSI 0. Both: RSP a small boot stack, RFLAGS 0x2
	// (interrupts off).
	RIP, RSP, RSI, RBX, RFLAGS uint64
	// Control registers and EFER. The 64-bit entry: long mode with
	// paging, CR0 PE|ET|NE|PG, CR3 the PML4, CR4 PAE, EFER LME|LMA. The
	// PVH entry: 32-bit protected mode without paging, CR0 PE|ET, the
	// others 0.
	CR0, CR3, CR4, EFER uint64
	// GDT and IDT registers.
	GDT, IDT DescriptorTable
	// Segment registers: CS = __BOOT_CS (0x10, 64-bit code) or, for PVH,
	// the flat 32-bit code segment (0x08); the data segments = __BOOT_DS
	// (0x18, flat 4 GiB); TR a busy TSS at selector 0x20.
	CS, DS, ES, FS, GS, SS, TR Segment

	// Placement records where Load put things, for logs and tests.
	Placement Placement
}

func entryState(rip uint64) Entry {
	return Entry{
		RIP:    rip,
		RSP:    BootStackPointer,
		RSI:    ZeroPageAddr,
		RFLAGS: RFLAGSRe,
		CR0:    CR0PE | CR0ET | CR0NE | CR0PG,
		CR3:    PML4Addr,
		CR4:    CR4PAE,
		EFER:   EFERLME | EFERLMA,
		GDT:    DescriptorTable{Base: GDTAddr, Limit: gdtSize - 1},
		IDT:    DescriptorTable{Base: IDTAddr, Limit: idtSize - 1},
		CS:     codeSegment,
		DS:     dataSegment, ES: dataSegment, FS: dataSegment, GS: dataSegment, SS: dataSegment,
		TR: tssSegment,
	}
}

// pvhEntryState is the PVH boot ABI's entry state: 32-bit protected
// mode, paging off (CR0 PE only, besides the hard-wired ET; CR4 and EFER
// 0), flat 4 GiB code and data segments, a 32-bit busy TSS with limit
// 0x67, EFLAGS with IF, TF and VM clear, and EBX the guest-physical
// address of struct hvm_start_info. The kernel sets up its own stack, GDT,
// IDT and page tables; Flint's GDT is still loaded, for the selectors.
func pvhEntryState(rip uint64) Entry {
	e := entryState(rip)
	e.RSI, e.RBX = 0, PVHStartInfoAddr
	e.CR0, e.CR3, e.CR4, e.EFER = CR0PE|CR0ET, 0, 0, 0
	e.CS = code32Segment
	return e
}

const (
	gdtSize = 6 * 8 // null, 32-bit code, 64-bit code, data, 16-byte TSS descriptor
	idtSize = 16    // one empty 64-bit gate: any exception triple-faults
)

// writeCPUTables writes the GDT, the IDT and identity-mapping page tables
// (PML4, one PDPT, four page directories of 2 MiB pages).
func writeCPUTables(m *mem.Memory) error {
	gdt := make([]byte, gdtSize)
	le.PutUint64(gdt[SelectorCode32:], code32Segment.Descriptor())
	le.PutUint64(gdt[SelectorCode:], codeSegment.Descriptor())
	le.PutUint64(gdt[SelectorData:], dataSegment.Descriptor())
	le.PutUint64(gdt[SelectorTSS:], tssSegment.Descriptor()) // upper 8 bytes: base[63:32] = 0
	if err := m.Write(GDTAddr, gdt); err != nil {
		return err
	}
	if err := m.Write(IDTAddr, make([]byte, idtSize)); err != nil {
		return err
	}

	const nPD = IdentityMapSize >> 30
	pml4 := make([]byte, 4096)
	le.PutUint64(pml4, PDPTAddr|ptePresent|pteWritable)
	pdpt := make([]byte, 4096)
	pd := make([]byte, 4096*nPD)
	for i := uint64(0); i < nPD; i++ {
		le.PutUint64(pdpt[8*i:], (PDAddr+4096*i)|ptePresent|pteWritable)
	}
	for j := uint64(0); j < 512*nPD; j++ {
		le.PutUint64(pd[8*j:], j<<21|ptePresent|pteWritable|ptePageSize)
	}
	for _, w := range []struct {
		addr uint64
		b    []byte
	}{{PML4Addr, pml4}, {PDPTAddr, pdpt}, {PDAddr, pd}} {
		if err := m.Write(w.addr, w.b); err != nil {
			return err
		}
	}
	return nil
}
