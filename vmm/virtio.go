package vmm

// Attaching any virtio device to the VM: a virtio-mmio window or a PCI
// function, kept for state dumps.

import (
	"fmt"

	"github.com/flintvm/flint/boot/acpi"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport/mmio"
	vpci "github.com/flintvm/flint/virtio/transport/pci"
)

// attachVirtio shows dev to the guest on transport t: a virtio-mmio
// window (an IOAPIC pin through an irqfd, described in the ACPI DSDT) or,
// by default, a PCI function (MSI-X through GSI routing, INTx fallback).
// Notifications arrive through ioeventfds either way. It returns the
// transport; closing it resets the device. The transport is also kept for
// state dumps, named after the device type and its ordinal (net0, block1)
// with ident (slog key-value pairs naming it further: the TAP, the drive).
func (m *Machine) attachVirtio(dev virtio.Device, t configs.Transport, ident ...any) (virtioTransport, error) {
	tr, err := m.attachTransport(dev, t)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, v := range m.virtio {
		if v.typ == dev.Type() {
			n++
		}
	}
	m.virtio = append(m.virtio, virtioDev{typ: dev.Type(), name: fmt.Sprintf("%v%d", dev.Type(), n), ident: ident, t: tr})
	return tr, nil
}

// attachTransport builds dev's transport on t and attaches it to the VM.
func (m *Machine) attachTransport(dev virtio.Device, t configs.Transport) (virtioTransport, error) {
	if t == configs.TransportMMIO {
		return m.attachMMIO(dev)
	}
	bar := pciMMIOWindow.Start + uint64(m.pciSlots)*vpci.BARSize
	if bar+vpci.BARSize > pciMMIOWindow.End() {
		return nil, fmt.Errorf("no room for another PCI device")
	}
	msix, err := m.irqs.newMSIX(len(dev.QueueMaxSizes()) + 1)
	if err != nil {
		return nil, err
	}
	line := &irqLine{vm: m.vm} // INTA#: a level-triggered IOAPIC pin, its GSI set once the slot is known
	tr, err := vpci.New(vpci.Config{Device: dev, Mem: m.mem, BARAddr: bar, Bus: m.mmio,
		MSIX: msix, INTx: line, Notifier: ioeventNotifier{m.vm}, Log: m.log})
	if err != nil {
		return nil, err
	}
	slot, err := m.plat.pci.AttachNext(tr)
	if err != nil {
		tr.Close()
		return nil, err
	}
	m.pciSlots++
	line.gsi = intxGSIs[slot%len(intxGSIs)]
	tr.ConfigSpace().SetUint8(0x3c, uint8(line.gsi)) // Interrupt Line, for guests without ACPI
	m.pciINTx = append(m.pciINTx, acpi.PCIInterrupt{Slot: uint8(slot), Pin: 0, GSI: line.gsi})
	return tr, nil
}

func (m *Machine) attachMMIO(dev virtio.Device) (virtioTransport, error) {
	base := platformMMIOWindow.Start + uint64(m.mmioSlots)*0x1000
	if base+mmio.WindowSize > platformMMIOWindow.End() {
		return nil, fmt.Errorf("no room for another virtio-mmio device")
	}
	gsi, err := m.irqs.mmioGSI()
	if err != nil {
		return nil, err
	}
	fd, err := m.irqs.newIRQFD(gsi)
	if err != nil {
		return nil, err
	}
	tr, err := mmio.New(mmio.Config{Device: dev, Mem: m.mem, Base: base, IRQ: fd,
		Notifier: ioeventNotifier{m.vm}, Log: m.log})
	if err != nil {
		return nil, err
	}
	if err := m.mmio.Insert(tr, base, mmio.WindowSize); err != nil {
		tr.Close()
		return nil, err
	}
	m.mmioSlots++
	// ACPI _UIDs of LNRO0005 devices must be unique: take the next free.
	uid := uint32(0)
	for _, a := range m.acpiDevices {
		uid = max(uid, a.UID+1)
	}
	m.acpiDevices = append(m.acpiDevices, acpi.Device{HID: mmio.ACPIHID, UID: uid,
		MMIOBase: base, MMIOSize: mmio.WindowSize, IRQ: gsi, LevelTriggered: tr.LevelTriggered()})
	return tr, nil
}
