package pci

import (
	"errors"
	"testing"

	pcidev "github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

// TestBARToggleKeepsIOEventFDs (issue 13 finding 12): a guest that turns
// memory decoding off and on again in a loop, the BAR where it was, must
// not make the VMM unregister and register every queue's ioeventfd (two
// KVM_IOEVENTFD ioctls per queue per toggle). The ioeventfds stay where
// they are while decoding is off and move only when the BAR decodes at a
// new address.
func TestBARToggleKeepsIOEventFDs(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(true)
	attaches, detaches := r.notif.Attaches, r.notif.Detaches
	cmd := r.cfgRead(pcidev.RegCommand, 2)
	for i := 0; i < 100; i++ {
		r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
		r.cfgWrite(pcidev.RegCommand, 2, cmd)
	}
	if a, d := r.notif.Attaches-attaches, r.notif.Detaches-detaches; a != 0 || d != 0 {
		t.Fatalf("100 decode toggles at the same address: %d ioeventfd registrations, %d unregistrations", a, d)
	}
	if !r.notif.GuestWrite(r.bar+NotifyOffset+4, 2, 1) {
		t.Fatal("queue 1's ioeventfd gone")
	}
	// Moving the BAR moves them: one unregistration and one registration
	// per queue.
	const newBAR = 0xc010_0000
	r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
	r.cfgWrite(pcidev.RegBAR0, 4, newBAR)
	r.cfgWrite(pcidev.RegBAR0+4, 4, 0)
	r.cfgWrite(pcidev.RegCommand, 2, cmd)
	if a, d := r.notif.Attaches-attaches, r.notif.Detaches-detaches; a != 2 || d != 2 {
		t.Fatalf("BAR moved: %d registrations, %d unregistrations, want 2 and 2", a, d)
	}
	if !r.notif.GuestWrite(newBAR+NotifyOffset+4, 2, 1) || r.notif.GuestWrite(testBAR+NotifyOffset+4, 2, 1) {
		t.Fatal("ioeventfds did not follow the BAR")
	}
}

// TestDevicePanicIsContained (issue 13 finding 11): a device method that
// panics under a BAR or configuration-space access (a vCPU goroutine)
// marks the device DEVICE_NEEDS_RESET instead of ending the process.
func TestDevicePanicIsContained(t *testing.T) {
	for _, method := range []string{"ReadConfig", "WriteConfig"} {
		t.Run(method, func(t *testing.T) {
			r := newRig(t, rigOpt{dev: func(d *transporttest.Device) { d.PanicIn = method }})
			if !r.finalize(r.probe() & virtio.CommonFeatures) {
				t.Fatal("features refused")
			}
			dev := uint64(r.caps[capDeviceCfg][1])
			if method == "ReadConfig" {
				// Through VIRTIO_PCI_CAP_PCI_CFG: a configuration read
				// that performs the BAR read.
				c := int(r.caps[capPCICfg][0])
				r.cfgWrite(c+4, 1, BARIndex)
				r.cfgWrite(c+8, 4, uint32(dev))
				r.cfgWrite(c+12, 4, 1)
				r.cfgRead(c+16, 4)
			} else {
				r.iowrite(dev, 1, 7)
			}
			if s := r.status(); !s.Has(virtio.StatusDeviceNeedsReset) {
				t.Fatalf("status %v after a panic in %s", s, method)
			}
			if n := r.tr.core.Contained(); n != 1 {
				t.Fatalf("%d contained panics counted, want 1", n)
			}
			r.setCommon(cfgDeviceStatus, 1, 0)
			if s := r.status(); s != 0 {
				t.Fatalf("status %v after reset", s)
			}
		})
	}
	r := newRig(t, rigOpt{dev: func(d *transporttest.Device) { d.PanicIn = "Activate" }})
	if !r.finalize(r.probe() & virtio.CommonFeatures) {
		t.Fatal("features refused")
	}
	for i, d := range r.drivers {
		c := d.Config()
		r.setupVQ(i, c.Size, c.DescAddr, c.AvailAddr, c.UsedAddr, NoVector)
		r.setCommon(cfgQueueEnable, 2, 1)
	}
	r.addStatus(virtio.StatusDriverOK)
	if s := r.status(); !s.Has(virtio.StatusDeviceNeedsReset) {
		t.Fatalf("status %v after a panic in Activate", s)
	}
}

// TestBusMasterOffStopsDevice: a driver that clears Bus Master Enable
// (Linux's pci_device_shutdown before kexec, whose next kernel reuses the
// old kernel's ring buffers) must find the device stopped: reset (no more
// DMA into guest memory), its interrupts dead, DEVICE_NEEDS_RESET set
// without an MSI. Memory-decoding toggles leave it running, and a reset
// brings it back.
func TestBusMasterOffStopsDevice(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(true)
	cmd := r.cfgRead(pcidev.RegCommand, 2)
	if cmd&pcidev.CommandBusMaster == 0 {
		t.Fatalf("command %#x: Linux's enumeration sets bus mastering", cmd)
	}
	resets := r.dev.Resets()
	r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
	r.cfgWrite(pcidev.RegCommand, 2, cmd)
	if !r.tr.core.Active() || r.dev.Resets() != resets {
		t.Fatal("a memory-decoding toggle stopped the device")
	}
	irq := r.dev.IRQ()
	triggers := r.router.Vector(0).Triggers
	r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandBusMaster)
	if r.dev.Resets() != resets+1 || r.tr.core.Active() {
		t.Fatalf("bus mastering off: %d device resets (want %d), active %v", r.dev.Resets(), resets+1, r.tr.core.Active())
	}
	if err := irq.Signal(0); !errors.Is(err, transport.ErrInactive) {
		t.Fatalf("Signal after bus mastering went off: %v, want ErrInactive", err)
	}
	if s := r.status(); !s.Has(virtio.StatusDriverOK | virtio.StatusDeviceNeedsReset) {
		t.Fatalf("status %v, want DRIVER_OK and DEVICE_NEEDS_RESET", s)
	}
	if n := r.router.Vector(0).Triggers; n != triggers {
		t.Fatalf("%d config MSIs sent with bus mastering off", n-triggers)
	}
	// The next kernel: bus mastering back on, reset, bring-up.
	r.cfgWrite(pcidev.RegCommand, 2, cmd)
	r.setCommon(cfgDeviceStatus, 1, 0)
	r.bringUp(true)
	if r.dev.Activations() != 2 || !r.tr.core.Active() {
		t.Fatalf("%d activations after the reset, active %v", r.dev.Activations(), r.tr.core.Active())
	}
}
