package mmio

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

func TestLinuxBringUpActivates(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(virtio.CommonFeatures)
	if got := r.dev.Acked(); got != virtio.CommonFeatures {
		t.Fatalf("acked %#x", got)
	}
	qs := r.dev.Queues()
	for i, q := range qs {
		if q.Ring == nil || !q.Ring.Ready() || q.Kick == nil {
			t.Fatalf("queue %d not handed over ready: %+v", i, q)
		}
		if q.Ring.Size() != r.drivers[i].Size() || !q.Ring.EventIdx() || !q.Ring.IndirectDesc() {
			t.Fatalf("queue %d: size %d eventidx %v indirect %v", i, q.Ring.Size(), q.Ring.EventIdx(), q.Ring.IndirectDesc())
		}
	}
	if r.tr.GuestErrors() != 0 {
		t.Fatalf("%d guest errors on the happy path", r.tr.GuestErrors())
	}
}

// TestDataPath moves a buffer through the rings the transport programmed:
// the driver adds and notifies, the device pops and publishes, signals,
// and the driver's interrupt handler finds the used element.
func TestDataPath(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(virtio.CommonFeatures)
	qs := r.dev.Queues()
	d := r.drivers[1]
	head, err := d.Add(qt.R([]byte("hello")), qt.W(16))
	if err != nil {
		t.Fatal(err)
	}
	if d.Kick() {
		r.writel(RegQueueNotify, 1) // vm_notify
	}
	if !transporttest.Kicked(qs[1].Kick, time.Second) {
		t.Fatal("queue 1 kick not readable after QueueNotify")
	}
	if transporttest.Kicked(qs[0].Kick, 10*time.Millisecond) {
		t.Fatal("queue 0 kicked by a notification for queue 1")
	}
	var c queue.Chain
	ok, err := qs[1].Ring.Pop(&c)
	if !ok || err != nil || c.Head != head || !bytes.Equal(c.Readable[0], []byte("hello")) {
		t.Fatalf("pop: %v %v head %d", ok, err, c.Head)
	}
	c.WriteAt([]byte("world"), 0)
	qs[1].Ring.Push(c.Head, 5)
	qs[1].Ring.Publish()
	if err := r.dev.IRQ().Signal(1); err != nil {
		t.Fatal(err)
	}
	if r.edge.Count() != 1 {
		t.Fatalf("%d edges", r.edge.Count())
	}
	if st := r.interrupt(); st != transport.ISRQueue {
		t.Fatalf("InterruptStatus %#x", st)
	}
	u, ok := d.Used()
	if !ok || u.ID != uint32(head) || string(d.Written(u)) != "world" {
		t.Fatalf("used %+v %v", u, ok)
	}
}

func TestEdgeInterrupts(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(virtio.CommonFeatures)
	irq := r.dev.IRQ()
	irq.Signal(0)
	irq.Signal(1) // same bit, still set: no second edge
	if n := r.edge.Count(); n != 1 {
		t.Fatalf("%d edges for one pending bit", n)
	}
	gen := r.readl(RegConfigGeneration)
	irq.SignalConfig() // new bit: an edge
	if n := r.edge.Count(); n != 2 {
		t.Fatalf("%d edges after config change", n)
	}
	if g := r.readl(RegConfigGeneration); g == gen {
		t.Fatal("config generation unchanged by a config change")
	}
	if st := r.interrupt(); st != transport.ISRQueue|transport.ISRConfig {
		t.Fatalf("status %#x", st)
	}
	if st := r.readl(RegInterruptStatus); st != 0 {
		t.Fatalf("status %#x after ack", st)
	}
	irq.Signal(0)
	if n := r.edge.Count(); n != 3 {
		t.Fatalf("%d edges after ack and signal", n)
	}
}

func TestLevelInterrupts(t *testing.T) {
	r := newRig(t, rigOpt{level: true})
	if !r.tr.LevelTriggered() {
		t.Fatal("not level triggered")
	}
	r.bringUp(virtio.CommonFeatures)
	irq := r.dev.IRQ()
	irq.Signal(0)
	irq.SignalConfig()
	if !r.line.Level() || r.line.Rises() != 1 || !r.tr.LevelPending() {
		t.Fatalf("line %v rises %d", r.line.Level(), r.line.Rises())
	}
	r.writel(RegInterruptACK, transport.ISRQueue)
	if !r.line.Level() {
		t.Fatal("line dropped with the config bit still set")
	}
	r.writel(RegInterruptACK, transport.ISRConfig)
	if r.line.Level() || r.tr.LevelPending() {
		t.Fatal("line high after every bit was acknowledged")
	}
	irq.Signal(1)
	r.writel(RegStatus, 0)
	if r.line.Level() {
		t.Fatal("line high after reset")
	}
}

func TestResetClearsEverything(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(virtio.CommonFeatures)
	irq, qs := r.dev.IRQ(), r.dev.Queues()
	irq.Signal(0)
	r.writel(RegStatus, 0)
	if r.dev.Resets() < 2 { // one at probe, one now
		t.Fatalf("Device.Reset called %d times", r.dev.Resets())
	}
	if s := r.status(); s != 0 {
		t.Fatalf("status %v", s)
	}
	if st := r.readl(RegInterruptStatus); st != 0 {
		t.Fatalf("interrupt status %#x after reset", st)
	}
	for i := range r.drivers {
		r.writel(RegQueueSel, uint32(i))
		if r.readl(RegQueueReady) != 0 || r.readl(RegQueueNumMax) != uint32(r.dev.Maxes[i]) {
			t.Fatalf("queue %d registers not reset", i)
		}
		if qs[i].Ring.Ready() {
			t.Fatalf("queue %d ring still ready", i)
		}
	}
	if err := irq.Signal(0); !errors.Is(err, transport.ErrInactive) {
		t.Fatalf("stale interrupt: %v", err)
	}
	if _, err := qs[0].Kick.Stat(); err == nil {
		t.Fatal("kick file still open after reset")
	}
	if n := len(r.notif.Attached()); n != 0 {
		t.Fatalf("%d ioeventfds still attached", n)
	}
	// A second bring-up works and hands over fresh kicks.
	r.bringUp(virtio.CommonFeatures)
	if r.dev.Activations() != 2 {
		t.Fatalf("%d activations", r.dev.Activations())
	}
}

func TestNotifierAttachesPerQueue(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(virtio.CommonFeatures)
	if n := len(r.notif.Attached()); n != 2 {
		t.Fatalf("%d ioeventfds attached", n)
	}
	qs := r.dev.Queues()
	if !r.notif.GuestWrite(testBase+RegQueueNotify, 4, 1) {
		t.Fatal("queue 1's notification not caught by its ioeventfd")
	}
	if r.notif.GuestWrite(testBase+RegQueueNotify, 4, 7) {
		t.Fatal("an ioeventfd caught a notification for a queue that does not exist")
	}
	if !transporttest.Kicked(qs[1].Kick, time.Second) || transporttest.Kicked(qs[0].Kick, 10*time.Millisecond) {
		t.Fatal("wrong kick signalled")
	}
	// A write KVM did not catch still kicks through the exit path.
	r.writel(RegQueueNotify, 0)
	if !transporttest.Kicked(qs[0].Kick, time.Second) {
		t.Fatal("exit-path notification lost")
	}
}

func TestNotifierFailureFallsBack(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.notif.AttachErr = errors.New("no ioeventfd")
	r.bringUp(virtio.CommonFeatures)
	r.writel(RegQueueNotify, 1)
	if !transporttest.Kicked(r.dev.Queues()[1].Kick, time.Second) {
		t.Fatal("notification lost without ioeventfds")
	}
}

func TestConfigSpace(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.probe()
	b := make([]byte, 4)
	r.tr.Read(ConfigOffset+2, b[:2])
	if !bytes.Equal(b[:2], []byte{2, 3}) {
		t.Fatalf("readw %v", b[:2])
	}
	r.tr.Read(ConfigOffset+4, b)
	if !bytes.Equal(b, []byte{4, 5, 6, 7}) {
		t.Fatalf("readl %v", b)
	}
	r.tr.Read(ConfigOffset+6, b) // crosses the end: tail reads zero
	if !bytes.Equal(b, []byte{6, 7, 0, 0}) {
		t.Fatalf("read across the end %v", b)
	}
	r.tr.Write(ConfigOffset+1, []byte{0xaa})
	if r.dev.Config[1] != 0xaa {
		t.Fatal("config write lost")
	}
	before := r.tr.GuestErrors()
	r.tr.Write(ConfigOffset+6, []byte{1, 2, 3, 4})
	if r.dev.Config[6] != 6 || r.tr.GuestErrors() != before+1 {
		t.Fatal("config write past the end not refused")
	}
}

func TestRegistersReadAsSpecified(t *testing.T) {
	r := newRig(t, rigOpt{})
	for off, want := range map[uint64]uint32{
		RegMagicValue: MagicValue, RegVersion: 2, RegDeviceID: 1, RegVendorID: VendorID,
		RegSHMLenLow: 0xffffffff, RegSHMLenHigh: 0xffffffff, RegQueueReset: 0, RegInterruptStatus: 0,
	} {
		if got := r.readl(off); got != want {
			t.Errorf("register %#x = %#x, want %#x", off, got, want)
		}
	}
	r.writel(RegQueueSel, 5) // no such queue
	if r.readl(RegQueueNumMax) != 0 || r.readl(RegQueueReady) != 0 {
		t.Fatal("absent queue does not read as zero")
	}
	if got := CmdlineDevice(0xd0000000, 5); got != "virtio_mmio.device=0x200@0xd0000000:5" {
		t.Fatalf("cmdline %q", got)
	}
}

// TestDriverMistakes plays broken drivers: each case must leave a
// sensible state, count a guest error and never panic.
func TestDriverMistakes(t *testing.T) {
	type check func(r *rig)
	needsReset := func(r *rig) {
		if !r.status().Has(virtio.StatusDeviceNeedsReset) {
			r.t.Fatalf("status %v, want DEVICE_NEEDS_RESET", r.status())
		}
	}
	notActive := func(r *rig) {
		if r.dev.Activations() != 0 {
			r.t.Fatal("device activated")
		}
	}
	featuresRefused := func(r *rig) {
		if r.status().Has(virtio.StatusFeaturesOK) {
			r.t.Fatal("FEATURES_OK accepted")
		}
	}
	// upToQueues brings the device to FEATURES_OK.
	upToQueues := func(r *rig) {
		if !r.finalize(r.probe()) {
			r.t.Fatal("features refused")
		}
	}
	d0 := func(r *rig) qt.Config { return r.drivers[0].Config() }
	cases := []struct {
		name  string
		dev   func(*transporttest.Device)
		do    func(r *rig)
		check []check
	}{
		{name: "queue size not a power of two", do: func(r *rig) {
			upToQueues(r)
			c := d0(r)
			r.setupVQ(0, 100, c.DescAddr, c.AvailAddr, c.UsedAddr)
		}, check: []check{needsReset, func(r *rig) {
			if r.readl(RegQueueReady) != 0 {
				r.t.Fatal("bad queue reads ready")
			}
		}}},
		{name: "queue size above max", do: func(r *rig) {
			upToQueues(r)
			c := d0(r)
			r.setupVQ(0, 512, c.DescAddr, c.AvailAddr, c.UsedAddr)
		}, check: []check{needsReset}},
		{name: "ready without addresses", do: func(r *rig) {
			upToQueues(r)
			r.writel(RegQueueSel, 0)
			r.writel(RegQueueReady, 1)
		}, check: []check{needsReset}},
		{name: "rings outside memory", do: func(r *rig) {
			upToQueues(r)
			r.setupVQ(0, 256, 1<<40, 1<<40+0x1000, 1<<40+0x2000)
		}, check: []check{needsReset}},
		{name: "misaligned ring", do: func(r *rig) {
			upToQueues(r)
			c := d0(r)
			r.setupVQ(0, 256, c.DescAddr+8, c.AvailAddr, c.UsedAddr)
		}, check: []check{needsReset}},
		{name: "features not a subset", do: func(r *rig) {
			r.finalize(r.probe() | 1<<50)
		}, check: []check{featuresRefused}},
		{name: "features without VERSION_1", do: func(r *rig) {
			r.finalize(r.probe() &^ virtio.FeatureVersion1.Mask())
		}, check: []check{featuresRefused}},
		{name: "device refuses features", dev: func(d *transporttest.Device) { d.AckErr = errors.New("no") }, do: func(r *rig) {
			r.finalize(r.probe())
		}, check: []check{featuresRefused}},
		{name: "DRIVER_OK without FEATURES_OK", do: func(r *rig) {
			r.probe()
			r.addStatus(virtio.StatusDriverOK)
		}, check: []check{notActive, func(r *rig) {
			if r.status().Has(virtio.StatusDriverOK) {
				r.t.Fatal("DRIVER_OK stored")
			}
		}}},
		{name: "queue enabled before FEATURES_OK", do: func(r *rig) {
			r.probe()
			c := d0(r)
			r.setupVQ(0, 256, c.DescAddr, c.AvailAddr, c.UsedAddr)
		}, check: []check{func(r *rig) {
			if r.readl(RegQueueReady) != 0 {
				r.t.Fatal("queue enabled before FEATURES_OK")
			}
		}}},
		{name: "activation fails", dev: func(d *transporttest.Device) { d.ActivateErr = errors.New("no") }, do: func(r *rig) {
			upToQueues(r)
			r.setupAll()
			r.addStatus(virtio.StatusDriverOK)
		}, check: []check{needsReset, func(r *rig) {
			if r.readl(RegInterruptStatus)&transport.ISRConfig == 0 || r.edge.Count() != 1 {
				r.t.Fatal("no configuration-change interrupt for DEVICE_NEEDS_RESET")
			}
		}}},
		{name: "narrow register access", do: func(r *rig) {
			r.tr.Write(RegStatus, []byte{1})
			var b [2]byte
			r.tr.Read(RegMagicValue, b[:])
			if b != [2]byte{} {
				r.t.Fatal("narrow read returned data")
			}
		}, check: []check{func(r *rig) {
			if r.status() != 0 {
				r.t.Fatal("narrow status write applied")
			}
		}}},
		{name: "misaligned register access", do: func(r *rig) { r.writel(RegStatus+2, 1) }},
		{name: "notify a disabled queue", do: func(r *rig) { r.writel(RegQueueNotify, 0); r.writel(RegQueueNotify, 99) }},
		{name: "clear status bits without reset", do: func(r *rig) {
			r.probe()
			r.writel(RegStatus, uint32(virtio.StatusAcknowledge))
		}, check: []check{func(r *rig) {
			if r.status() != virtio.StatusAcknowledge|virtio.StatusDriver {
				r.t.Fatalf("status %v", r.status())
			}
		}}},
		{name: "driver sets NEEDS_RESET", do: func(r *rig) { r.writel(RegStatus, uint32(virtio.StatusDeviceNeedsReset|1)) },
			check: []check{func(r *rig) {
				if r.status() != 0 {
					r.t.Fatal("driver set DEVICE_NEEDS_RESET")
				}
			}}},
		{name: "queue reprogrammed while ready", do: func(r *rig) {
			r.bringUp(virtio.CommonFeatures)
			r.writel(RegQueueSel, 0)
			r.writel(RegQueueNum, 16)
			r.writel(RegQueueDescLow, 0)
			r.writel(RegQueueReady, 0)
		}, check: []check{func(r *rig) {
			if q := r.dev.Queues()[0].Ring; !q.Ready() || q.Size() != 256 {
				r.t.Fatal("running queue changed")
			}
		}}},
		{name: "write read-only registers", do: func(r *rig) {
			r.writel(RegMagicValue, 0)
			r.writel(RegQueueReset, 1)
			r.writel(RegStatus, 0x1ff)
			r.writel(RegQueueReady, 2)
		}, check: []check{func(r *rig) {
			if r.readl(RegMagicValue) != MagicValue {
				r.t.Fatal("magic changed")
			}
		}}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			r := newRig(t, rigOpt{dev: tc.dev})
			tc.do(r)
			for _, c := range tc.check {
				c(r)
			}
			if r.tr.GuestErrors() == 0 {
				t.Fatal("no guest error recorded")
			}
			// Whatever happened, a reset and a clean bring-up recover.
			r.dev.AckErr, r.dev.ActivateErr = nil, nil
			r.bringUp(virtio.CommonFeatures)
		})
	}
}

func TestDeviceNeedsReset(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(virtio.CommonFeatures)
	if err := r.dev.IRQ().NeedsReset(); err != nil {
		t.Fatal(err)
	}
	if !r.status().Has(virtio.StatusDeviceNeedsReset) || r.readl(RegInterruptStatus) != transport.ISRConfig {
		t.Fatalf("status %v isr %#x", r.status(), r.readl(RegInterruptStatus))
	}
	// Linux echoes the status back with more bits; NEEDS_RESET stays.
	r.writel(RegStatus, uint32(r.status()&^virtio.StatusDeviceNeedsReset))
	if !r.status().Has(virtio.StatusDeviceNeedsReset) {
		t.Fatal("driver cleared DEVICE_NEEDS_RESET")
	}
	r.writel(RegStatus, 0)
	if r.status() != 0 {
		t.Fatal("reset did not clear DEVICE_NEEDS_RESET")
	}
}

func TestNewRejects(t *testing.T) {
	dev := transporttest.NewDevice()
	m := qt.MustNew(t, qt.Config{}).Mem
	for name, cfg := range map[string]Config{
		"no irq":         {Device: dev, Mem: m},
		"both irqs":      {Device: dev, Mem: m, IRQ: &transporttest.Edge{}, Line: &transporttest.Line{}},
		"no device":      {Mem: m, IRQ: &transporttest.Edge{}},
		"config too big": {Device: &transporttest.Device{Maxes: []uint16{8}, Config: make([]byte, 0x101)}, Mem: m, IRQ: &transporttest.Edge{}},
		"no queues":      {Device: &transporttest.Device{}, Mem: m, IRQ: &transporttest.Edge{}},
		"bad queue max":  {Device: &transporttest.Device{Maxes: []uint16{3}}, Mem: m, IRQ: &transporttest.Edge{}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestConcurrentSignalAckReset races device goroutines signalling with a
// driver acknowledging and resetting (run with -race).
func TestConcurrentSignalAckReset(t *testing.T) {
	for _, level := range []bool{false, true} {
		r := newRig(t, rigOpt{level: level})
		for round := 0; round < 20; round++ {
			r.bringUp(virtio.CommonFeatures)
			irq := r.dev.IRQ()
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 200; i++ {
						if i%50 == 0 {
							irq.SignalConfig()
						}
						if err := irq.Signal(g % 2); errors.Is(err, transport.ErrInactive) {
							return
						}
					}
				}()
			}
			for i := 0; i < 50; i++ {
				r.interrupt()
			}
			wg.Wait()
			r.interrupt()
			if level && r.line.Level() {
				t.Fatal("line left high with no status bit")
			}
			r.writel(RegStatus, 0)
		}
	}
}

// TestSignalDoesNotAllocate checks the data-path interrupt calls.
func TestSignalDoesNotAllocate(t *testing.T) {
	for _, level := range []bool{false, true} {
		r := newRig(t, rigOpt{level: level})
		r.bringUp(virtio.CommonFeatures)
		irq := r.dev.IRQ()
		if n := testing.AllocsPerRun(100, func() {
			irq.Signal(0)
			r.tr.isr.Ack(transport.ISRQueue)
		}); n != 0 {
			t.Fatalf("level=%v: %v allocations per signal", level, n)
		}
	}
}
