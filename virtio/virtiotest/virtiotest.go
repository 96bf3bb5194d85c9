// Package virtiotest drives a virtio.Device the way a transport does, with
// no transport: it negotiates features, builds one queue per device queue
// over queuetest drivers sharing one fake guest memory, gives each queue a
// pipe as its kick file, activates the device with a recording Interrupt,
// and resets it. Device tests (virtio/netdev, virtio/blk) use it to play the
// guest driver against the real device code. NetBackend (netbackend.go)
// is the one in-memory virtio-net backend for the tests of virtio/netdev and
// of the transports that carry it.
//
// It is for tests only. It imports virtio, virtio/queue,
// virtio/queue/queuetest and mem.
package virtiotest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// Interrupt records the notifications a device sends. It is safe for
// concurrent use, as a transport's must be.
type Interrupt struct {
	counts     []atomic.Uint64
	config     atomic.Uint64
	needsReset atomic.Bool
	mu         sync.Mutex
	cond       *sync.Cond
}

// NewInterrupt returns a recorder for a device with nqueues queues.
func NewInterrupt(nqueues int) *Interrupt {
	i := &Interrupt{counts: make([]atomic.Uint64, nqueues)}
	i.cond = sync.NewCond(&i.mu)
	return i
}

var errBadQueue = errors.New("virtiotest: interrupt for a queue the device does not have")

// Signal records a used-buffer notification for queue q.
func (i *Interrupt) Signal(q int) error {
	if q < 0 || q >= len(i.counts) {
		return errBadQueue
	}
	i.counts[q].Add(1)
	i.wake()
	return nil
}

// SignalConfig records a configuration-change notification.
func (i *Interrupt) SignalConfig() error {
	i.config.Add(1)
	i.wake()
	return nil
}

// NeedsReset records that the device asked for DEVICE_NEEDS_RESET.
func (i *Interrupt) NeedsReset() error {
	i.needsReset.Store(true)
	i.wake()
	return nil
}

func (i *Interrupt) wake() {
	i.mu.Lock()
	i.cond.Broadcast()
	i.mu.Unlock()
}

// Count is the number of Signal calls for queue q.
func (i *Interrupt) Count(q int) uint64 {
	if q < 0 || q >= len(i.counts) {
		return 0
	}
	return i.counts[q].Load()
}

// ConfigCount is the number of SignalConfig calls.
func (i *Interrupt) ConfigCount() uint64 { return i.config.Load() }

// NeedsResetRequested reports whether the device called NeedsReset.
func (i *Interrupt) NeedsResetRequested() bool { return i.needsReset.Load() }

// Wait blocks until cond() holds, re-checking it after every
// notification, or until timeout; it reports whether cond held.
func (i *Interrupt) Wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, i.wake)
	defer t.Stop()
	i.mu.Lock()
	defer i.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		i.cond.Wait()
	}
	return true
}

// Harness is an activated device with its guest-side drivers.
type Harness struct {
	// Dev is the device under test.
	Dev virtio.Device
	// Negotiated are the features passed to AckFeatures.
	Negotiated uint64
	// Drivers play the guest driver of each queue (nil where a queue was
	// left disabled); they share one fake guest memory.
	Drivers []*qt.Driver
	// Queues are the device-side rings the transport owns.
	Queues []*queue.Queue
	// IRQ records the device's notifications.
	IRQ *Interrupt

	kickR, kickW []*os.File
}

// Options tune Activate.
type Options struct {
	// Enabled lists the queues the driver enables; nil enables all.
	Enabled []bool
	// Sizes overrides queue sizes (0 or missing: the device's maximum).
	Sizes []uint16
	// DataSize is each queue's buffer space (default: queuetest's).
	DataSize uint64
}

// Activate negotiates acked (which must include VERSION_1 and be a subset
// of the device's features), lays out the queues, and activates dev.
func Activate(dev virtio.Device, acked uint64, opt Options) (*Harness, error) {
	neg, err := virtio.Negotiate(dev.Features(), acked)
	if err != nil {
		return nil, err
	}
	if err := dev.AckFeatures(neg); err != nil {
		return nil, fmt.Errorf("AckFeatures: %w", err)
	}
	maxes := dev.QueueMaxSizes()
	h := &Harness{Dev: dev, Negotiated: neg, IRQ: NewInterrupt(len(maxes))}
	cfgs := make([]qt.Config, len(maxes))
	for i, mx := range maxes {
		cfgs[i] = qt.Config{Size: mx, Features: neg, DataSize: opt.DataSize}
		if i < len(opt.Sizes) && opt.Sizes[i] != 0 {
			cfgs[i].Size = opt.Sizes[i]
		}
	}
	drivers, err := qt.NewSet(cfgs...)
	if err != nil {
		return nil, err
	}
	queues := make([]virtio.Queue, len(maxes))
	h.Drivers = make([]*qt.Driver, len(maxes))
	h.Queues = make([]*queue.Queue, len(maxes))
	h.kickR = make([]*os.File, len(maxes))
	h.kickW = make([]*os.File, len(maxes))
	for i, mx := range maxes {
		q, err := queue.New(mx)
		if err != nil {
			h.closeKicks()
			return nil, err
		}
		h.Queues[i] = q
		if opt.Enabled != nil && (i >= len(opt.Enabled) || !opt.Enabled[i]) {
			continue
		}
		if err := drivers[i].Configure(q); err != nil {
			h.closeKicks()
			return nil, fmt.Errorf("queue %d: %w", i, err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			h.closeKicks()
			return nil, err
		}
		h.kickR[i], h.kickW[i] = r, w
		h.Drivers[i] = drivers[i]
		queues[i] = virtio.Queue{Ring: q, Kick: r}
	}
	if err := dev.Activate(drivers[0].Mem, queues, h.IRQ); err != nil {
		h.closeKicks()
		return nil, fmt.Errorf("Activate: %w", err)
	}
	return h, nil
}

// MustActivate is Activate for tests: it fails tb on error and resets the
// device when the test ends.
func MustActivate(tb testing.TB, dev virtio.Device, acked uint64, opt Options) *Harness {
	tb.Helper()
	h, err := Activate(dev, acked, opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// Kick publishes queue q's available ring and, if the driver would
// notify (notification suppression permitting), writes the kick pipe. It
// reports whether it notified.
func (h *Harness) Kick(q int) bool {
	d := h.Drivers[q]
	if d == nil {
		return false
	}
	if !d.Kick() {
		return false
	}
	h.ForceKick(q)
	return true
}

// ForceKick notifies queue q regardless of suppression (a spurious kick,
// which devices must tolerate).
func (h *Harness) ForceKick(q int) {
	if w := h.kickW[q]; w != nil {
		w.Write([]byte{1})
	}
}

// Close resets the device, then the queues, and closes the kick pipes.
// It is idempotent.
func (h *Harness) Close() {
	if h.Dev != nil {
		h.Dev.Reset()
		h.Dev = nil
	}
	for _, q := range h.Queues {
		if q != nil {
			q.Reset()
		}
	}
	h.closeKicks()
}

func (h *Harness) closeKicks() {
	for i := range h.kickW {
		if h.kickW[i] != nil {
			h.kickW[i].Close()
			h.kickR[i].Close()
			h.kickW[i], h.kickR[i] = nil, nil
		}
	}
}
