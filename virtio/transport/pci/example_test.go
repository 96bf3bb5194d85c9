package pci_test

import (
	"fmt"

	"github.com/flintvm/flint/devices"
	pcidev "github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/transport/pci"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

// Example shows how a VMM wires a virtio-pci function: a BAR address from
// its PCI MMIO window, its MMIO bus (the transport maps and moves the BAR
// itself), an MSI-X router and an INTx line, and a slot on the PCI bus.
func Example() {
	ram := make([]byte, 1<<20)
	m, _ := mem.FromRegions(mem.NewRegion(0, ram))
	mmioBus := devices.NewBus("mmio")
	pciBus := pcidev.NewBus(pcidev.BusConfig{})

	t, err := pci.New(pci.Config{
		Device:   transporttest.NewDevice(), // virtio/netdev in the VMM
		Mem:      m,
		BARAddr:  0xc000_0000, // aligned to pci.BARSize, inside the window in _CRS
		Bus:      mmioBus,
		MSIX:     transporttest.NewRouter(), // GSI routes + irqfds in the VMM
		INTx:     &transporttest.Line{},     // KVM_IRQ_LINE on the slot's GSI
		Notifier: transporttest.NewNotifier(),
	})
	if err != nil {
		panic(err)
	}
	defer t.Close()
	slot, err := pciBus.AttachNext(t)
	if err != nil {
		panic(err)
	}
	// ACPI: acpi.PCIInterrupt{Slot: uint8(slot), Pin: 0, GSI: gsi} in the
	// host bridge's INTx routes, and the interrupt line register:
	t.ConfigSpace().SetUint8(pcidev.RegInterruptLine, 16)
	fmt.Printf("slot %d, device %#x, BAR size %#x\n", slot, t.ConfigSpace().Uint16(pcidev.RegDeviceID), pci.BARSize)
	// Output: slot 1, device 0x1041, BAR size 0x8000
}
