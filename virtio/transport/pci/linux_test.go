package pci

import (
	"encoding/binary"
	"testing"

	"github.com/flintvm/flint/devices"
	pcidev "github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

const testBAR = 0xc000_0000

// rig is a virtio-pci function on a real PCI bus (configuration
// mechanism #1) and MMIO bus, with a fake device, fake guest memory and
// recorded interrupts. Its methods play Linux's virtio_pci_modern driver.
type rig struct {
	t       testing.TB
	tr      *Transport
	pci     *pcidev.Bus
	mmio    *devices.Bus
	slot    int
	dev     *transporttest.Device
	drivers []*qt.Driver
	router  *transporttest.Router
	line    *transporttest.Line
	notif   *transporttest.Notifier

	// rec, when non-nil, records every access as fuzz ops.
	rec *[]byte

	// Found by probe.
	bar     uint64
	caps    map[uint8][3]uint32 // cfg_type -> {cap offset, bar offset, length}
	mult    uint32
	msixCap int
}

type rigOpt struct {
	noMSIX, noINTx, notifier bool
	quiet                    bool // no logging, small memory (fuzzing)
	dev                      func(*transporttest.Device)
}

var _ MSIXRouter = (*transporttest.Router)(nil)

func newRig(t testing.TB, o rigOpt) *rig {
	t.Helper()
	r := &rig{t: t, dev: transporttest.NewDevice(), pci: pcidev.NewBus(pcidev.BusConfig{}),
		mmio: devices.NewBus("mmio")}
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
	cfg := Config{Device: r.dev, Mem: r.drivers[0].Mem, BARAddr: testBAR, Bus: r.mmio, Log: transporttest.Logger(t)}
	if o.quiet {
		cfg.Log = transporttest.Quiet
	}
	if !o.noMSIX {
		r.router = transporttest.NewRouter()
		cfg.MSIX = r.router
	}
	if !o.noINTx {
		r.line = &transporttest.Line{}
		cfg.INTx = r.line
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
	if r.slot, err = r.pci.AttachNext(tr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return r
}

// Configuration cycles through ports 0xCF8/0xCFC.
func (r *rig) cfgRead(reg, n int) uint32 {
	r.record(opCfgRead, uint64(reg), n, 0)
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], pcidev.ConfigAddress(0, uint8(r.slot), 0, uint16(reg)))
	r.pci.Write(0, a[:])
	b := make([]byte, n)
	r.pci.Read(4+uint64(reg&3), b)
	var v uint32
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint32(b[i])
	}
	return v
}

func (r *rig) cfgWrite(reg, n int, v uint32) {
	r.record(opCfgWrite, uint64(reg), n, uint64(v))
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], pcidev.ConfigAddress(0, uint8(r.slot), 0, uint16(reg)))
	r.pci.Write(0, a[:])
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	r.pci.Write(4+uint64(reg&3), b)
}

// BAR accesses through the MMIO bus, as the guest's ioread/iowrite.
func (r *rig) ioread(off uint64, n int) uint64 {
	r.record(opBARRead, off, n, 0)
	b := make([]byte, n)
	if !r.mmio.Read(r.bar+off, b) {
		r.t.Fatalf("BAR read at %#x not claimed", r.bar+off)
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func (r *rig) iowrite(off uint64, n int, v uint64) {
	r.record(opBARWrite, off, n, v)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	if !r.mmio.Write(r.bar+off, b) {
		r.t.Fatalf("BAR write at %#x not claimed", r.bar+off)
	}
}

func (r *rig) common(f uint64, n int) uint64 { return r.ioread(uint64(r.caps[capCommonCfg][1])+f, n) }
func (r *rig) setCommon(f uint64, n int, v uint64) {
	r.iowrite(uint64(r.caps[capCommonCfg][1])+f, n, v)
}
func (r *rig) status() virtio.Status     { return virtio.Status(r.common(cfgDeviceStatus, 1)) }
func (r *rig) addStatus(s virtio.Status) { r.setCommon(cfgDeviceStatus, 1, uint64(r.status()|s)) }

// enumerate is what the PCI core does: identity, BAR sizing with
// decoding off, enabling memory decoding and bus mastering.
func (r *rig) enumerate() {
	t := r.t
	t.Helper()
	if v := r.cfgRead(pcidev.RegVendorID, 4); v != uint32(DeviceIDBase+uint16(r.dev.ID))<<16|VendorID {
		t.Fatalf("vendor/device %#x", v)
	}
	cmd := r.cfgRead(pcidev.RegCommand, 2)
	r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
	lo, hi := r.cfgRead(pcidev.RegBAR0, 4), r.cfgRead(pcidev.RegBAR0+4, 4)
	r.cfgWrite(pcidev.RegBAR0, 4, 0xffffffff)
	r.cfgWrite(pcidev.RegBAR0+4, 4, 0xffffffff)
	szlo, szhi := r.cfgRead(pcidev.RegBAR0, 4), r.cfgRead(pcidev.RegBAR0+4, 4)
	r.cfgWrite(pcidev.RegBAR0, 4, lo)
	r.cfgWrite(pcidev.RegBAR0+4, 4, hi)
	if lo&0x6 != 0x4 {
		t.Fatalf("BAR0 %#x is not a 64-bit memory BAR", lo)
	}
	size := ^(uint64(szhi)<<32 | uint64(szlo&^0xf)) + 1
	if size != BARSize {
		t.Fatalf("BAR0 size %#x", size)
	}
	r.bar = uint64(hi)<<32 | uint64(lo&^0xf)
	r.cfgWrite(pcidev.RegCommand, 2, cmd|pcidev.CommandMemory|pcidev.CommandBusMaster)
}

// findCaps is virtio_pci_find_capability for every cfg_type, plus the
// MSI-X capability.
func (r *rig) findCaps() {
	t := r.t
	r.caps = map[uint8][3]uint32{}
	if r.cfgRead(pcidev.RegStatus, 2)&pcidev.StatusCapList == 0 {
		t.Fatal("no capability list")
	}
	for pos, ttl := int(r.cfgRead(pcidev.RegCapabilitiesPointer, 1)), 48; pos != 0 && ttl > 0; ttl-- {
		switch r.cfgRead(pos, 1) {
		case pcidev.CapVendorSpecific:
			typ := uint8(r.cfgRead(pos+3, 1))
			if _, seen := r.caps[typ]; !seen {
				if bar := r.cfgRead(pos+4, 1); bar != 0 && typ != capPCICfg {
					t.Fatalf("cap %d in BAR %d", typ, bar)
				}
				r.caps[typ] = [3]uint32{uint32(pos), r.cfgRead(pos+8, 4), r.cfgRead(pos+12, 4)}
			}
			if typ == capNotifyCfg {
				r.mult = r.cfgRead(pos+16, 4)
			}
		case pcidev.CapMSIX:
			r.msixCap = pos
		}
		pos = int(r.cfgRead(pos+1, 1))
	}
	for _, typ := range []uint8{capCommonCfg, capNotifyCfg, capISRCfg, capPCICfg} {
		if _, ok := r.caps[typ]; !ok {
			t.Fatalf("capability type %d missing", typ)
		}
	}
	if r.caps[capCommonCfg][2] < 0x38 {
		t.Fatalf("common cfg length %#x", r.caps[capCommonCfg][2])
	}
}

// enableMSIX is pci_alloc_irq_vectors + request_irq: enable with the
// function masked, program each entry (masked), clear the function mask,
// unmask the entries.
func (r *rig) enableMSIX(n int) {
	ctrl := r.cfgRead(r.msixCap+2, 2)
	if int(ctrl&0x7ff)+1 < n {
		r.t.Fatalf("MSI-X table has %d entries", ctrl&0x7ff+1)
	}
	r.cfgWrite(r.msixCap+2, 2, ctrl|msixCtrlEnable|msixCtrlFuncMsk)
	r.cfgWrite(pcidev.RegCommand, 2, r.cfgRead(pcidev.RegCommand, 2)|pcidev.CommandINTxDisable)
	table := uint64(r.cfgRead(r.msixCap+4, 4) &^ 7)
	for v := 0; v < n; v++ {
		e := table + uint64(v)*16
		r.iowrite(e+msixVectorCtrl, 4, 1)
		r.iowrite(e+msixAddrLo, 4, 0xfee00000|uint64(v)<<12)
		r.iowrite(e+msixAddrHi, 4, 0)
		r.iowrite(e+msixData, 4, 0x40+uint64(v))
	}
	r.cfgWrite(r.msixCap+2, 2, r.cfgRead(r.msixCap+2, 2)&^msixCtrlFuncMsk)
	for v := 0; v < n; v++ {
		r.iowrite(table+uint64(v)*16+msixVectorCtrl, 4, 0)
	}
}

// probe is vp_modern_probe + virtio_dev_probe up to the feature read.
func (r *rig) probe() uint64 {
	t := r.t
	t.Helper()
	r.enumerate()
	r.findCaps()
	r.setCommon(cfgDeviceStatus, 1, 0) // vp_reset: write 0, wait for 0
	if s := r.status(); s != 0 {
		t.Fatalf("status %v after reset", s)
	}
	r.addStatus(virtio.StatusAcknowledge)
	r.addStatus(virtio.StatusDriver)
	r.setCommon(cfgDeviceFeatureSelect, 4, 0)
	f := r.common(cfgDeviceFeature, 4)
	r.setCommon(cfgDeviceFeatureSelect, 4, 1)
	return f | r.common(cfgDeviceFeature, 4)<<32
}

// finalize is vp_finalize_features + FEATURES_OK with its read-back.
func (r *rig) finalize(f uint64) bool {
	r.setCommon(cfgDriverFeatureSelect, 4, 0)
	r.setCommon(cfgDriverFeature, 4, f&0xffffffff)
	r.setCommon(cfgDriverFeatureSelect, 4, 1)
	r.setCommon(cfgDriverFeature, 4, f>>32)
	r.addStatus(virtio.StatusFeaturesOK)
	return r.status().Has(virtio.StatusFeaturesOK)
}

// setupVQ is setup_vq for queue i with vector vec (NoVector: none).
func (r *rig) setupVQ(i int, size uint16, desc, avail, used uint64, vec uint16) {
	t := r.t
	t.Helper()
	if n := r.common(cfgNumQueues, 2); uint64(i) >= n {
		t.Fatalf("queue %d of %d", i, n)
	}
	r.setCommon(cfgQueueSelect, 2, uint64(i))
	if r.common(cfgQueueSize, 2) == 0 || r.common(cfgQueueEnable, 2) != 0 {
		t.Fatalf("queue %d unavailable or already enabled", i)
	}
	r.setCommon(cfgQueueSize, 2, uint64(size))
	for j, a := range []uint64{desc, avail, used} { // vp_iowrite64_twopart
		r.setCommon(cfgQueueDesc+8*uint64(j), 4, a&0xffffffff)
		r.setCommon(cfgQueueDesc+8*uint64(j)+4, 4, a>>32)
	}
	off := r.common(cfgQueueNotifyOff, 2)
	if off*uint64(r.mult)+2 > uint64(r.caps[capNotifyCfg][2]) {
		t.Fatalf("queue %d notify offset %d outside the notify structure", i, off)
	}
	if vec != NoVector {
		r.setCommon(cfgQueueMSIXVector, 2, uint64(vec))
		if got := r.common(cfgQueueMSIXVector, 2); got != uint64(vec) {
			t.Fatalf("queue %d vector %d read back %#x", i, vec, got)
		}
	}
}

// bringUp runs everything with one vector per queue after the config
// vector 0 (MSI-X), or INTx if msix is false.
func (r *rig) bringUp(msix bool) {
	t := r.t
	t.Helper()
	if !r.finalize(r.probe() & virtio.CommonFeatures) {
		t.Fatal("features refused")
	}
	if msix {
		r.enableMSIX(len(r.drivers) + 1)
		r.setCommon(cfgConfigMSIXVector, 2, 0)
		if r.common(cfgConfigMSIXVector, 2) != 0 {
			t.Fatal("config vector not taken")
		}
	}
	for i, d := range r.drivers {
		c := d.Config()
		vec := uint16(NoVector)
		if msix {
			vec = uint16(i + 1)
		}
		r.setupVQ(i, c.Size, c.DescAddr, c.AvailAddr, c.UsedAddr, vec)
	}
	for i := range r.drivers { // "Select and activate all queues"
		r.setCommon(cfgQueueSelect, 2, uint64(i))
		r.setCommon(cfgQueueEnable, 2, 1)
	}
	r.addStatus(virtio.StatusDriverOK)
	if r.dev.Queues() == nil {
		t.Fatalf("device not activated, status %v", r.status())
	}
}

// notify is vp_notify: a 16-bit write of the queue index.
func (r *rig) notify(q int) {
	r.setCommon(cfgQueueSelect, 2, uint64(q))
	off := r.common(cfgQueueNotifyOff, 2)
	r.iowrite(uint64(r.caps[capNotifyCfg][1])+off*uint64(r.mult), 2, uint64(q))
}

// isr is vp_interrupt's read of the ISR status.
func (r *rig) isr() uint8 { return uint8(r.ioread(uint64(r.caps[capISRCfg][1]), 1)) }
