package pci

import (
	"testing"

	pcidev "github.com/flintvm/flint/devices/pci"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport"
)

// TestSnapshotMSIX: the snapshot reports MSI-X enable and function mask,
// the config and queue vectors as the driver assigned them, and each
// table entry's mask and pending bits as they change.
func TestSnapshotMSIX(t *testing.T) {
	r := newRig(t, rigOpt{})
	if s := r.tr.Snapshot(); s.Kind != "pci" || s.MSIX == nil || s.MSIX.Enabled || len(s.MSIX.Vectors) != 3 ||
		!s.MSIX.Vectors[0].Masked || s.MSIX.ConfigVector != NoVector || s.MSIX.QueueVectors[1] != NoVector {
		t.Fatalf("before bring-up: %+v %+v", s, s.MSIX)
	}
	r.bringUp(true)
	if _, err := r.drivers[0].Add(qt.W(64)); err != nil {
		t.Fatal(err)
	}
	r.drivers[0].Kick()
	s := r.tr.Snapshot()
	m := s.MSIX
	if !s.Active || s.Level || s.LineAsserted || !m.Enabled || m.FunctionMask || m.ConfigVector != 0 ||
		len(m.QueueVectors) != 2 || m.QueueVectors[0] != 1 || m.QueueVectors[1] != 2 {
		t.Fatalf("after bring-up: %+v %+v", s, m)
	}
	for v, x := range m.Vectors {
		if x.Masked || x.Pending {
			t.Fatalf("vector %d: %+v", v, x)
		}
	}
	if q := s.Queues[0]; !q.Enabled || q.Ring.AvailIdx != 1 {
		t.Fatalf("queue 0: %+v", q)
	}

	// Queue 1's vector masked: its interrupt is held as pending.
	table := uint64(MSIXTableOffset)
	r.iowrite(table+2*16+msixVectorCtrl, 4, 1)
	r.dev.IRQ().Signal(1)
	m = r.tr.Snapshot().MSIX
	if v, ok := m.Vector(m.QueueVectors[1]); !ok || !v.Masked || !v.Pending || m.Vectors[1].Pending {
		t.Fatalf("masked vector 2: %+v", m.Vectors)
	}
	r.iowrite(table+2*16+msixVectorCtrl, 4, 0)
	if v, _ := r.tr.Snapshot().MSIX.Vector(2); v.Masked || v.Pending {
		t.Fatalf("after unmask: %+v", v)
	}

	// The function mask, and a config interrupt held by it.
	r.cfgWrite(r.msixCap+2, 2, r.cfgRead(r.msixCap+2, 2)|msixCtrlFuncMsk)
	r.dev.IRQ().SignalConfig()
	s = r.tr.Snapshot()
	if !s.MSIX.FunctionMask || !s.MSIX.Vectors[0].Pending || s.MSIX.Vectors[0].Masked || s.ISR != transport.ISRConfig {
		t.Fatalf("function masked: ISR %#x %+v", s.ISR, s.MSIX)
	}
	if _, ok := s.MSIX.Vector(NoVector); ok {
		t.Fatal("NO_VECTOR found in the table")
	}
}

// TestSnapshotINTx: with MSI-X off the snapshot shows INTx in use (level),
// the ISR bits and the line asserted until the ISR read.
func TestSnapshotINTx(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(false)
	r.dev.IRQ().Signal(0)
	s := r.tr.Snapshot()
	if !s.Level || !s.LineAsserted || s.ISR != transport.ISRQueue || s.MSIX.Enabled {
		t.Fatalf("raised: %+v", s)
	}
	r.cfgWrite(pcidev.RegCommand, 2, r.cfgRead(pcidev.RegCommand, 2)|pcidev.CommandINTxDisable)
	if s := r.tr.Snapshot(); s.LineAsserted || s.ISR != transport.ISRQueue {
		t.Fatalf("INTx disabled: %+v", s)
	}
	r.cfgWrite(pcidev.RegCommand, 2, r.cfgRead(pcidev.RegCommand, 2)&^pcidev.CommandINTxDisable)
	r.isr()
	if s := r.tr.Snapshot(); s.LineAsserted || s.ISR != 0 {
		t.Fatalf("after the ISR read: %+v", s)
	}
}
