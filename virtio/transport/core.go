package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Config is what a transport passes to NewCore.
type Config struct {
	// Device is the virtio device behind the transport.
	Device virtio.Device
	// Mem is guest memory; queues are validated against it.
	Mem *mem.Memory
	// Notifier, if set, attaches kick eventfds to notify registers.
	Notifier Notifier
	// Log receives guest protocol errors (rate limited) and host errors.
	// Nil discards them.
	Log *slog.Logger
	// MaxQueues is the most queues the transport's layout can address
	// (0: 65535).
	MaxQueues int
}

// Hooks is the transport-specific half of a Core, implemented by each
// transport (on an unexported type, so the methods stay internal).
type Hooks interface {
	// SignalQueue sends a used-buffer notification for queue q. Called
	// from device goroutines: it must not take the Core's lock or
	// allocate.
	SignalQueue(q int) error
	// SignalConfig sends a configuration-change notification (ISR bit 1
	// and/or the config MSI-X vector). Same rules as SignalQueue.
	SignalConfig() error
	// NotifyMatch says where queue q's notify register currently is, or
	// false if it is not mapped (a PCI BAR with decoding off). Called
	// with the Core's lock held.
	NotifyMatch(q int) (NotifyMatch, bool)
	// Reset clears transport-specific device state (ISR bits, MSI-X
	// vector assignments) when the device is reset. Called with the
	// Core's lock held, after Device.Reset returned.
	Reset()
}

// Errors returned by the virtio.Interrupt a Core hands to its device.
var (
	// ErrInactive: the device called its Interrupt after a reset.
	ErrInactive = errors.New("virtio transport: interrupt from a device that was reset")
	// ErrQueueIndex: Signal for a queue the device does not have.
	ErrQueueIndex = errors.New("virtio transport: interrupt for a queue index out of range")
)

// Core is the status state machine, feature negotiation and queue
// registers one device's transport shares with every other transport. A
// transport decodes its register layout and calls the Core; see the
// package documentation for locking rules.
type Core struct {
	dev      virtio.Device
	mem      *mem.Memory
	notifier Notifier
	log      *slog.Logger
	hooks    Hooks
	features uint64 // Device.Features(), read once

	status    atomic.Uint32 // virtio.Status; DEVICE_NEEDS_RESET set lock-free
	configGen atomic.Uint32
	guestErrs atomic.Uint64
	// guestLog rate-limits every other line a driver can cause again and
	// again (a device that needs a reset, FAILED, an ioeventfd the guest
	// moves): a guest that loops its bring-up must not fill the log.
	guestLog LogLimit
	// contained counts panics Contain recovered (fuzzers assert none).
	contained atomic.Uint64

	mu         sync.Mutex
	devFeatSel uint32
	drvFeatSel uint32
	drvFeat    uint64 // features the driver wrote
	negotiated uint64 // valid once FEATURES_OK is set
	queueSel   uint32
	queues     []queueRegs
	act        *activation // the device's Interrupt while active
	closed     bool
}

// NewCore builds the Core for cfg.Device and its queues. hooks is the
// transport's half; the Core keeps it.
func NewCore(cfg Config, hooks Hooks) (*Core, error) {
	if cfg.Device == nil || cfg.Mem == nil || hooks == nil {
		return nil, errors.New("virtio transport: device, memory and hooks are required")
	}
	maxes := cfg.Device.QueueMaxSizes()
	limit := cfg.MaxQueues
	if limit <= 0 || limit > 0xffff {
		limit = 0xffff
	}
	if len(maxes) == 0 || len(maxes) > limit {
		return nil, fmt.Errorf("virtio transport: %v device has %d queues, want 1 to %d", cfg.Device.Type(), len(maxes), limit)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Core{
		dev:      cfg.Device,
		mem:      cfg.Mem,
		notifier: cfg.Notifier,
		log:      log.With("virtio", cfg.Device.Type().String()),
		hooks:    hooks,
		features: cfg.Device.Features(),
		queues:   make([]queueRegs, len(maxes)),
	}
	for i, mx := range maxes {
		q, err := queue.New(mx)
		if err != nil {
			return nil, fmt.Errorf("virtio transport: queue %d: %w", i, err)
		}
		c.queues[i] = queueRegs{q: q, max: mx, size: uint32(mx)}
	}
	return c, nil
}

// Device returns the device behind the Core.
func (c *Core) Device() virtio.Device { return c.dev }

// NumQueues is the number of queues the device has.
func (c *Core) NumQueues() int { return len(c.queues) }

// Status returns the device status register.
func (c *Core) Status() virtio.Status { return virtio.Status(c.status.Load()) }

// ConfigGeneration is the configuration generation counter; it changes
// whenever the device signals a configuration change.
func (c *Core) ConfigGeneration() uint32 { return c.configGen.Load() }

// GuestErrors counts the driver protocol errors seen so far (each also
// logged, rate limited).
func (c *Core) GuestErrors() uint64 { return c.guestErrs.Load() }

// GuestError records a driver protocol error: a register access the spec
// forbids, a bad value, an out-of-order status. msg is a constant
// description; args are slog key-value pairs. The first 32 errors are
// logged, then only the 64th, 128th, 256th... so a hostile guest cannot
// flood the log.
func (c *Core) GuestError(msg string, args ...any) {
	n := c.guestErrs.Add(1)
	if logged(n) {
		c.log.Warn("virtio driver error: "+msg, append(args, "errors", n)...)
	}
}

// logged is the rate limiter's rule for the nth event: the first 32,
// then the 64th, 128th, 256th...
func logged(n uint64) bool { return n <= 32 || n&(n-1) == 0 }

// LogLimit bounds log lines a guest (or a vhost-user frontend) can cause
// in a loop, with GuestError's rule: the first 32 lines, then only the
// 64th, 128th, 256th... Each logged line carries the count so far
// ("lines"). The zero value is ready; it is safe for concurrent use and
// does not allocate when it drops a line.
type LogLimit struct{ n atomic.Uint64 }

// Log logs msg at level through log unless the limit drops it.
func (l *LogLimit) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	n := l.n.Add(1)
	if logged(n) {
		log.Log(context.Background(), level, msg, append(args, "lines", n)...)
	}
}

// Count is how many lines were offered, logged or not.
func (l *LogLimit) Count() uint64 { return l.n.Load() }

// Active reports whether the device is activated (DRIVER_OK accepted and
// Device.Activate succeeded) and not reset since.
func (c *Core) Active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.act != nil
}

// State is a consistent snapshot of the common registers, for a
// transport's register reads.
type State struct {
	Status              virtio.Status // device status
	DeviceFeatureSelect uint32        // device feature window select
	DeviceFeatures      uint32        // the window DeviceFeatureSelect selects
	DriverFeatureSelect uint32        // driver feature window select
	DriverFeatures      uint32        // the window DriverFeatureSelect selects
	ConfigGeneration    uint32        // configuration generation counter
	NumQueues           int           // queues the device has
	Queue               QueueState    // the selected queue
}

// QueueState is the selected queue's registers.
type QueueState struct {
	// Index is the queue select register.
	Index uint32
	// Exists reports whether the device has that queue; if not, every
	// other field is zero.
	Exists bool
	// Max is the largest size the device accepts.
	Max uint16
	// Size is the size the driver programmed (Max until it does), as
	// written.
	Size uint32
	// Desc, Driver and Device are the ring addresses as written.
	Desc, Driver, Device uint64
	// Enabled reports whether the queue is enabled (validated).
	Enabled bool
}

// State returns a snapshot of the registers.
func (c *Core) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := State{
		Status:              c.Status(),
		DeviceFeatureSelect: c.devFeatSel,
		DeviceFeatures:      virtio.FeatureWord(c.features, c.devFeatSel),
		DriverFeatureSelect: c.drvFeatSel,
		DriverFeatures:      virtio.FeatureWord(c.drvFeat, c.drvFeatSel),
		ConfigGeneration:    c.configGen.Load(),
		NumQueues:           len(c.queues),
		Queue:               QueueState{Index: c.queueSel},
	}
	if r := c.selected(); r != nil {
		s.Queue.Exists = true
		s.Queue.Max, s.Queue.Size = r.max, r.size
		s.Queue.Desc, s.Queue.Driver, s.Queue.Device = r.addr[AreaDesc], r.addr[AreaDriver], r.addr[AreaDevice]
		s.Queue.Enabled = r.enabled
	}
	return s
}

// SetDeviceFeatureSelect selects the 32-bit window of device features
// that DeviceFeatures reads.
func (c *Core) SetDeviceFeatureSelect(v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.devFeatSel = v
}

// SetDriverFeatureSelect selects the window SetDriverFeatures writes.
func (c *Core) SetDriverFeatureSelect(v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drvFeatSel = v
}

// SetDriverFeatures writes the selected window of the driver's features.
// Writes after FEATURES_OK are ignored (the set is fixed until reset).
func (c *Core) SetDriverFeatures(v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Status().Has(virtio.StatusFeaturesOK) {
		c.GuestError("driver features written after FEATURES_OK", "select", c.drvFeatSel, "value", v)
		return
	}
	if c.drvFeatSel > 1 && v != 0 {
		c.GuestError("driver features written to a window past 1", "select", c.drvFeatSel, "value", v)
	}
	c.drvFeat = virtio.SetFeatureWord(c.drvFeat, c.drvFeatSel, v)
}

// WriteStatus handles a driver's write of the device status register:
// 0 resets the device (Device.Reset, which waits for the device to stop,
// then the queues and transport state), FEATURES_OK negotiates (left
// clear if the device refuses the driver's features), DRIVER_OK
// activates the device (DEVICE_NEEDS_RESET on failure). Writes that are
// not a legal step (bits cleared without a reset, DRIVER_OK before
// FEATURES_OK...) are ignored and counted as guest errors.
func (c *Core) WriteStatus(v uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	old, nv := c.Status(), virtio.Status(v)
	step, err := virtio.NextStatus(old, nv)
	if err != nil {
		c.GuestError("status write ignored", "err", err)
		return
	}
	switch step {
	case virtio.StepReset:
		c.resetLocked()
		return
	case virtio.StepFeaturesOK:
		if err := c.negotiateLocked(); err != nil {
			c.GuestError("features refused; FEATURES_OK left clear", "err", err, "driver_features", c.drvFeat)
			nv &^= virtio.StatusFeaturesOK
		}
	case virtio.StepDriverOK:
		c.storeStatus(nv)
		c.activateLocked()
		return
	case virtio.StepFailed:
		nv = virtio.FailedStatus(old, nv)
		c.guestLog.Log(c.log, slog.LevelInfo, "virtio driver set FAILED", "status", nv)
	}
	c.storeStatus(nv)
}

// storeStatus stores a driver-written status, keeping DEVICE_NEEDS_RESET
// if the device set it meanwhile.
func (c *Core) storeStatus(nv virtio.Status) {
	for {
		cur := c.status.Load()
		if c.status.CompareAndSwap(cur, uint32(nv)|cur&uint32(virtio.StatusDeviceNeedsReset)) {
			return
		}
	}
}

// negotiateLocked checks the driver's features at FEATURES_OK, configures
// the queues' ring features and acknowledges the set to the device.
func (c *Core) negotiateLocked() error {
	neg, err := virtio.Negotiate(c.features, c.drvFeat)
	if err != nil {
		return err
	}
	for i := range c.queues {
		if err := c.queues[i].q.SetFeatures(neg); err != nil {
			return fmt.Errorf("queue %d: %w", i, err)
		}
	}
	if err := c.dev.AckFeatures(neg); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	c.negotiated = neg
	return nil
}

// activateLocked hands the enabled queues to the device at DRIVER_OK.
func (c *Core) activateLocked() {
	if c.Status().Has(virtio.StatusDeviceNeedsReset) {
		c.GuestError("DRIVER_OK on a device that needs a reset; not activated")
		c.hooks.SignalConfig()
		return
	}
	if !virtio.Has(c.negotiated, virtio.FeatureVersion1) {
		// NextStatus's order makes this unreachable; kept so that no path
		// activates a device without a negotiation (issue 13 finding 9).
		c.GuestError("DRIVER_OK without a negotiation that includes VERSION_1; not activated", "negotiated", c.negotiated)
		c.setNeedsReset()
		return
	}
	queues := make([]virtio.Queue, len(c.queues))
	for i := range c.queues {
		if r := &c.queues[i]; r.enabled {
			queues[i] = virtio.Queue{Ring: r.q, Kick: r.kick.f}
		}
	}
	act := &activation{c: c}
	if err := c.dev.Activate(c.mem, queues, act); err != nil {
		act.dead.Store(true)
		c.GuestError("device activation failed; DEVICE_NEEDS_RESET", "err", err)
		c.setNeedsReset()
		return
	}
	c.act = act
}

// resetLocked resets the device, its queues and the transport's state.
func (c *Core) resetLocked() {
	c.dev.Reset()
	if c.act != nil {
		c.act.dead.Store(true)
		c.act = nil
	}
	for i := range c.queues {
		r := &c.queues[i]
		c.disableLocked(i)
		r.size = uint32(r.max)
		r.addr = [numAreas]uint64{}
	}
	c.devFeatSel, c.drvFeatSel, c.drvFeat, c.negotiated, c.queueSel = 0, 0, 0, 0, 0
	c.hooks.Reset()
	c.status.Store(0)
}

// setNeedsReset sets DEVICE_NEEDS_RESET and, if the driver is running
// (DRIVER_OK), sends a configuration-change notification. Lock-free.
func (c *Core) setNeedsReset() error {
	for {
		cur := c.status.Load()
		if cur&uint32(virtio.StatusDeviceNeedsReset) != 0 {
			return nil
		}
		if c.status.CompareAndSwap(cur, cur|uint32(virtio.StatusDeviceNeedsReset)) {
			if virtio.Status(cur).Has(virtio.StatusDriverOK) {
				return c.hooks.SignalConfig()
			}
			return nil
		}
	}
}

// Stop stops an active device without the driver's reset, for a
// transport whose bus has just taken away the device's access to guest
// memory (virtio-pci: the driver cleared Bus Master Enable, which Linux
// does to every device before kexec so that no DMA lands in the next
// kernel's memory): Device.Reset waits for the device to stop, its
// Interrupt goes dead, and DEVICE_NEEDS_RESET is set without an
// interrupt (a bus master that may not write memory may not send an MSI
// either). The queue registers are kept; the driver must reset the
// device to use it again. A device that is not active is left alone.
func (c *Core) Stop(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.act == nil {
		return
	}
	c.dev.Reset()
	c.act.dead.Store(true)
	c.act = nil
	c.status.Or(uint32(virtio.StatusDeviceNeedsReset))
	c.guestLog.Log(c.log, slog.LevelInfo, "virtio device stopped; DEVICE_NEEDS_RESET", "reason", reason)
}

// Close resets the device (stopping it) and releases the kick eventfds.
// The transport ignores the driver afterwards. It is idempotent.
func (c *Core) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.resetLocked()
	c.closed = true
}

// activation is the virtio.Interrupt of one activation. It goes dead at
// reset, so a device that (wrongly) keeps it cannot disturb the next
// activation.
type activation struct {
	c    *Core
	dead atomic.Bool
}

// Signal implements virtio.Interrupt.
func (a *activation) Signal(q int) error {
	if a.dead.Load() {
		return ErrInactive
	}
	if q < 0 || q >= len(a.c.queues) {
		return ErrQueueIndex
	}
	return a.c.hooks.SignalQueue(q)
}

// SignalConfig implements virtio.Interrupt: it bumps the configuration
// generation, then notifies.
func (a *activation) SignalConfig() error {
	if a.dead.Load() {
		return ErrInactive
	}
	a.c.configGen.Add(1)
	return a.c.hooks.SignalConfig()
}

// Fault implements virtio.FaultReporter: the device (its queue engine)
// failed for reason; it is logged through the rate limit and the device
// marked DEVICE_NEEDS_RESET.
func (a *activation) Fault(reason string) error {
	if a.dead.Load() {
		return ErrInactive
	}
	a.c.guestLog.Log(a.c.log, slog.LevelError, "virtio device failed; DEVICE_NEEDS_RESET", "reason", reason)
	return a.c.setNeedsReset()
}

// Contain, deferred first by a transport's register handlers (which run
// on vCPU goroutines), turns a panic in the transport or in the device
// methods it calls (ReadConfig, WriteConfig, AckFeatures, Activate,
// Reset) into DEVICE_NEEDS_RESET with the reason and stack logged
// through the rate limit, instead of the end of the process (issue 13
// finding 11). The locks the panicking code held are released by their
// own defers (every lock in this package and the transports is).
func (c *Core) Contain(what string) {
	r := recover()
	if r == nil {
		return
	}
	c.contained.Add(1)
	c.guestLog.Log(c.log, slog.LevelError, "virtio device failed; DEVICE_NEEDS_RESET",
		"reason", fmt.Sprintf("%s: panic: %v", what, r), "stack", string(debug.Stack()))
	c.setNeedsReset()
}

// Contained counts the panics Contain turned into DEVICE_NEEDS_RESET: a
// bug, which fuzz targets (whose panics Contain would otherwise hide)
// check for.
func (c *Core) Contained() uint64 { return c.contained.Load() }

// NeedsReset implements virtio.Interrupt.
func (a *activation) NeedsReset() error {
	if a.dead.Load() {
		return ErrInactive
	}
	a.c.guestLog.Log(a.c.log, slog.LevelWarn, "virtio device needs a reset")
	return a.c.setNeedsReset()
}
