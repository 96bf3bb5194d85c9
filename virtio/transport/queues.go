package transport

import (
	"fmt"
	"log/slog"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Area names one of a split queue's three ring areas.
type Area int

// Ring areas, in the order the spec lists them.
const (
	// AreaDesc is the descriptor area (descriptor table).
	AreaDesc Area = iota
	// AreaDriver is the driver area (available ring).
	AreaDriver
	// AreaDevice is the device area (used ring).
	AreaDevice
	numAreas
)

// queueRegs is one queue's programming registers and runtime files.
type queueRegs struct {
	q        *queue.Queue
	max      uint16
	size     uint32 // as written; validated at enable
	addr     [numAreas]uint64
	enabled  bool
	kick     kick        // valid while enabled
	attached bool        // kick attached to the Notifier at match
	match    NotifyMatch // where it is attached
}

// selected returns the selected queue, or nil. Caller holds mu.
func (c *Core) selected() *queueRegs {
	if c.queueSel >= uint32(len(c.queues)) {
		return nil
	}
	return &c.queues[c.queueSel]
}

// SelectQueue sets the queue select register. Selecting a queue the
// device does not have is allowed: its registers read as zero and writes
// to them are ignored.
func (c *Core) SelectQueue(v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queueSel = v
}

// programmable returns the selected queue if the driver may program it
// now, recording a guest error otherwise. Caller holds mu.
func (c *Core) programmable(what string) *queueRegs {
	r := c.selected()
	switch {
	case r == nil:
		c.GuestError(what+" written for a queue the device does not have", "queue", c.queueSel)
		return nil
	case r.enabled:
		c.GuestError(what+" written while the queue is enabled", "queue", c.queueSel)
		return nil
	}
	return r
}

// SetQueueSize sets the selected queue's size. The value is kept as
// written; a size that is zero, above the maximum or (unless
// VIRTIO_F_RING_PACKED was negotiated: the driver writes sizes after
// FEATURES_OK) not a power of two is recorded as a guest error now and
// makes enabling the queue fail.
func (c *Core) SetQueueSize(n uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.programmable("queue size")
	if r == nil {
		return
	}
	packed := virtio.Has(c.negotiated, virtio.FeatureRingPacked)
	if n == 0 || (n&(n-1) != 0 && !packed) || n > uint32(r.max) {
		c.GuestError("queue size not a power of two (split ring) up to the maximum", "queue", c.queueSel, "size", n, "max", r.max)
	}
	r.size = n
}

// SetQueueAddr sets one ring address of the selected queue.
func (c *Core) SetQueueAddr(a Area, v uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a < 0 || a >= numAreas {
		return
	}
	if r := c.programmable("queue address"); r != nil {
		r.addr[a] = v
	}
}

// SetQueueAddrHalf sets the low (high false) or high 32 bits of one ring
// address of the selected queue, for registers split in two.
func (c *Core) SetQueueAddrHalf(a Area, high bool, v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a < 0 || a >= numAreas {
		return
	}
	r := c.programmable("queue address")
	if r == nil {
		return
	}
	if high {
		r.addr[a] = r.addr[a]&0xffff_ffff | uint64(v)<<32
	} else {
		r.addr[a] = r.addr[a]&^0xffff_ffff | uint64(v)
	}
}

// SetQueueEnabled enables (MMIO QueueReady 1, PCI queue_enable 1) or
// disables (MMIO QueueReady 0) the selected queue.
//
// Enabling requires FEATURES_OK and no DRIVER_OK yet; the queue's size and
// ring addresses are then checked against guest memory (queue.Validate).
// If they are unsound the queue stays disabled and the device is marked
// DEVICE_NEEDS_RESET. A valid queue gets its kick eventfd, attached to
// the Notifier when there is one.
//
// Disabling is honoured only before DRIVER_OK (Linux's error path and
// teardown after a reset); while the device runs it is ignored, since the
// device owns the ring until reset.
func (c *Core) SetQueueEnabled(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	r := c.selected()
	if r == nil {
		c.GuestError("queue enable written for a queue the device does not have", "queue", c.queueSel)
		return
	}
	if on == r.enabled {
		return
	}
	st := c.Status()
	if st.Has(virtio.StatusDriverOK) {
		c.GuestError("queue enable changed after DRIVER_OK; ignored", "queue", c.queueSel, "enable", on)
		return
	}
	if !on {
		c.disableLocked(int(c.queueSel))
		if st.Has(virtio.StatusFeaturesOK) {
			r.q.SetFeatures(c.negotiated)
		}
		return
	}
	if !st.Has(virtio.StatusFeaturesOK) {
		c.GuestError("queue enabled before FEATURES_OK; ignored", "queue", c.queueSel)
		return
	}
	if err := c.validateLocked(r); err != nil {
		c.GuestError("queue enable refused; DEVICE_NEEDS_RESET", "queue", c.queueSel, "err", err)
		r.q.Reset()
		r.q.SetFeatures(c.negotiated)
		c.setNeedsReset()
		return
	}
	k, err := newKick(fmt.Sprintf("virtio-%v-kick%d", c.dev.Type(), c.queueSel))
	if err != nil {
		c.guestLog.Log(c.log, slog.LevelError, "virtio queue kick eventfd", "queue", c.queueSel, "err", err)
		r.q.Reset()
		r.q.SetFeatures(c.negotiated)
		c.setNeedsReset()
		return
	}
	r.kick, r.enabled = k, true
	c.attachLocked(int(c.queueSel))
}

// validateLocked programs the queue from the registers and validates it.
func (c *Core) validateLocked(r *queueRegs) error {
	if r.size > uint32(r.max) {
		return fmt.Errorf("size %d above the maximum %d", r.size, r.max)
	}
	if err := r.q.SetSize(uint16(r.size)); err != nil {
		return err
	}
	if err := r.q.SetAddrs(r.addr[AreaDesc], r.addr[AreaDriver], r.addr[AreaDevice]); err != nil {
		return err
	}
	return r.q.Validate(c.mem)
}

// disableLocked detaches and closes queue i's kick and resets its ring.
func (c *Core) disableLocked(i int) {
	r := &c.queues[i]
	if r.kick.f != nil {
		c.detachLocked(i)
		r.kick.f.Close()
		r.kick = kick{}
	}
	r.enabled = false
	r.q.Reset()
}

func (c *Core) attachLocked(i int) {
	r := &c.queues[i]
	if c.notifier == nil || r.kick.f == nil || r.attached {
		return
	}
	m, ok := c.hooks.NotifyMatch(i)
	if !ok {
		return
	}
	if err := c.notifier.Attach(m, r.kick.f); err != nil {
		c.guestLog.Log(c.log, slog.LevelWarn, "virtio notify: ioeventfd not attached; notifications take the exit path", "queue", i, "addr", m.Addr, "err", err)
		return
	}
	r.attached, r.match = true, m
}

func (c *Core) detachLocked(i int) {
	r := &c.queues[i]
	if !r.attached {
		return
	}
	if err := c.notifier.Detach(r.match, r.kick.f); err != nil {
		c.guestLog.Log(c.log, slog.LevelWarn, "virtio notify: ioeventfd detach", "queue", i, "addr", r.match.Addr, "err", err)
	}
	r.attached = false
}

// Rearm re-attaches every enabled queue's kick where Hooks.NotifyMatch now
// says its notify register is. A transport calls it after its notify
// registers move, e.g. a PCI BAR reprogrammed.
//
// A kick whose register is unmapped (PCI memory decoding off) stays
// attached where it was, and is moved only when the register is mapped at
// another address: a guest toggling decoding in a loop must not cost the
// VMM two ioctls per queue per toggle (issue 13 finding 12). While
// decoding is off only the guest's own writes to that address reach the
// stale ioeventfd, as spurious kicks of its own device.
func (c *Core) Rearm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.queues {
		r := &c.queues[i]
		if r.kick.f == nil {
			continue
		}
		m, ok := c.hooks.NotifyMatch(i)
		if !ok {
			continue
		}
		if r.attached && m != r.match {
			c.detachLocked(i)
		}
		c.attachLocked(i)
	}
}

// Notify handles a notify-register write that reached the transport (no
// Notifier, or a write it did not catch): it signals queue q's kick
// eventfd. A notification for a queue that is not enabled is a guest
// error and is dropped.
func (c *Core) Notify(q uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if q >= uint32(len(c.queues)) || c.queues[q].kick.f == nil {
		c.GuestError("notification for a queue that is not enabled", "queue", q)
		return
	}
	if err := c.queues[q].kick.signal(); err != nil {
		c.guestLog.Log(c.log, slog.LevelError, "virtio kick eventfd write", "queue", q, "err", err)
	}
}

// ReadConfig reads the device-specific configuration space at offset.
// Bytes past the device's ConfigSize read as zero.
func (c *Core) ReadConfig(offset uint64, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(p)
	size := uint64(c.dev.ConfigSize())
	if offset >= size {
		return
	}
	n := min(uint64(len(p)), size-offset)
	c.dev.ReadConfig(offset, p[:n])
}

// WriteConfig writes the device-specific configuration space at offset.
// Writes reaching past ConfigSize are dropped whole.
func (c *Core) WriteConfig(offset uint64, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	size := uint64(c.dev.ConfigSize())
	if offset >= size || uint64(len(p)) > size-offset {
		c.GuestError("device configuration write out of range", "offset", offset, "len", len(p))
		return
	}
	c.dev.WriteConfig(offset, p)
}
