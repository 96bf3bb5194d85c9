package vhostuser_test

import (
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
)

// TestServerSnapshot: a dump of the vhost-user backend shows no rings
// before a frontend connects, then the rings' words in the frontend's
// memory and the engines with the indices they stopped at, and no rings
// again once the frontend is gone.
func TestServerSnapshot(t *testing.T) {
	h := newHarness(t)
	s := h.srv.Snapshot()
	if s.Kind != "vhost-user" || s.Device != virtio.DeviceNet || s.Active || len(s.Queues) != 2 || s.Queues[1].Enabled {
		t.Fatalf("before a frontend: %+v", s)
	}
	g := h.connectUML(0)
	for i := range 3 {
		g.send(byte(i))
	}
	g.postRx(4)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s = h.srv.Snapshot()
		rx, tx := s.Queues[0], s.Queues[1]
		if rx.Engine.Activity == virtio.ActivityWaitReadable && tx.Engine.Activity == virtio.ActivityWaitKick && tx.Engine.NextAvail == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("engines not idle: %+v / %+v", rx.Engine, tx.Engine)
		}
		time.Sleep(time.Millisecond)
	}
	rx, tx := s.Queues[0], s.Queues[1]
	if !s.Active || s.Busy || s.Features&virtio.CommonFeatures != virtio.CommonFeatures {
		t.Fatalf("snapshot: %+v", s)
	}
	if !tx.Enabled || !tx.Ring.Ready || tx.Ring.AvailIdx != 3 || tx.Ring.UsedIdx != 3 || tx.Engine.Name != "tx" || tx.Engine.NextUsed != 3 {
		t.Fatalf("tx: %+v", tx)
	}
	if !rx.Enabled || rx.Ring.AvailIdx != 4 || rx.Ring.UsedIdx != 0 || rx.Engine.NextAvail != 0 {
		t.Fatalf("rx: %+v", rx)
	}
	g.f.Close()
	h.waitIdle()
	if s := h.srv.Snapshot(); s.Active || s.Queues[0].Enabled || s.Queues[0].Ring.Ready ||
		s.Queues[0].Engine.Activity != virtio.ActivityStopped {
		t.Fatalf("after the frontend left: %+v", s)
	}
}
