package vmm

import (
	"fmt"

	"github.com/flintvm/flint/configs"
)

// checkDeviceCount refuses a Config with more virtio devices on a
// transport than the machine has room for (configs.MaxPCIDevices PCI
// slots, configs.MaxMMIODevices virtio-mmio interrupt pins), so that too
// many devices is a ConfigError from Validate (exit code 2) before any
// VM resource exists, not a failed attach half-way through New.
func (c *Config) checkDeviceCount() error {
	pci, mmio := 0, 0
	add := func(t string) {
		if configs.Transport(t) == configs.TransportMMIO {
			mmio++
		} else {
			pci++
		}
	}
	for _, n := range c.Net {
		add(string(n.Transport))
	}
	for _, d := range c.Drives {
		add(d.Transport)
	}
	if c.Vsock != nil {
		add(c.Vsock.Transport)
	}
	if c.Entropy != nil {
		add(c.Entropy.Transport)
	}
	if c.Command != nil {
		// The command's stream devices and shares (CommandTransport).
		mmio += 2 + len(c.Command.Shares)
		if c.Command.Stdin != nil {
			mmio++
		}
	}
	if pci > configs.MaxPCIDevices {
		return fmt.Errorf("%d virtio devices on the pci transport: at most %d (one PCI slot each)", pci, configs.MaxPCIDevices)
	}
	if mmio > configs.MaxMMIODevices {
		return fmt.Errorf("%d virtio devices on the mmio transport: at most %d (one interrupt pin each)", mmio, configs.MaxMMIODevices)
	}
	return nil
}
