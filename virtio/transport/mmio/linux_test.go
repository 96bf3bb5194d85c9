package mmio

import (
	"encoding/binary"
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

const testBase = 0xd000_0000

// rig is a virtio-mmio device with a fake device, fake guest memory laid
// out by queuetest drivers (one per device queue), and a recorded
// interrupt.
type rig struct {
	t       *testing.T
	tr      *Transport
	dev     *transporttest.Device
	drivers []*qt.Driver
	edge    *transporttest.Edge
	line    *transporttest.Line
	notif   *transporttest.Notifier
}

type rigOpt struct {
	level    bool
	notifier bool
	quiet    bool // no logging (fuzzing)
	dev      func(*transporttest.Device)
}

func newRig(t *testing.T, o rigOpt) *rig {
	t.Helper()
	r := &rig{t: t, dev: transporttest.NewDevice()}
	if o.dev != nil {
		o.dev(r.dev)
	}
	cfgs := make([]qt.Config, len(r.dev.Maxes))
	for i, mx := range r.dev.Maxes {
		cfgs[i] = qt.Config{Size: mx, Features: virtio.CommonFeatures, DataSize: 64 << 10}
		if o.quiet {
			cfgs[i].DataSize = 4096
		}
	}
	r.drivers = qt.MustNewSet(t, cfgs...)
	cfg := Config{Device: r.dev, Mem: r.drivers[0].Mem, Base: testBase, Log: transporttest.Logger(t)}
	if o.quiet {
		cfg.Log = transporttest.Quiet
	}
	if o.level {
		r.line = &transporttest.Line{}
		cfg.Line = r.line
	} else {
		r.edge = &transporttest.Edge{}
		cfg.IRQ = r.edge
	}
	if o.notifier {
		r.notif = transporttest.NewNotifier()
		cfg.Notifier = r.notif
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.tr = tr
	t.Cleanup(tr.Close)
	return r
}

// readl and writel are the driver's 32-bit register accesses.
func (r *rig) readl(off uint64) uint32 {
	var b [4]byte
	r.tr.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (r *rig) writel(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	r.tr.Write(off, b[:])
}

func (r *rig) status() virtio.Status { return virtio.Status(r.readl(RegStatus)) }

// addStatus is Linux's virtio_add_status: read, OR, write.
func (r *rig) addStatus(s virtio.Status) { r.writel(RegStatus, uint32(r.status()|s)) }

// probe is virtio_mmio_probe plus virtio_dev_probe's start: identity
// checks, reset, ACKNOWLEDGE, DRIVER, feature read (high window first, as
// vm_get_features does).
func (r *rig) probe() uint64 {
	t := r.t
	t.Helper()
	if m := r.readl(RegMagicValue); m != 0x74726976 {
		t.Fatalf("magic %#x", m)
	}
	if v := r.readl(RegVersion); v != 2 {
		t.Fatalf("version %d", v)
	}
	if id := r.readl(RegDeviceID); id != uint32(r.dev.ID) {
		t.Fatalf("device id %d", id)
	}
	r.readl(RegVendorID)
	r.writel(RegStatus, 0) // vm_reset
	if s := r.status(); s != 0 {
		t.Fatalf("status %v after reset", s)
	}
	r.addStatus(virtio.StatusAcknowledge)
	r.addStatus(virtio.StatusDriver)
	r.writel(RegDeviceFeaturesSel, 1)
	f := uint64(r.readl(RegDeviceFeatures)) << 32
	r.writel(RegDeviceFeaturesSel, 0)
	return f | uint64(r.readl(RegDeviceFeatures))
}

// finalize is vm_finalize_features followed by FEATURES_OK and the
// read-back check; it reports whether the device accepted.
func (r *rig) finalize(f uint64) bool {
	r.writel(RegDriverFeaturesSel, 1)
	r.writel(RegDriverFeatures, uint32(f>>32))
	r.writel(RegDriverFeaturesSel, 0)
	r.writel(RegDriverFeatures, uint32(f))
	r.addStatus(virtio.StatusFeaturesOK)
	return r.status().Has(virtio.StatusFeaturesOK)
}

// setupVQ is vm_setup_vq for queue i with the addresses of driver d.
func (r *rig) setupVQ(i int, size uint32, desc, avail, used uint64) {
	t := r.t
	t.Helper()
	r.writel(RegQueueSel, uint32(i))
	if r.readl(RegQueueReady) != 0 {
		t.Fatalf("queue %d already ready", i)
	}
	if r.readl(RegQueueNumMax) == 0 {
		t.Fatalf("queue %d: QueueNumMax 0", i)
	}
	r.writel(RegQueueNum, size)
	r.writel(RegQueueDescLow, uint32(desc))
	r.writel(RegQueueDescHigh, uint32(desc>>32))
	r.writel(RegQueueDriverLow, uint32(avail))
	r.writel(RegQueueDriverHigh, uint32(avail>>32))
	r.writel(RegQueueDeviceLow, uint32(used))
	r.writel(RegQueueDeviceHigh, uint32(used>>32))
	r.writel(RegQueueReady, 1)
}

// setupAll sets up every queue over its queuetest driver's rings.
func (r *rig) setupAll() {
	for i, d := range r.drivers {
		c := d.Config()
		r.setupVQ(i, uint32(c.Size), c.DescAddr, c.AvailAddr, c.UsedAddr)
	}
}

// bringUp runs the whole Linux initialisation and checks activation.
func (r *rig) bringUp(features uint64) {
	t := r.t
	t.Helper()
	offered := r.probe()
	if !r.finalize(offered & features) {
		t.Fatalf("features %#x refused", offered&features)
	}
	r.setupAll()
	r.addStatus(virtio.StatusDriverOK)
	if s := r.status(); s != virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK {
		t.Fatalf("status after DRIVER_OK: %v", s)
	}
	if r.dev.Queues() == nil {
		t.Fatal("device not activated")
	}
}

// interrupt is vm_interrupt: read the status, acknowledge those bits.
func (r *rig) interrupt() uint32 {
	st := r.readl(RegInterruptStatus)
	r.writel(RegInterruptACK, st)
	return st
}
