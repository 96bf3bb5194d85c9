package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/kvm"
)

// Addresses KVM needs for Intel real-mode emulation: three pages of TSS and
// one identity-map page, at the top of the 32-bit hole below the BIOS area,
// away from guest RAM and every device window.
const (
	tssAddr         = 0xfffbd000
	identityMapAddr = 0xfffbc000
)

// MSRs set on every vCPU before it first runs.
const (
	msrIA32SysenterCS  = 0x174
	msrIA32SysenterESP = 0x175
	msrIA32SysenterEIP = 0x176
	msrSTAR            = 0xc0000081
	msrLSTAR           = 0xc0000082
	msrCSTAR           = 0xc0000083
	msrSyscallMask     = 0xc0000084
	msrKernelGSBase    = 0xc0000102
	msrIA32MiscEnable  = 0x1a0
	msrMTRRDefType     = 0x2ff

	miscEnableFastString = 1 << 0
	mtrrEnable           = 1 << 11
	mtrrTypeWriteBack    = 6
)

// bootMSRs are the architectural reset values Linux expects, plus the MTRR
// default type set to write-back: without it the guest treats all RAM as
// uncached and runs orders of magnitude slower. IA32_TSC is left alone: KVM
// starts every vCPU's TSC in sync, and writing it per vCPU at slightly
// different times makes the guest mark the TSC unstable.
func bootMSRs() []kvm.MSR {
	return []kvm.MSR{
		{Index: msrIA32SysenterCS}, {Index: msrIA32SysenterESP}, {Index: msrIA32SysenterEIP},
		{Index: msrSTAR}, {Index: msrLSTAR}, {Index: msrCSTAR}, {Index: msrSyscallMask},
		{Index: msrKernelGSBase},
		{Index: msrIA32MiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWriteBack},
	}
}

// Local APIC register offsets and LVT delivery modes.
const (
	apicLVTLINT0        = 0x350
	apicLVTLINT1        = 0x360
	apicDeliveryModeExt = 7 << 8 // ExtINT: LINT0 carries the PIC's INTR
	apicDeliveryModeNMI = 4 << 8
	apicLVTMask         = 1 << 16
)

// setupLAPIC programs LINT0 as ExtINT (so the legacy PIC's interrupts reach
// the BSP through virtual wire mode) and LINT1 as NMI, as firmware does.
func setupLAPIC(v *kvm.VCPU) error {
	l, err := v.LAPIC()
	if err != nil {
		return err
	}
	set := func(off int, mode uint32) {
		r := binary.LittleEndian.Uint32(l.Regs[off:])
		r = r&^(0x700|apicLVTMask) | mode
		binary.LittleEndian.PutUint32(l.Regs[off:], r)
	}
	set(apicLVTLINT0, apicDeliveryModeExt)
	set(apicLVTLINT1, apicDeliveryModeNMI)
	return v.SetLAPIC(l)
}

// defaultFPU is the x87/SSE state after FNINIT with SSE exceptions masked.
func defaultFPU() kvm.FPU {
	return kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}
}

// setupVCPU gives vCPU v the CPUID table, MSRs, FPU and LAPIC state every
// vCPU starts with. The BSP then gets the kernel's entry state; the others
// wait in the kernel for INIT/SIPI from the BSP (KVM starts non-boot vCPUs
// of a VM with an in-kernel irqchip in the wait-for-SIPI state).
func setupVCPU(v *kvm.VCPU, supported []kvm.CPUIDEntry, ncpus int) error {
	if err := v.SetCPUID2(kvm.VCPUCPUID(supported, v.ID(), ncpus)); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	if err := v.SetMSRs(bootMSRs()); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	if err := v.SetFPU(defaultFPU()); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	if err := setupLAPIC(v); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	return nil
}

// entrySregs returns s with the segment, descriptor-table and control
// registers of boot's entry state e (64-bit or PVH entry); the rest of s
// (the APIC base, the interrupt bitmap) stays as KVM reported it.
func entrySregs(s kvm.Sregs, e *boot.Entry) kvm.Sregs {
	s.CS, s.DS, s.ES, s.FS = kvmSegment(e.CS), kvmSegment(e.DS), kvmSegment(e.ES), kvmSegment(e.FS)
	s.GS, s.SS, s.TR = kvmSegment(e.GS), kvmSegment(e.SS), kvmSegment(e.TR)
	s.GDT = kvm.DTable{Base: e.GDT.Base, Limit: e.GDT.Limit}
	s.IDT = kvm.DTable{Base: e.IDT.Base, Limit: e.IDT.Limit}
	s.CR0, s.CR3, s.CR4, s.EFER = e.CR0, e.CR3, e.CR4, e.EFER
	return s
}

// entryRegs returns the general registers of boot's entry state e: RIP,
// RSP, RFLAGS, and RSI (the zero page, 64-bit entry) or RBX (the
// hvm_start_info, PVH entry); the others are zero.
func entryRegs(e *boot.Entry) kvm.Regs {
	return kvm.Regs{RIP: e.RIP, RSP: e.RSP, RSI: e.RSI, RBX: e.RBX, RFLAGS: e.RFLAGS}
}
