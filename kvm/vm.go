package kvm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine.
type VM struct {
	fd       int
	mmapSize int
}

// Close closes the VM fd. vCPUs keep the VM alive until they are closed.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return nil
	}
	err := unix.Close(vm.fd)
	vm.fd = -1
	return err
}

// SetTSSAddr places the three-page TSS region Intel VMX needs for real mode
// (KVM_SET_TSS_ADDR). It must lie outside guest RAM and the MMIO devices.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctl(vm.fd, kvmSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the one-page identity map VMX needs for real
// mode (KVM_SET_IDENTITY_MAP_ADDR).
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if err := setStruct(vm.fd, kvmSetIdentityMapAddr, &addr); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and local APICs.
// Call it before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// pitSpeakerDummy asks KVM to claim the PC speaker port 0x61 as well.
const pitSpeakerDummy = 1

// CreatePIT2 creates the in-kernel i8254 PIT (ports 0x40-0x43, 0x61).
func (vm *VM) CreatePIT2() error {
	cfg := pitConfig{Flags: pitSpeakerDummy}
	if err := setStruct(vm.fd, kvmCreatePIT2, &cfg); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// SetUserMemoryRegion maps host (an mmap that outlives the VM) at guest
// physical address guestAddr in the given slot.
func (vm *VM) SetUserMemoryRegion(slot uint32, guestAddr uint64, host []byte) error {
	r := userspaceMemoryRegion{
		Slot:          slot,
		GuestPhysAddr: guestAddr,
		MemorySize:    uint64(len(host)),
		UserspaceAddr: hostAddr(host),
	}
	if err := setStruct(vm.fd, kvmSetUserMemRegion, &r); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d at %#x (%d bytes): %w", slot, guestAddr, len(host), err)
	}
	return nil
}

// SetIRQLine drives interrupt line irq (a GSI) high or low.
func (vm *VM) SetIRQLine(irq uint32, high bool) error {
	l := irqLevel{IRQ: irq}
	if high {
		l.Level = 1
	}
	if err := setStruct(vm.fd, kvmIRQLine, &l); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d: %w", irq, err)
	}
	return nil
}

// SetGSIRouting replaces the whole GSI routing table.
func (vm *VM) SetGSIRouting(entries []IRQRoutingEntry) error {
	_, _, err := varIoctl(vm.fd, kvmSetGSIRouting, irqRoutingHeader{NR: uint32(len(entries))}, entries)
	if err != nil {
		return fmt.Errorf("KVM_SET_GSI_ROUTING (%d entries): %w", len(entries), err)
	}
	return nil
}

// DefaultGSIRouting is the routing KVM_CREATE_IRQCHIP installs: GSIs 0-15
// to both PICs (except GSI 2, the cascade) and the IOAPIC (ISA IRQ 0 on
// IOAPIC pin 2), GSIs 16-23 to the IOAPIC only. Extend it with MSI routes.
func DefaultGSIRouting() []IRQRoutingEntry {
	var out []IRQRoutingEntry
	for gsi := uint32(0); gsi < 24; gsi++ {
		if gsi < 16 && gsi != 2 {
			chip := uint32(IRQChipPICMaster)
			pin := gsi
			if gsi >= 8 {
				chip, pin = IRQChipPICSlave, gsi-8
			}
			out = append(out, IRQChipRoute(gsi, chip, pin))
		}
		pin := gsi
		if gsi == 0 {
			pin = 2
		}
		if gsi != 2 {
			out = append(out, IRQChipRoute(gsi, IRQChipIOAPIC, pin))
		}
	}
	return out
}

// IOAPIC reads the in-kernel IOAPIC's state (KVM_GET_IRQCHIP).
func (vm *VM) IOAPIC() (IOAPICState, error) {
	var a irqchipArgs
	a.ChipID = IRQChipIOAPIC
	var st IOAPICState
	if err := setStruct(vm.fd, kvmGetIRQChip, &a); err != nil {
		return st, fmt.Errorf("KVM_GET_IRQCHIP (IOAPIC): %w", err)
	}
	return decodeIOAPIC(a.Chip[:]), nil
}

// decodeIOAPIC reads struct kvm_ioapic_state from chip (little-endian).
func decodeIOAPIC(chip []byte) IOAPICState {
	le := binary.LittleEndian
	st := IOAPICState{
		BaseAddress: le.Uint64(chip[0:]),
		IORegSel:    le.Uint32(chip[8:]),
		ID:          le.Uint32(chip[12:]),
		IRR:         le.Uint32(chip[16:]),
	}
	for i := range st.RedirTbl {
		st.RedirTbl[i] = RedirEntry(le.Uint64(chip[24+8*i:]))
	}
	return st
}

// RegisterIRQFD makes a write to eventfd efd inject GSI gsi.
func (vm *VM) RegisterIRQFD(efd int, gsi uint32) error {
	a := irqfdArgs{FD: uint32(efd), GSI: gsi}
	if err := setStruct(vm.fd, kvmIRQFD, &a); err != nil {
		return fmt.Errorf("KVM_IRQFD fd %d gsi %d: %w", efd, gsi, err)
	}
	return nil
}

// UnregisterIRQFD undoes RegisterIRQFD.
func (vm *VM) UnregisterIRQFD(efd int, gsi uint32) error {
	a := irqfdArgs{FD: uint32(efd), GSI: gsi, Flags: irqfdFlagDeassign}
	if err := setStruct(vm.fd, kvmIRQFD, &a); err != nil {
		return fmt.Errorf("KVM_IRQFD deassign fd %d gsi %d: %w", efd, gsi, err)
	}
	return nil
}

// IOEventFD describes a guest write that KVM turns into an eventfd signal
// instead of an exit.
type IOEventFD struct {
	FD   int    // eventfd to signal
	Addr uint64 // guest address (port number when PIO)
	Len  uint32 // access width to match: 0 (any), 1, 2, 4 or 8
	PIO  bool   // port I/O rather than MMIO
	// Datamatch, when set, signals only for writes of Value.
	Datamatch bool
	Value     uint64
}

func (e IOEventFD) args(deassign bool) ioeventfdArgs {
	a := ioeventfdArgs{Addr: e.Addr, Len: e.Len, FD: int32(e.FD), Datamatch: e.Value}
	if e.PIO {
		a.Flags |= ioeventfdFlagPIO
	}
	if e.Datamatch {
		a.Flags |= ioeventfdFlagDatamatch
	}
	if deassign {
		a.Flags |= ioeventfdFlagDeassign
	}
	return a
}

// RegisterIOEventFD installs e.
func (vm *VM) RegisterIOEventFD(e IOEventFD) error {
	a := e.args(false)
	if err := setStruct(vm.fd, kvmIOEventFD, &a); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD at %#x: %w", e.Addr, err)
	}
	return nil
}

// UnregisterIOEventFD removes e (all fields must match the registration).
func (vm *VM) UnregisterIOEventFD(e IOEventFD) error {
	a := e.args(true)
	if err := setStruct(vm.fd, kvmIOEventFD, &a); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD deassign at %#x: %w", e.Addr, err)
	}
	return nil
}

// SignalMSI injects one MSI message.
func (vm *VM) SignalMSI(addr uint64, data uint32) error {
	m := msiArgs{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	if err := setStruct(vm.fd, kvmSignalMSI, &m); err != nil {
		return fmt.Errorf("KVM_SIGNAL_MSI: %w", err)
	}
	return nil
}

// CreateVCPU creates vCPU id and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(fd))
	run, err := unix.Mmap(int(fd), 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d: %w", id, err)
	}
	if len(run) < runUnionOffset+runUnionSize {
		unix.Munmap(run)
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm_run of vCPU %d is only %d bytes", id, len(run))
	}
	return &VCPU{id: id, fd: int(fd), run: run}, nil
}
