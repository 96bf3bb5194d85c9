package configs

import "fmt"

// How many virtio devices each transport takes: PCI bus 0 has 32 slots
// and the host bridge has the first; each virtio-mmio device needs an
// IOAPIC pin of its own. vmm refuses the same counts (its tests check
// that the numbers agree).
const (
	MaxPCIDevices  = 31
	MaxMMIODevices = 9
)

// checkDeviceCount refuses a config with more virtio devices on a
// transport than it has room for, naming the first device over the limit
// (a config error, not a failure of the VM build).
func (c *VMConfig) checkDeviceCount() error {
	count := map[Transport]int{}
	add := func(path string, t Transport) error {
		limit := MaxPCIDevices
		if t == TransportMMIO {
			limit = MaxMMIODevices
		} else {
			t = TransportPCI
		}
		count[t]++
		if count[t] > limit {
			return fieldErrorf(path, "is virtio device %d on the %s transport: at most %d fit (network interfaces, drives, vsock and entropy together)", count[t], t, limit)
		}
		return nil
	}
	for i, n := range c.NetworkInterfaces {
		t := TransportPCI
		if c.Flint != nil {
			t = c.Flint.NetworkInterfaces[n.IfaceID].Transport
		}
		if err := add(fmt.Sprintf("network-interfaces[%d]", i), t); err != nil {
			return err
		}
	}
	for i, d := range c.Drives {
		if err := add(fmt.Sprintf("drives[%d]", i), c.DriveTransport(d.DriveID)); err != nil {
			return err
		}
	}
	if c.Vsock != nil {
		if err := add("vsock", c.VsockTransport()); err != nil {
			return err
		}
	}
	if c.Entropy != nil {
		return add("entropy", c.EntropyTransport())
	}
	return nil
}
