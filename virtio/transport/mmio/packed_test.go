package mmio

import (
	"testing"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

// TestPackedRing: a device that offers VIRTIO_F_RING_PACKED gets a packed
// queue of a size that is not a power of two (written after FEATURES_OK,
// checked at QueueReady), and buffers flow through it; without the
// feature negotiated the same size is refused.
func TestPackedRing(t *testing.T) {
	for _, negotiate := range []bool{true, false} {
		pd := qt.MustNewPacked(t, qt.Config{Size: 5})
		dev := transporttest.NewDevice()
		dev.Offered = virtio.WithRingPacked(virtio.CommonFeatures, true)
		dev.Maxes = []uint16{8}
		edge := &transporttest.Edge{}
		tr, err := New(Config{Device: dev, Mem: pd.Mem, Base: testBase, Log: transporttest.Quiet, IRQ: edge})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		r := &rig{t: t, tr: tr, dev: dev, edge: edge}
		offered := r.probe()
		if !virtio.Has(offered, virtio.FeatureRingPacked) {
			t.Fatalf("RING_PACKED not offered: %#x", offered)
		}
		acked := offered
		if !negotiate {
			acked &^= virtio.FeatureRingPacked.Mask()
		}
		if !r.finalize(acked) {
			t.Fatal("features refused")
		}
		c := pd.Config()
		r.setupVQ(0, 5, c.DescAddr, c.AvailAddr, c.UsedAddr)
		if !negotiate {
			if r.readl(RegQueueReady) != 0 || !r.status().Has(virtio.StatusDeviceNeedsReset) {
				t.Fatal("split queue of size 5 enabled")
			}
			continue
		}
		r.addStatus(virtio.StatusDriverOK)
		qs := dev.Queues()
		if qs == nil || !qs[0].Ring.Packed() || qs[0].Ring.Size() != 5 {
			t.Fatalf("queues %+v", qs)
		}
		for round := range 7 { // past the wrap
			id, err := pd.Add(qt.R([]byte("ping")), qt.W(8))
			if err != nil {
				t.Fatal(err)
			}
			pd.Kick()
			var ch queue.Chain
			if ok, err := qs[0].Ring.Pop(&ch); !ok || err != nil || ch.Head != id {
				t.Fatalf("round %d: Pop %v %v head %d", round, ok, err, ch.Head)
			}
			ch.WriteAt([]byte("pong"), 0)
			qs[0].Ring.Push(ch.Head, 4)
			qs[0].Ring.Publish()
			if u, ok := pd.Used(); !ok || u.ID != uint32(id) || string(pd.Written(u)) != "pong" {
				t.Fatalf("round %d: used %+v %v", round, u, ok)
			}
		}
	}
}
