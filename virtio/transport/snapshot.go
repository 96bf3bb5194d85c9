package transport

// Snapshots of a device's transport, queues and engines for debug dumps
// (SIGUSR1, --timeout): where a stalled transfer stopped.

import (
	"sync"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// SnapshotWait is how long a snapshot waits for the lock that serialises
// activation and reset before it gives up on the ring words (Busy): a
// dump of a hung VMM must not hang too.
const SnapshotWait = 500 * time.Millisecond

// Snapshot is a device's state as its transport sees it, for dumps. The
// common part comes from Core.Snapshot; each transport fills in Kind and
// its interrupt state.
type Snapshot struct {
	// Kind is the transport: "mmio", "pci" or "vhost-user".
	Kind string
	// Device is the device type.
	Device virtio.DeviceID
	// Status is the device status register; Features the negotiated
	// features (0 before FEATURES_OK).
	Status   virtio.Status
	Features uint64
	// Active reports whether the device runs (DRIVER_OK accepted).
	Active bool
	// Busy reports that the lock stayed held for SnapshotWait (a
	// register access or reset in progress, or stuck): Features, Active
	// and the queues' Enabled and Ring are then missing.
	Busy bool
	// GuestErrors counts the driver protocol errors seen so far.
	GuestErrors uint64

	// ISR is the interrupt status bits (ISRQueue, ISRConfig), as
	// ISR.Load reads them.
	ISR uint32
	// Level reports a level-triggered interrupt line (MMIO Config.Line,
	// PCI INTx) rather than edges (MMIO's irqfd); LineAsserted whether
	// that line is asserted now.
	Level, LineAsserted bool
	// MSIX is the PCI function's MSI-X state; nil without MSI-X.
	MSIX *MSIXSnapshot

	// Queues has one entry per queue of the device.
	Queues []QueueSnapshot
}

// MSIXSnapshot is a PCI function's MSI-X state.
type MSIXSnapshot struct {
	// Enabled and FunctionMask are the Message Control bits.
	Enabled, FunctionMask bool
	// ConfigVector is config_msix_vector and QueueVectors each queue's
	// queue_msix_vector (0xffff: none).
	ConfigVector uint16
	QueueVectors []uint16
	// Vectors has one entry per MSI-X table entry.
	Vectors []VectorSnapshot
}

// VectorSnapshot is one MSI-X table entry's mask and pending bits.
type VectorSnapshot struct {
	// Masked is the entry's own mask bit (the function mask and enable
	// are in MSIXSnapshot); Pending its pending bit (an interrupt held
	// back by a mask, delivered at unmask).
	Masked, Pending bool
}

// Vector returns vector v's bits, and false if v is not in the table
// (0xffff, VIRTIO_MSI_NO_VECTOR, never is).
func (m *MSIXSnapshot) Vector(v uint16) (VectorSnapshot, bool) {
	if m == nil || int(v) >= len(m.Vectors) {
		return VectorSnapshot{}, false
	}
	return m.Vectors[v], true
}

// QueueSnapshot is one queue's state.
type QueueSnapshot struct {
	// Index is the queue index.
	Index int
	// Enabled reports whether the driver enabled the queue.
	Enabled bool
	// Ring is the ring words in guest memory (only the size unless
	// Enabled).
	Ring queue.RingState
	// Engine is what the device's engine for this queue is doing, if
	// HasEngine (the device implements virtio.EngineReporter).
	Engine    virtio.EngineState
	HasEngine bool
}

// LockWithin locks mu, waiting at most wait, and reports whether it did.
// It is for dumps, which must not block behind a stuck lock holder.
func LockWithin(mu *sync.Mutex, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for !mu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// AddEngines fills in the engines' states of dev, if it reports them,
// into the queue snapshots with their index.
func AddEngines(qs []QueueSnapshot, dev virtio.Device) {
	r, ok := dev.(virtio.EngineReporter)
	if !ok {
		return
	}
	for _, e := range r.EngineStates() {
		if e.Queue >= 0 && e.Queue < len(qs) {
			qs[e.Queue].Engine, qs[e.Queue].HasEngine = e, true
		}
	}
}

// Snapshot returns the common part of the device's state: status,
// features, and per queue whether it is enabled, its ring words
// (queue.RingState, read with the lock held, so the queue cannot be reset
// and its memory unmapped meanwhile) and its engine's state. The lock is
// waited for at most SnapshotWait (see Snapshot.Busy); engine states,
// which need no lock, are reported either way. Safe from any goroutine.
func (c *Core) Snapshot() Snapshot {
	s := Snapshot{
		Device:      c.dev.Type(),
		GuestErrors: c.guestErrs.Load(),
		Queues:      make([]QueueSnapshot, len(c.queues)),
	}
	for i := range s.Queues {
		s.Queues[i].Index = i
	}
	if LockWithin(&c.mu, SnapshotWait) {
		s.Features, s.Active = c.negotiated, c.act != nil
		for i := range c.queues {
			r := &c.queues[i]
			s.Queues[i].Enabled = r.enabled
			s.Queues[i].Ring = r.q.RingState()
		}
		c.mu.Unlock()
	} else {
		s.Busy = true
	}
	s.Status = c.Status()
	AddEngines(s.Queues, c.dev)
	return s
}
