package mmio

import (
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport"
)

// TestSnapshotEdge: the snapshot names the transport, shows the ISR bits
// as the device raised them and as the driver's acknowledgement leaves
// them, edge mode with nothing asserted, and the rings' words.
func TestSnapshotEdge(t *testing.T) {
	r := newRig(t, rigOpt{})
	if s := r.tr.Snapshot(); s.Kind != "mmio" || s.Active || s.ISR != 0 || s.Level || s.MSIX != nil {
		t.Fatalf("before bring-up: %+v", s)
	}
	r.bringUp(virtio.CommonFeatures)
	if _, err := r.drivers[1].Add(qt.R([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	r.drivers[1].Kick()
	irq := r.dev.IRQ()
	irq.Signal(1)
	s := r.tr.Snapshot()
	if !s.Active || s.ISR != transport.ISRQueue || s.Level || s.LineAsserted {
		t.Fatalf("after a used-buffer notification: %+v", s)
	}
	if q := s.Queues[1]; !q.Enabled || q.Ring.AvailIdx != 1 || q.Ring.UsedIdx != 0 || q.HasEngine {
		t.Fatalf("queue 1: %+v", q)
	}
	irq.SignalConfig()
	if s := r.tr.Snapshot(); s.ISR != transport.ISRQueue|transport.ISRConfig {
		t.Fatalf("ISR %#x with both bits raised", s.ISR)
	}
	r.writel(RegInterruptACK, transport.ISRQueue)
	if s := r.tr.Snapshot(); s.ISR != transport.ISRConfig {
		t.Fatalf("ISR %#x after the queue bit's acknowledgement", s.ISR)
	}
}

// TestSnapshotLevel: with a level line the snapshot shows it asserted
// while a status bit is set and deasserted once the last is acknowledged.
func TestSnapshotLevel(t *testing.T) {
	r := newRig(t, rigOpt{level: true})
	r.bringUp(virtio.CommonFeatures)
	if s := r.tr.Snapshot(); !s.Level || s.LineAsserted || s.ISR != 0 {
		t.Fatalf("idle: %+v", s)
	}
	r.dev.IRQ().Signal(0)
	if s := r.tr.Snapshot(); !s.Level || !s.LineAsserted || s.ISR != transport.ISRQueue || !r.line.Level() {
		t.Fatalf("raised: %+v", s)
	}
	r.interrupt()
	if s := r.tr.Snapshot(); s.LineAsserted || s.ISR != 0 || r.line.Level() {
		t.Fatalf("acknowledged: %+v", s)
	}
}
