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

// LAPIC register offsets in LAPICState.Regs (Intel SDM vol. 3, table
// 11-1): each 256-bit vector set is eight 32-bit registers 16 bytes apart.
const (
	lapicTPR = 0x80
	lapicPPR = 0xa0
	lapicISR = 0x100
	lapicIRR = 0x200
)

// TPR is the task-priority register.
func (l *LAPICState) TPR() uint32 { return l.reg(lapicTPR) }

// PPR is the processor-priority register: the class a vector must exceed
// to be delivered.
func (l *LAPICState) PPR() uint32 { return l.reg(lapicPPR) }

// IRR lists the vectors requested and not yet delivered, lowest first.
func (l *LAPICState) IRR() []uint8 { return l.vectors(lapicIRR) }

// ISR lists the vectors delivered and not yet acknowledged (EOI), lowest
// first.
func (l *LAPICState) ISR() []uint8 { return l.vectors(lapicISR) }

func (l *LAPICState) reg(off int) uint32 {
	return uint32(l.Regs[off]) | uint32(l.Regs[off+1])<<8 | uint32(l.Regs[off+2])<<16 | uint32(l.Regs[off+3])<<24
}

// vectors decodes the 256-bit vector set at off.
func (l *LAPICState) vectors(off int) []uint8 {
	var out []uint8
	for i := range 8 {
		bits := l.reg(off + 16*i)
		for b := range 32 {
			if bits&(1<<b) != 0 {
				out = append(out, uint8(32*i+b))
			}
		}
	}
	return out
}

// IOAPICPins is the in-kernel IOAPIC's pin count (KVM_IOAPIC_NUM_PINS).
const IOAPICPins = 24

// IOAPICState is struct kvm_ioapic_state: the in-kernel IOAPIC's
// registers, as KVM_GET_IRQCHIP reports them.
type IOAPICState struct {
	BaseAddress uint64
	IORegSel    uint32
	ID          uint32
	IRR         uint32 // pins whose request is latched
	_           uint32
	RedirTbl    [IOAPICPins]RedirEntry
}

// RedirEntry is one IOAPIC redirection-table entry (82093AA layout).
type RedirEntry uint64

// Vector is the interrupt vector the pin delivers.
func (e RedirEntry) Vector() uint8 { return uint8(e) }

// Masked reports the mask bit.
func (e RedirEntry) Masked() bool { return e&(1<<16) != 0 }

// Level reports a level-triggered pin (false: edge).
func (e RedirEntry) Level() bool { return e&(1<<15) != 0 }

// RemoteIRR reports a level interrupt delivered and not yet EOIed.
func (e RedirEntry) RemoteIRR() bool { return e&(1<<14) != 0 }

// Dest is the destination field (an APIC ID, or a logical set).
func (e RedirEntry) Dest() uint8 { return uint8(e >> 56) }

// DeliveryMode is the delivery mode field: 0 fixed, 1 lowest priority,
// 2 SMI, 4 NMI, 5 INIT, 7 ExtINT.
func (e RedirEntry) DeliveryMode() uint8 { return uint8(e>>8) & 7 }

// LogicalDest reports a logical destination (Dest is then a set of
// logical APIC IDs); false means physical (an APIC ID).
func (e RedirEntry) LogicalDest() bool { return e&(1<<11) != 0 }

// irqchipArgs is struct kvm_irqchip: a chip id and a 512-byte state.
type irqchipArgs struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// VCPUEvents is the part of struct kvm_vcpu_events a dump reads: the
// interrupt KVM is injecting, and whether the guest is in an interrupt
// shadow (STI, MOV SS), which delays the next interrupt by an instruction.
type VCPUEvents struct {
	Exception    [8]byte
	IntrInjected uint8
	IntrNr       uint8
	IntrSoft     uint8
	IntrShadow   uint8
	NMIInjected  uint8
	NMIPending   uint8
	NMIMasked    uint8
	_            uint8
	SIPIVector   uint32
	Flags        uint32
	_            [40]byte // smi, triple_fault, reserved, exception payload
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
