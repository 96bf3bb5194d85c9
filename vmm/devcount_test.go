package vmm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestDeviceLimitsAgree: configs refuses the device counts vmm has room
// for: the PCI slots after the host bridge, the virtio-mmio pins.
func TestDeviceLimitsAgree(t *testing.T) {
	if configs.MaxPCIDevices != pci.NumDevices-1 || configs.MaxMMIODevices != len(mmioGSIs) {
		t.Fatalf("configs %d pci / %d mmio; vmm has %d PCI slots after the host bridge, %d mmio pins",
			configs.MaxPCIDevices, configs.MaxMMIODevices, pci.NumDevices-1, len(mmioGSIs))
	}
}

// TestTooManyDevices: more drives and interfaces than a transport has
// room for is a ConfigError from New (exit code 2) that names the limit,
// before any VM resource exists; it was a plain error from the attach
// ("pci: bus 0 is full", "no free interrupt pin"), exit code 1.
func TestTooManyDevices(t *testing.T) {
	drives := func(n int, transport string) []DriveConfig {
		var out []DriveConfig
		for i := range n {
			out = append(out, DriveConfig{ID: fmt.Sprintf("d%d", i), Path: "/nonexistent", Transport: transport})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		c    func(c *Config)
		want string // "" when valid
	}{
		{"31 pci drives", func(c *Config) { c.Drives = drives(31, "") }, ""},
		{"32 pci drives", func(c *Config) { c.Drives = drives(32, "pci") }, "32 virtio devices on the pci transport: at most 31"},
		{"40 drives", func(c *Config) { c.Drives = drives(40, "") }, "at most 31"},
		{"30 drives, entropy, vsock", func(c *Config) {
			c.Drives = drives(30, "")
			c.Entropy = &EntropyConfig{}
			c.Vsock = &VsockConfig{GuestCID: 3, UDSPath: "/tmp/v.sock"}
		}, "32 virtio devices on the pci transport"},
		{"9 mmio drives", func(c *Config) { c.Drives = drives(9, "mmio") }, ""},
		{"9 mmio drives, one mmio interface", func(c *Config) {
			c.Drives = drives(9, "mmio")
			n := configs.DefaultNetInterface("tap0")
			n.Transport = configs.TransportMMIO
			c.Net = []configs.NetInterface{n}
		}, "10 virtio devices on the mmio transport: at most 9"},
		{"command streams and 8 mmio drives", func(c *Config) {
			c.Drives = drives(8, "mmio")
			c.Command = &CommandConfig{}
		}, "on the mmio transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64}
			tc.c(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
			_, err = New(c)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want a ConfigError %q", err, tc.want)
			}
		})
	}
}
