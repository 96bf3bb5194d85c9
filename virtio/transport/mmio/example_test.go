package mmio_test

import (
	"fmt"

	"github.com/flintvm/flint/devices"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/transport/mmio"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

// Example shows how a VMM wires a virtio-mmio device: the window on the
// MMIO bus, an edge interrupt (an irqfd in the VMM; a recorder here), an
// optional ioeventfd Notifier, and the guest-visible description.
func Example() {
	ram := make([]byte, 1<<20)
	m, _ := mem.FromRegions(mem.NewRegion(0, ram))
	bus := devices.NewBus("mmio")
	const base, gsi = 0xe000_0000, 5

	t, err := mmio.New(mmio.Config{
		Device:   transporttest.NewDevice(), // virtio/netdev in the VMM
		Mem:      m,
		Base:     base,
		IRQ:      &transporttest.Edge{},       // irqfd on GSI 5
		Notifier: transporttest.NewNotifier(), // KVM ioeventfds
	})
	if err != nil {
		panic(err)
	}
	defer t.Close()
	if err := bus.Insert(t, base, mmio.WindowSize); err != nil {
		panic(err)
	}
	// ACPI: acpi.Device{HID: mmio.ACPIHID, MMIOBase: base,
	// MMIOSize: mmio.WindowSize, IRQ: gsi, LevelTriggered: t.LevelTriggered()}.
	fmt.Println(mmio.ACPIHID, t.LevelTriggered())
	fmt.Println(mmio.CmdlineDevice(base, gsi))
	// Output:
	// LNRO0005 false
	// virtio_mmio.device=0x200@0xe0000000:5
}
