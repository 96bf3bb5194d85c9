package pci

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/devices"
	pcidev "github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

func TestIdentityAndCapabilities(t *testing.T) {
	r := newRig(t, rigOpt{})
	for _, c := range []struct {
		reg, n int
		want   uint32
	}{
		{pcidev.RegVendorID, 2, 0x1af4},
		{pcidev.RegDeviceID, 2, 0x1041},
		{pcidev.RegRevisionID, 1, 1},
		{pcidev.RegClassCode, 1, 0}, {pcidev.RegClassCode + 1, 2, 0x0200},
		{pcidev.RegSubsystemVendorID, 2, 0x1af4},
		{pcidev.RegSubsystemID, 2, 0x41},
		{pcidev.RegInterruptPin, 1, 1},
		{pcidev.RegHeaderType, 1, 0},
	} {
		if got := r.cfgRead(c.reg, c.n); got != c.want {
			t.Errorf("config %#x = %#x, want %#x", c.reg, got, c.want)
		}
	}
	r.enumerate()
	r.findCaps()
	want := map[uint8][2]uint32{
		capCommonCfg: {CommonOffset, CommonLength},
		capNotifyCfg: {NotifyOffset, 8},
		capISRCfg:    {ISROffset, 1},
		capDeviceCfg: {DeviceOffset, 8},
	}
	for typ, w := range want {
		if c := r.caps[typ]; c[1] != w[0] || c[2] != w[1] {
			t.Errorf("cap type %d at BAR offset %#x len %#x, want %#x len %#x", typ, c[1], c[2], w[0], w[1])
		}
	}
	if r.mult != NotifyMultiplier {
		t.Errorf("notify_off_multiplier %d", r.mult)
	}
	if r.msixCap == 0 {
		t.Fatal("no MSI-X capability")
	}
	if ctrl := r.cfgRead(r.msixCap+2, 2); ctrl != 2 { // 3 vectors, disabled
		t.Errorf("MSI-X control %#x", ctrl)
	}
	if tb, pba := r.cfgRead(r.msixCap+4, 4), r.cfgRead(r.msixCap+8, 4); tb != MSIXTableOffset || pba != MSIXPBAOffset {
		t.Errorf("MSI-X table %#x pba %#x", tb, pba)
	}
	if addr, mapped := r.tr.BAR(); !mapped || addr != testBAR {
		t.Fatalf("BAR at %#x mapped %v", addr, mapped)
	}
}

func TestLinuxBringUpMSIX(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(true)
	qs := r.dev.Queues()
	for i, q := range qs {
		if q.Ring == nil || !q.Ring.Ready() || q.Kick == nil || q.Ring.Size() != r.drivers[i].Size() {
			t.Fatalf("queue %d not handed over: %+v", i, q)
		}
	}
	if r.dev.Acked() != virtio.CommonFeatures || r.tr.GuestErrors() != 0 {
		t.Fatalf("acked %#x, %d guest errors", r.dev.Acked(), r.tr.GuestErrors())
	}
	// Each queue's ioeventfd sits at its own notify address.
	if n := len(r.notif.Attached()); n != 2 {
		t.Fatalf("%d ioeventfds", n)
	}
	if !r.notif.GuestWrite(r.bar+NotifyOffset+4, 2, 1) {
		t.Fatal("queue 1's notify address has no ioeventfd")
	}
	if !transporttest.Kicked(qs[1].Kick, time.Second) {
		t.Fatal("kick 1 not signalled")
	}
	r.notify(0) // the exit path
	if !transporttest.Kicked(qs[0].Kick, time.Second) || transporttest.Kicked(qs[1].Kick, 10*time.Millisecond) {
		t.Fatal("wrong kick signalled")
	}
}

// TestDataPathMSIX moves a buffer through the programmed rings and checks
// the queue's vector fires.
func TestDataPathMSIX(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(true)
	qs, d := r.dev.Queues(), r.drivers[0]
	head, _ := d.Add(qt.R([]byte("ping")), qt.W(8))
	d.Kick()
	r.notify(0)
	if !transporttest.Kicked(qs[0].Kick, time.Second) {
		t.Fatal("no kick")
	}
	var c queue.Chain
	if ok, err := qs[0].Ring.Pop(&c); !ok || err != nil || !bytes.Equal(c.Readable[0], []byte("ping")) {
		t.Fatalf("pop %v %v", ok, err)
	}
	c.WriteAt([]byte("pong"), 0)
	qs[0].Ring.Push(c.Head, 4)
	qs[0].Ring.Publish()
	r.dev.IRQ().Signal(0)
	if v := r.router.Vector(1); v.Triggers != 1 || v.Addr != 0xfee01000 || v.Data != 0x41 || v.BadTriggers != 0 {
		t.Fatalf("vector 1: %+v", v)
	}
	if u, ok := d.Used(); !ok || u.ID != uint32(head) || string(d.Written(u)) != "pong" {
		t.Fatalf("used %+v", u)
	}
	if r.line.Level() {
		t.Fatal("INTx asserted with MSI-X enabled")
	}
}

func TestMSIXMaskingAndPending(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(true)
	irq := r.dev.IRQ()
	table := uint64(MSIXTableOffset)
	pba := func() uint64 { return r.ioread(MSIXPBAOffset, 8) }

	// Per-vector mask: the interrupt waits in the PBA, then is delivered.
	r.iowrite(table+2*16+msixVectorCtrl, 4, 1)
	irq.Signal(1)
	if v := r.router.Vector(2); v.Triggers != 0 || pba() != 1<<2 {
		t.Fatalf("masked vector: %+v pba %#x", v, pba())
	}
	r.iowrite(table+2*16+msixVectorCtrl, 4, 0)
	if v := r.router.Vector(2); v.Triggers != 1 || pba() != 0 {
		t.Fatalf("unmask did not deliver: %+v pba %#x", v, pba())
	}

	// Function mask: same, for the config vector.
	r.cfgWrite(r.msixCap+2, 2, r.cfgRead(r.msixCap+2, 2)|msixCtrlFuncMsk)
	irq.SignalConfig()
	if v := r.router.Vector(0); v.Triggers != 0 || pba() != 1 {
		t.Fatalf("function-masked: %+v pba %#x", v, pba())
	}
	r.cfgWrite(r.msixCap+2, 2, r.cfgRead(r.msixCap+2, 2)&^msixCtrlFuncMsk)
	if v := r.router.Vector(0); v.Triggers != 1 || pba() != 0 {
		t.Fatalf("function unmask did not deliver: %+v", v)
	}

	// A message changed while masked is routed before the delivery.
	r.iowrite(table+16+msixVectorCtrl, 4, 1)
	irq.Signal(0)
	r.iowrite(table+16+msixData, 4, 0x99)
	r.iowrite(table+16+msixVectorCtrl, 4, 0)
	if v := r.router.Vector(1); v.Data != 0x99 || v.Triggers != 1 || v.BadTriggers != 0 {
		t.Fatalf("vector 1: %+v", v)
	}

	// NO_VECTOR: nothing at all.
	r.setCommon(cfgQueueSelect, 2, 1)
	r.setCommon(cfgQueueMSIXVector, 2, NoVector)
	before := r.router.Vector(2).Triggers
	irq.Signal(1)
	if r.router.Vector(2).Triggers != before || pba() != 0 || r.isr()&uint8(transport.ISRQueue) != 0 {
		t.Fatal("a queue with NO_VECTOR interrupted")
	}
	// Vectors beyond the table read back as NO_VECTOR.
	r.setCommon(cfgQueueMSIXVector, 2, 3)
	if r.common(cfgQueueMSIXVector, 2) != NoVector {
		t.Fatal("out-of-table vector accepted")
	}
	r.setCommon(cfgConfigMSIXVector, 2, 100)
	if r.common(cfgConfigMSIXVector, 2) != NoVector {
		t.Fatal("out-of-table config vector accepted")
	}
	for v := 0; v < 3; v++ {
		if x := r.router.Vector(v); x.BadTriggers != 0 {
			t.Fatalf("vector %d triggered while masked: %+v", v, x)
		}
	}
}

func TestNeedsResetUsesConfigVector(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(true)
	r.dev.IRQ().NeedsReset()
	if !r.status().Has(virtio.StatusDeviceNeedsReset) || r.router.Vector(0).Triggers != 1 {
		t.Fatalf("status %v config vector %+v", r.status(), r.router.Vector(0))
	}
}

func TestINTxFallback(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(false)
	irq := r.dev.IRQ()
	irq.Signal(0)
	if !r.line.Level() || r.cfgRead(pcidev.RegStatus, 2)&pcidev.StatusInterrupt == 0 {
		t.Fatal("INTx not asserted")
	}
	irq.SignalConfig()
	if r.line.Rises() != 1 {
		t.Fatalf("%d rises", r.line.Rises())
	}
	if got := r.isr(); got != 3 {
		t.Fatalf("ISR %#x", got)
	}
	if r.line.Level() || r.cfgRead(pcidev.RegStatus, 2)&pcidev.StatusInterrupt != 0 {
		t.Fatal("INTx still asserted after the ISR read")
	}
	if r.isr() != 0 {
		t.Fatal("ISR not cleared by its read")
	}
	// INTx disable masks the line but keeps the status bit.
	r.cfgWrite(pcidev.RegCommand, 2, r.cfgRead(pcidev.RegCommand, 2)|pcidev.CommandINTxDisable)
	irq.Signal(1)
	if r.line.Level() || r.cfgRead(pcidev.RegStatus, 2)&pcidev.StatusInterrupt == 0 {
		t.Fatal("INTx disable not honoured")
	}
	r.cfgWrite(pcidev.RegCommand, 2, r.cfgRead(pcidev.RegCommand, 2)&^pcidev.CommandINTxDisable)
	if !r.line.Level() {
		t.Fatal("pending interrupt not asserted when INTx re-enabled")
	}
	r.isr()
}

func TestNoINTx(t *testing.T) {
	r := newRig(t, rigOpt{noINTx: true})
	if r.cfgRead(pcidev.RegInterruptPin, 1) != 0 {
		t.Fatal("interrupt pin without INTx")
	}
	r.bringUp(true)
	r.dev.IRQ().Signal(0)
	if r.router.Vector(1).Triggers != 1 {
		t.Fatal("no MSI-X")
	}
}

func TestNoMSIX(t *testing.T) {
	r := newRig(t, rigOpt{noMSIX: true})
	r.bringUp(false)
	if r.msixCap != 0 {
		t.Fatal("MSI-X capability without a router")
	}
	r.setCommon(cfgConfigMSIXVector, 2, 0)
	if r.common(cfgConfigMSIXVector, 2) != NoVector {
		t.Fatal("vector accepted without MSI-X")
	}
	r.dev.IRQ().Signal(0)
	if !r.line.Level() || r.isr() != 1 {
		t.Fatal("INTx path broken")
	}
}

func TestResetClearsVectorsAndISR(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(false)
	irq, qs := r.dev.IRQ(), r.dev.Queues()
	irq.Signal(0)
	r.setCommon(cfgDeviceStatus, 1, 0)
	if r.status() != 0 || r.line.Level() || r.isr() != 0 {
		t.Fatal("reset left status or interrupt state")
	}
	if r.common(cfgConfigMSIXVector, 2) != NoVector {
		t.Fatal("config vector not reset")
	}
	r.setCommon(cfgQueueSelect, 2, 0)
	if r.common(cfgQueueMSIXVector, 2) != NoVector || r.common(cfgQueueEnable, 2) != 0 || r.common(cfgQueueSize, 2) != 256 {
		t.Fatal("queue registers not reset")
	}
	if qs[0].Ring.Ready() || !errors.Is(irq.Signal(0), transport.ErrInactive) || len(r.notif.Attached()) != 0 {
		t.Fatal("device side not reset")
	}
	r.bringUp(true)
	if r.dev.Activations() != 2 {
		t.Fatal("second bring-up did not activate")
	}
}

// TestBARMove reprograms BAR 0 the way a guest reassigning resources
// does, and checks the window and the ioeventfds follow.
func TestBARMove(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(true)
	const newBAR = 0xc010_0000
	cmd := r.cfgRead(pcidev.RegCommand, 2)
	r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
	if _, mapped := r.tr.BAR(); mapped {
		t.Fatal("BAR still mapped with decoding off")
	}
	if r.mmio.Read(testBAR, make([]byte, 1)) {
		t.Fatal("old window still claimed")
	}
	r.cfgWrite(pcidev.RegBAR0, 4, newBAR)
	r.cfgWrite(pcidev.RegBAR0+4, 4, 0)
	r.cfgWrite(pcidev.RegCommand, 2, cmd)
	if addr, mapped := r.tr.BAR(); !mapped || addr != newBAR {
		t.Fatalf("BAR at %#x mapped %v", addr, mapped)
	}
	r.bar = newBAR
	if r.status() != virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK {
		t.Fatal("device state lost in the move")
	}
	if !r.notif.GuestWrite(newBAR+NotifyOffset, 2, 0) || r.notif.GuestWrite(testBAR+NotifyOffset, 2, 0) {
		t.Fatal("ioeventfd did not follow the BAR")
	}
	// A move with decoding on (one dword at a time) also works.
	r.cfgWrite(pcidev.RegBAR0, 4, testBAR)
	if addr, _ := r.tr.BAR(); addr != testBAR {
		t.Fatalf("BAR at %#x", addr)
	}
}

func TestBARMoveOntoAnotherDevice(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.enumerate()
	const other = 0xc020_0000
	if err := r.mmio.Insert(&nopDevice{}, other, 0x1000); err != nil {
		t.Fatal(err)
	}
	before := r.tr.GuestErrors()
	r.cfgWrite(pcidev.RegBAR0, 4, other)
	if _, mapped := r.tr.BAR(); mapped || r.tr.GuestErrors() == before {
		t.Fatal("BAR mapped over another device")
	}
	r.cfgWrite(pcidev.RegBAR0, 4, testBAR)
	if addr, mapped := r.tr.BAR(); !mapped || addr != testBAR {
		t.Fatal("BAR not mapped back")
	}
}

type nopDevice struct{}

func (nopDevice) Read(uint64, []byte)  {}
func (nopDevice) Write(uint64, []byte) {}

var _ devices.Device = nopDevice{}

// TestPCICfgAccess reaches the BAR through VIRTIO_PCI_CAP_PCI_CFG.
func TestPCICfgAccess(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(true)
	c := int(r.caps[capPCICfg][0])
	window := func(off, n uint32) {
		r.cfgWrite(c+4, 1, 0)
		r.cfgWrite(c+8, 4, off)
		r.cfgWrite(c+12, 4, n)
	}
	window(CommonOffset+cfgNumQueues, 2)
	if got := r.cfgRead(c+16, 2); got != 2 {
		t.Fatalf("num_queues through the window: %d", got)
	}
	window(DeviceOffset+4, 4)
	if got := r.cfgRead(c+16, 4); got != 0x07060504 {
		t.Fatalf("device config through the window: %#x", got)
	}
	window(NotifyOffset+4, 2)
	r.cfgWrite(c+16, 2, 1)
	if !transporttest.Kicked(r.dev.Queues()[1].Kick, time.Second) {
		t.Fatal("notification through the window lost")
	}
	before := r.tr.GuestErrors()
	window(CommonOffset+1, 2) // misaligned
	r.cfgRead(c+16, 4)
	r.cfgWrite(c+4, 1, 3) // another BAR
	r.cfgRead(c+16, 4)
	if r.tr.GuestErrors() != before+2 {
		t.Fatal("bad window accesses not refused")
	}
}

func TestDriverMistakes(t *testing.T) {
	upToQueues := func(r *rig) {
		if !r.finalize(r.probe()) {
			r.t.Fatal("features refused")
		}
	}
	needsReset := func(r *rig) bool { return r.status().Has(virtio.StatusDeviceNeedsReset) }
	cases := []struct {
		name string
		do   func(r *rig)
		ok   func(r *rig) bool
	}{
		{"queue size not a power of two", func(r *rig) {
			upToQueues(r)
			c := r.drivers[0].Config()
			r.setupVQ(0, 100, c.DescAddr, c.AvailAddr, c.UsedAddr, NoVector)
			r.setCommon(cfgQueueEnable, 2, 1)
		}, needsReset},
		{"enable without addresses", func(r *rig) {
			upToQueues(r)
			r.setCommon(cfgQueueSelect, 2, 1)
			r.setCommon(cfgQueueEnable, 2, 1)
		}, func(r *rig) bool { return needsReset(r) && r.common(cfgQueueEnable, 2) == 0 }},
		{"rings outside memory", func(r *rig) {
			upToQueues(r)
			r.setupVQ(0, 256, 1<<44, 1<<44, 1<<44, NoVector)
			r.setCommon(cfgQueueEnable, 2, 1)
		}, needsReset},
		{"queue_enable written 0", func(r *rig) {
			upToQueues(r)
			r.setCommon(cfgQueueEnable, 2, 0)
		}, func(r *rig) bool { return !needsReset(r) }},
		{"features not a subset", func(r *rig) { r.finalize(r.probe() | 1<<60) },
			func(r *rig) bool { return !r.status().Has(virtio.StatusFeaturesOK) }},
		{"DRIVER_OK before FEATURES_OK", func(r *rig) {
			r.probe()
			r.addStatus(virtio.StatusDriverOK)
		}, func(r *rig) bool { return r.dev.Activations() == 0 && !r.status().Has(virtio.StatusDriverOK) }},
		{"wrong widths", func(r *rig) {
			r.probe()
			r.setCommon(cfgDeviceStatus, 2, 0x0f)
			r.setCommon(cfgQueueSelect, 4, 1)
			r.setCommon(cfgNumQueues, 2, 9)
			r.iowrite(MSIXTableOffset+2, 2, 0)
			r.ioread(MSIXPBAOffset, 2)
			r.iowrite(ISROffset, 1, 1)
			r.iowrite(MSIXPBAOffset, 4, 1)
		}, func(r *rig) bool { return r.status() == virtio.StatusAcknowledge|virtio.StatusDriver }},
		{"accesses in the holes", func(r *rig) {
			r.probe()
			r.ioread(CommonOffset+0x100, 4)
			r.iowrite(0x7ff0, 4, 1)
			r.tr.Write(BARSize+8, []byte{1})
			r.tr.Read(BARSize-2, make([]byte, 8))
		}, func(r *rig) bool { return true }},
		{"queue_reset without the feature", func(r *rig) { r.probe(); r.setCommon(cfgQueueReset, 2, 1) },
			func(r *rig) bool { return true }},
		{"vector for a missing queue", func(r *rig) {
			r.probe()
			r.setCommon(cfgQueueSelect, 2, 7)
			r.setCommon(cfgQueueMSIXVector, 2, 0)
			r.setCommon(cfgQueueSize, 2, 8)
		}, func(r *rig) bool { return r.common(cfgQueueSize, 2) == 0 }},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			r := newRig(t, rigOpt{})
			tc.do(r)
			if !tc.ok(r) {
				t.Fatalf("bad state: status %v", r.status())
			}
			if r.tr.GuestErrors() == 0 {
				t.Fatal("no guest error recorded")
			}
			r.bringUp(true)
		})
	}
}

func TestNewRejects(t *testing.T) {
	m := qt.MustNew(t, qt.Config{}).Mem
	bus := devices.NewBus("mmio")
	dev := transporttest.NewDevice()
	edge := transporttest.NewRouter()
	for name, cfg := range map[string]Config{
		"no interrupts":  {Device: dev, Mem: m, Bus: bus},
		"no bus":         {Device: dev, Mem: m, MSIX: edge},
		"misaligned BAR": {Device: dev, Mem: m, Bus: bus, MSIX: edge, BARAddr: 0x1000},
		"type 64":        {Device: &transporttest.Device{ID: 64, Maxes: []uint16{8}}, Mem: m, Bus: bus, MSIX: edge},
		"huge config":    {Device: &transporttest.Device{ID: 1, Maxes: []uint16{8}, Config: make([]byte, 0x1001)}, Mem: m, Bus: bus, MSIX: edge},
		"too many queues": {Device: &transporttest.Device{ID: 1, Maxes: make([]uint16, MaxQueues+1)}, Mem: m, Bus: bus,
			MSIX: edge},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
