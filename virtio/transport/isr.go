package transport

import (
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/devices"
)

// ISR status bits (virtio-mmio InterruptStatus, virtio-pci ISR status).
const (
	// ISRQueue: the device used buffers in at least one queue.
	ISRQueue uint32 = 1
	// ISRConfig: the device configuration changed (or the device needs a
	// reset).
	ISRConfig uint32 = 2
)

// ISR is a device's interrupt status register and the interrupt it
// drives. Device goroutines set bits with Raise; the driver clears them
// (Ack for MMIO's InterruptACK, ReadAndClear for PCI's read-to-clear ISR).
// It is safe for concurrent use.
//
// In edge mode (NewEdgeISR) Raise ORs the bits atomically and fires the
// trigger only when it set a bit that was clear: if the bit was already
// set, an interrupt for it is still pending or being handled, and a
// driver that reads and acknowledges the status before looking at its
// rings (Linux's vm_interrupt, vp_interrupt) sees the new work anyway, so
// no notification is lost and none is spurious. Edge mode takes no lock.
//
// In level mode (NewLevelISR) the line follows "some bit is set": Raise
// asserts it, and the acknowledgement that clears the last bit deasserts
// it. A mutex keeps bit changes and line changes in the same order, so a
// Raise racing with an acknowledgement can never leave the line asserted
// with no bit set (an interrupt storm on a level line) or deasserted with
// a bit set (a lost interrupt).
type ISR struct {
	bits atomic.Uint32
	edge devices.IRQTrigger

	mu    sync.Mutex // level mode: orders bit changes with level calls
	level func(pending bool) error
	last  bool // level mode: last pending value reported
}

// NewEdgeISR returns an ISR that fires trig for each newly set bit.
func NewEdgeISR(trig devices.IRQTrigger) *ISR { return &ISR{edge: trig} }

// NewLevelISR returns an ISR that calls level(true) when a bit becomes set
// while none was, and level(false) when the last bit is cleared. level is
// called with the ISR's lock held, in order; it must not call back into
// the ISR. For a plain interrupt line pass line.SetLevel.
func NewLevelISR(level func(pending bool) error) *ISR { return &ISR{level: level} }

// Raise sets bits and interrupts the driver as the mode requires. It does
// not allocate; it returns the trigger's or line's error.
func (i *ISR) Raise(bits uint32) error {
	if i.level == nil {
		if old := i.bits.Or(bits); old&bits == bits {
			return nil
		}
		return i.edge.Trigger()
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.bits.Or(bits)
	return i.updateLocked(false)
}

// Ack clears bits (virtio-mmio InterruptACK).
func (i *ISR) Ack(bits uint32) {
	if i.level == nil {
		i.bits.And(^bits)
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.bits.And(^bits)
	i.updateLocked(false)
}

// ReadAndClear returns the bits and clears them (virtio-pci ISR status,
// whose read acknowledges the interrupt and deasserts INTx).
func (i *ISR) ReadAndClear() uint32 {
	if i.level == nil {
		return i.bits.Swap(0)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	v := i.bits.Swap(0)
	i.updateLocked(false)
	return v
}

// Load returns the bits without changing them.
func (i *ISR) Load() uint32 { return i.bits.Load() }

// Asserted reports, in level mode, whether the line was last reported
// pending (level(true)); in edge mode, where nothing stays asserted, it
// is false. For dumps.
func (i *ISR) Asserted() bool {
	if i.level == nil {
		return false
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.last
}

// Clear drops every bit (device reset); a level line is deasserted.
func (i *ISR) Clear() {
	if i.level == nil {
		i.bits.Store(0)
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.bits.Store(0)
	i.updateLocked(false)
}

// Refresh re-reports the current level in level mode, for a transport
// whose level function depends on other state (PCI's INTx disable bit
// and MSI-X enable). It is a no-op in edge mode.
func (i *ISR) Refresh() error {
	if i.level == nil {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.updateLocked(true)
}

// updateLocked reports the pending state if it changed (or force).
func (i *ISR) updateLocked(force bool) error {
	pending := i.bits.Load() != 0
	if pending == i.last && !force {
		return nil
	}
	i.last = pending
	return i.level(pending)
}
