package transport_test

import (
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

// engineDevice is a transporttest.Device that reports one engine, on
// queue 1, and whose Reset can be held (a device goroutine that does not
// stop).
type engineDevice struct {
	*transporttest.Device
	resetting chan struct{} // closed when Reset starts
	release   chan struct{} // Reset returns once closed
}

func (d *engineDevice) EngineStates() []virtio.EngineState {
	return []virtio.EngineState{{Queue: 1, Name: "tx", Activity: virtio.ActivityWaitKick, NextAvail: 5, NextUsed: 4, Transitions: 9}}
}

func (d *engineDevice) Reset() {
	if d.resetting != nil {
		close(d.resetting)
		<-d.release
	}
	d.Device.Reset()
}

type nopHooks struct{}

func (nopHooks) SignalQueue(int) error { return nil }
func (nopHooks) SignalConfig() error   { return nil }
func (nopHooks) NotifyMatch(int) (transport.NotifyMatch, bool) {
	return transport.NotifyMatch{}, false
}
func (nopHooks) Reset() {}

// TestCoreSnapshot brings a device up through the Core's registers and
// checks the snapshot: status, features, per queue enabled and the ring
// words the driver wrote, the device's engine on its queue; then, with a
// reset stuck in the device (the lock held), that the snapshot gives up
// on the lock after SnapshotWait and still reports the engines.
func TestCoreSnapshot(t *testing.T) {
	dev := &engineDevice{Device: transporttest.NewDevice()}
	dev.Maxes = []uint16{16, 16}
	ds := qt.MustNewSet(t, qt.Config{Size: 16, Features: virtio.CommonFeatures}, qt.Config{Size: 16, Features: virtio.CommonFeatures})
	c, err := transport.NewCore(transport.Config{Device: dev, Mem: ds[0].Mem, Log: transporttest.Logger(t)}, nopHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Snapshot()
	if s.Device != virtio.DeviceNet || s.Active || s.Busy || len(s.Queues) != 2 || s.Queues[0].Enabled || s.Queues[0].Ring.Ready {
		t.Fatalf("before bring-up: %+v", s)
	}

	const A, D, F, OK = virtio.StatusAcknowledge, virtio.StatusDriver, virtio.StatusFeaturesOK, virtio.StatusDriverOK
	c.WriteStatus(uint8(A))
	c.WriteStatus(uint8(A | D))
	for sel := uint32(0); sel < 2; sel++ {
		c.SetDriverFeatureSelect(sel)
		c.SetDriverFeatures(virtio.FeatureWord(virtio.CommonFeatures, sel))
	}
	c.WriteStatus(uint8(A | D | F))
	for i, d := range ds {
		cfg := d.Config()
		c.SelectQueue(uint32(i))
		c.SetQueueSize(uint32(cfg.Size))
		c.SetQueueAddr(transport.AreaDesc, cfg.DescAddr)
		c.SetQueueAddr(transport.AreaDriver, cfg.AvailAddr)
		c.SetQueueAddr(transport.AreaDevice, cfg.UsedAddr)
		c.SetQueueEnabled(true)
	}
	c.WriteStatus(uint8(A | D | F | OK))
	for range 3 {
		if _, err := ds[1].Add(qt.W(8)); err != nil {
			t.Fatal(err)
		}
	}
	ds[1].Kick()
	ds[0].SetUsedEvent(7)

	s = c.Snapshot()
	if s.Status != A|D|F|OK || !s.Active || s.Busy || s.Features != virtio.CommonFeatures {
		t.Fatalf("after bring-up: status %v active %v busy %v features %#x", s.Status, s.Active, s.Busy, s.Features)
	}
	for i, q := range s.Queues {
		if q.Index != i || !q.Enabled || !q.Ring.Ready || q.Ring.Size != 16 || !q.Ring.EventIdx {
			t.Fatalf("queue %d: %+v", i, q)
		}
	}
	if s.Queues[1].Ring.AvailIdx != 3 || s.Queues[0].Ring.AvailIdx != 0 || s.Queues[0].Ring.UsedEvent != 7 {
		t.Fatalf("ring words: %+v / %+v", s.Queues[0].Ring, s.Queues[1].Ring)
	}
	if s.Queues[0].HasEngine || !s.Queues[1].HasEngine || s.Queues[1].Engine.Name != "tx" || s.Queues[1].Engine.NextAvail != 5 {
		t.Fatalf("engines: %+v / %+v", s.Queues[0], s.Queues[1])
	}

	// A reset stuck in the device holds the Core's lock.
	dev.resetting, dev.release = make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); c.WriteStatus(0) }()
	<-dev.resetting
	start := time.Now()
	s = c.Snapshot()
	if took := time.Since(start); !s.Busy || took < transport.SnapshotWait || took > 10*transport.SnapshotWait {
		t.Fatalf("snapshot with the lock held: busy %v after %v", s.Busy, took)
	}
	if s.Queues[1].Ring.Ready || !s.Queues[1].HasEngine || s.Status != A|D|F|OK {
		t.Fatalf("busy snapshot: %+v", s)
	}
	close(dev.release)
	<-done
	dev.resetting = nil
	s = c.Snapshot()
	if s.Busy || s.Active || s.Status != 0 || s.Queues[1].Enabled || s.Queues[1].Ring.Ready {
		t.Fatalf("after reset: %+v", s)
	}
}
