package kvm

import (
	"testing"
	"unsafe"
)

const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
	kvmio    = 0xAE
)

func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | kvmio<<8 | nr }
func io(nr uintptr) uintptr             { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr      { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr      { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr     { return ioc(iocRead|iocWrite, nr, size) }

func TestIoctlNumbersMatchEncoding(t *testing.T) {
	var (
		region  userspaceMemoryRegion
		irq     irqLevel
		routing irqRoutingHeader
		irqfd   irqfdArgs
		pit     pitConfig
		ioev    ioeventfdArgs
		msi     msiArgs
		regs    Regs
		sregs   Sregs
		msrs    msrsHeader
		fpu     FPU
		lapic   LAPICState
		cpuid   cpuid2Header
		mp      MPState
		chip    irqchipArgs
		events  VCPUEvents
		u64     uint64
	)
	cases := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"KVM_GET_API_VERSION", kvmGetAPIVersion, io(0x00)},
		{"KVM_CREATE_VM", kvmCreateVM, io(0x01)},
		{"KVM_CHECK_EXTENSION", kvmCheckExtension, io(0x03)},
		{"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, io(0x04)},
		{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, iowr(0x05, unsafe.Sizeof(cpuid))},
		{"KVM_CREATE_VCPU", kvmCreateVCPU, io(0x41)},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemRegion, iow(0x46, unsafe.Sizeof(region))},
		{"KVM_SET_TSS_ADDR", kvmSetTSSAddr, io(0x47)},
		{"KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, iow(0x48, unsafe.Sizeof(u64))},
		{"KVM_CREATE_IRQCHIP", kvmCreateIRQChip, io(0x60)},
		{"KVM_IRQ_LINE", kvmIRQLine, iow(0x61, unsafe.Sizeof(irq))},
		{"KVM_GET_IRQCHIP", kvmGetIRQChip, iowr(0x62, unsafe.Sizeof(chip))},
		{"KVM_SET_GSI_ROUTING", kvmSetGSIRouting, iow(0x6a, unsafe.Sizeof(routing))},
		{"KVM_IRQFD", kvmIRQFD, iow(0x76, unsafe.Sizeof(irqfd))},
		{"KVM_CREATE_PIT2", kvmCreatePIT2, iow(0x77, unsafe.Sizeof(pit))},
		{"KVM_IOEVENTFD", kvmIOEventFD, iow(0x79, unsafe.Sizeof(ioev))},
		{"KVM_SIGNAL_MSI", kvmSignalMSI, iow(0xa5, unsafe.Sizeof(msi))},
		{"KVM_RUN", kvmRun, io(0x80)},
		{"KVM_GET_REGS", kvmGetRegs, ior(0x81, unsafe.Sizeof(regs))},
		{"KVM_SET_REGS", kvmSetRegs, iow(0x82, unsafe.Sizeof(regs))},
		{"KVM_GET_SREGS", kvmGetSregs, ior(0x83, unsafe.Sizeof(sregs))},
		{"KVM_SET_SREGS", kvmSetSregs, iow(0x84, unsafe.Sizeof(sregs))},
		{"KVM_GET_MSRS", kvmGetMSRs, iowr(0x88, unsafe.Sizeof(msrs))},
		{"KVM_SET_MSRS", kvmSetMSRs, iow(0x89, unsafe.Sizeof(msrs))},
		{"KVM_GET_FPU", kvmGetFPU, ior(0x8c, unsafe.Sizeof(fpu))},
		{"KVM_SET_FPU", kvmSetFPU, iow(0x8d, unsafe.Sizeof(fpu))},
		{"KVM_GET_LAPIC", kvmGetLAPIC, ior(0x8e, unsafe.Sizeof(lapic))},
		{"KVM_SET_LAPIC", kvmSetLAPIC, iow(0x8f, unsafe.Sizeof(lapic))},
		{"KVM_SET_CPUID2", kvmSetCPUID2, iow(0x90, unsafe.Sizeof(cpuid))},
		{"KVM_GET_MP_STATE", kvmGetMPState, ior(0x98, unsafe.Sizeof(mp))},
		{"KVM_SET_MP_STATE", kvmSetMPState, iow(0x99, unsafe.Sizeof(mp))},
		{"KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents, ior(0x9f, unsafe.Sizeof(events))},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %#x, encoding gives %#x", c.name, c.got, c.want)
		}
	}
}

// TestABISizes pins the sizes of the structs the kernel reads and writes to
// the sizes in <linux/kvm.h> and <asm/kvm.h> for x86_64.
func TestABISizes(t *testing.T) {
	sizes := []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 1024},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40},
		{"kvm_msr_entry", unsafe.Sizeof(MSR{}), 16},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userspaceMemoryRegion{}), 32},
		{"kvm_irqfd", unsafe.Sizeof(irqfdArgs{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfdArgs{}), 64},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 64},
		{"kvm_irq_routing_entry", unsafe.Sizeof(IRQRoutingEntry{}), 48},
		{"kvm_msi", unsafe.Sizeof(msiArgs{}), 32},
		{"kvm_irqchip", unsafe.Sizeof(irqchipArgs{}), 520},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 64},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("sizeof(%s) = %d, kernel has %d", s.name, s.got, s.want)
		}
	}
}
