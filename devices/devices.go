// Package devices owns the guest's I/O buses (port I/O and MMIO) and the small
// interfaces devices implement and use: Device for register access, IRQLine
// for raising interrupts. Legacy platform devices live in sub-packages
// (serial, i8042, pci, ...).
//
// Nothing under devices imports the kvm package: a device raises interrupts
// through an IRQLine the composition root (vmm) provides, so the same device
// runs behind KVM, vhost-user or a test.
package devices

// Device is a guest-visible register window. offset is relative to the base
// address the device was inserted at on a Bus; len(data) is the access width
// (1, 2, 4 or 8 bytes, occasionally more for MMIO). Read fills data; bytes a
// device does not implement read as zero (the bus zeroes data first). A
// device must not retain data.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// IRQLine is one interrupt input of the guest's interrupt controller.
type IRQLine interface {
	// SetLevel drives the line high or low. Edge-triggered consumers see a
	// rising edge when the line goes from low to high.
	SetLevel(high bool) error
}

// IRQTrigger delivers one edge (or MSI) interrupt, as an irqfd does.
type IRQTrigger interface {
	Trigger() error
}
