package vmm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestMMIOCmdline: with MMIOCmdline, each virtio-mmio device (here two
// drives, after a PCI one that must not appear) reaches the guest's
// command line as virtio_mmio.device=SIZE@BASE:IRQ, in attach order;
// without it the command line is as given.
func TestMMIOCmdline(t *testing.T) {
	img := filepath.Join(t.TempDir(), "d.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	drives := []DriveConfig{{ID: "p", Path: img, Transport: "pci"}, {ID: "a", Path: img, Transport: "mmio"}, {ID: "b", Path: img, Transport: "mmio"}}
	prog := vmmtest.Concat(vmmtest.PrintCmdline, vmmtest.ResetViaI8042)
	res, out := bootTiny(t, prog, func(c *Config) { c.Drives, c.MMIOCmdline = drives, true })
	want := "console=ttyS0 flint-test virtio_mmio.device=0x200@0xe0000000:5 virtio_mmio.device=0x200@0xe0001000:6"
	if res.Reason != stopReset || out != want {
		t.Fatalf("stopped with %v, console %q, want %q", res.Reason, out, want)
	}
	if _, out := bootTiny(t, prog, func(c *Config) { c.Drives = drives }); out != "console=ttyS0 flint-test" {
		t.Fatalf("without MMIOCmdline: %q", out)
	}
}
