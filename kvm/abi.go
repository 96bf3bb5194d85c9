package kvm

// ABI structs mirroring <linux/kvm.h> and <asm/kvm.h> on x86_64. Field order,
// types and padding match the kernel's layout exactly (TestABISizes pins the
// sizes); they are passed to ioctls by pointer.

// Regs is struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment: a segment register's hidden state.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable: a descriptor-table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, control and descriptor-table
// registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64
}

// FPU is struct kvm_fpu: x87 and SSE state.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// LAPICState is struct kvm_lapic_state: the local APIC's 1 KiB register
// page.
type LAPICState struct {
	Regs [1024]byte
}

// CPUIDEntry is struct kvm_cpuid_entry2: one CPUID leaf/subleaf.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf (Index) matters.
const CPUIDFlagSignificantIndex = 1

// MSR is struct kvm_msr_entry: one model-specific register.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// MPState is struct kvm_mp_state.
type MPState struct {
	State uint32
}

// Multiprocessor states for MPState.State.
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

type cpuid2Header struct {
	NEnt uint32
	_    uint32
}

type msrsHeader struct {
	NMSRs uint32
	_     uint32
}

type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

type irqfdArgs struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// irqfd flags.
const (
	irqfdFlagDeassign = 1 << 0
)

type ioeventfdArgs struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// ioeventfd flags.
const (
	ioeventfdFlagDatamatch = 1 << 0
	ioeventfdFlagPIO       = 1 << 1
	ioeventfdFlagDeassign  = 1 << 2
)

type msiArgs struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

type irqRoutingHeader struct {
	NR    uint32
	Flags uint32
}

// IRQRoutingEntry is struct kvm_irq_routing_entry. Build one with
// IRQChipRoute or MSIRoute.
type IRQRoutingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	U     [8]uint32
}

// Routing entry types.
const (
	IRQRoutingIRQChip = 1
	IRQRoutingMSI     = 2
)

// In-kernel irqchip ids for IRQChipRoute.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// IRQChipRoute routes gsi to pin of an in-kernel interrupt controller.
func IRQChipRoute(gsi, chip, pin uint32) IRQRoutingEntry {
	e := IRQRoutingEntry{GSI: gsi, Type: IRQRoutingIRQChip}
	e.U[0], e.U[1] = chip, pin
	return e
}

// MSIRoute routes gsi to an MSI message.
func MSIRoute(gsi uint32, addr uint64, data uint32) IRQRoutingEntry {
	e := IRQRoutingEntry{GSI: gsi, Type: IRQRoutingMSI}
	e.U[0], e.U[1], e.U[2] = uint32(addr), uint32(addr>>32), data
	return e
}
