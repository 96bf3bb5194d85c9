package rng

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Geometry of the device.
const (
	// DefaultQueueSize is the queue's size when Options.QueueSize is 0.
	DefaultQueueSize = 256
	// MaxChainBytes is the most random bytes one request gets (Linux
	// asks for far less).
	MaxChainBytes = 64 << 10
)

// Features are the common ring features; virtio-rng has no bit of its
// own.
const Features = virtio.CommonFeatures

// Options configure a Device.
type Options struct {
	// Limiter, when set, limits requests: one op each, the bytes given
	// as bandwidth.
	Limiter *ratelimit.Limiter
	// QueueSize is the queue's largest size; 0 means DefaultQueueSize.
	QueueSize uint16
	// Read fills p with random bytes; nil means crypto/rand.Read (tests
	// substitute it).
	Read func(p []byte) (int, error)
}

// Device is a virtio-rng device.
type Device struct {
	limiter  *ratelimit.Limiter
	read     func([]byte) (int, error)
	maxSizes []uint16

	mu       sync.Mutex
	acked    uint64
	running  bool
	kick     interface{ SetReadDeadline(time.Time) error }
	stopping atomic.Bool
	stop     chan struct{}
	done     chan struct{}

	eng   virtio.Engine
	h     handler
	stats counters
}

var _ virtio.Device = (*Device)(nil)

// New returns a device for opts.
func New(opts Options) (*Device, error) {
	qs := opts.QueueSize
	if qs == 0 {
		qs = DefaultQueueSize
	}
	if qs < 4 || qs > queue.MaxSize || qs&(qs-1) != 0 {
		return nil, fmt.Errorf("virtio-rng: queue size %d is not a power of two in [4, %d]", qs, queue.MaxSize)
	}
	read := opts.Read
	if read == nil {
		read = rand.Read
	}
	d := &Device{limiter: opts.Limiter, read: read, maxSizes: []uint16{qs}}
	d.h.d = d
	return d, nil
}

// Type is virtio.DeviceEntropy.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceEntropy }

// Features are Features.
func (d *Device) Features() uint64 { return Features }

// AckFeatures accepts any subset of the offered features.
func (d *Device) AckFeatures(negotiated uint64) error {
	if extra := negotiated &^ Features; extra != 0 {
		return fmt.Errorf("virtio-rng: features %#x were not offered", extra)
	}
	d.mu.Lock()
	d.acked = negotiated
	d.mu.Unlock()
	return nil
}

// QueueMaxSizes is the one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is 0: virtio-rng has no configuration space.
func (d *Device) ConfigSize() int { return 0 }

// ReadConfig reads zeros.
func (d *Device) ReadConfig(offset uint64, p []byte) { clear(p) }

// WriteConfig ignores the write.
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// Limiter is the rate limiter given in Options (nil if none).
func (d *Device) Limiter() *ratelimit.Limiter { return d.limiter }

// Activate starts the queue's engine.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.running:
		return errors.New("virtio-rng: already active")
	case irq == nil || len(queues) != 1:
		return fmt.Errorf("virtio-rng: activated with %d queues, want 1", len(queues))
	case queues[0].Ring == nil || queues[0].Kick == nil:
		return errors.New("virtio-rng: queue 0 is not enabled")
	}
	d.running = true
	d.stopping.Store(false)
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	queues[0].Kick.SetReadDeadline(time.Time{})
	d.kick = queues[0].Kick
	d.eng.Bind(virtio.EngineConfig{Handler: &d.h, Queue: queues[0], IRQ: irq, Stopping: &d.stopping,
		Stop: d.stop, Batch: 16})
	go func() { defer close(d.done); d.eng.Run() }()
	return nil
}

// Reset stops the engine and forgets the negotiated features.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		d.stopping.Store(true)
		close(d.stop)
		d.kick.SetReadDeadline(time.Unix(1, 0))
		<-d.done
		d.kick.SetReadDeadline(time.Time{})
		d.kick = nil
		d.eng.Release()
		d.running = false
	}
	d.acked = 0
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the engine is doing ("requestq").
func (d *Device) EngineStates() []virtio.EngineState {
	s := d.eng.Status.Load()
	s.Name = "requestq"
	return []virtio.EngineState{s}
}

// handler fills one request chain.
type handler struct{ d *Device }

func (h *handler) Next() virtio.Result       { return virtio.Result{} }
func (h *handler) Wait(virtio.Activity) bool { return true }

// Chain fills the chain's writable buffers (at most MaxChainBytes) with
// random bytes, after the rate limiter allows it.
func (h *handler) Chain(c *queue.Chain) virtio.Result {
	d := h.d
	if c.ReadLen > 0 {
		d.stats.inc(cBadChains)
		return virtio.Result{Do: virtio.Done}
	}
	n := min(c.WriteLen, MaxChainBytes)
	if ok, w := d.limiter.Consume(uint64(n)); !ok {
		return virtio.Result{Do: virtio.Throttle, Wait: w}
	}
	left := int(n)
	for _, s := range c.Writable {
		if left == 0 {
			break
		}
		k := min(len(s), left)
		if _, err := d.read(s[:k]); err != nil {
			d.stats.inc(cReadErrors) // complete what was filled
			break
		}
		left -= k
	}
	used := n - uint32(left)
	d.stats.inc(cRequests)
	d.stats.add(cBytes, uint64(used))
	return virtio.Result{Do: virtio.Done, Used: used}
}

func (h *handler) Event(ev virtio.Event) {
	switch ev {
	case virtio.EventMalformed:
		h.d.stats.inc(cMalformed)
	case virtio.EventInterrupt:
		h.d.stats.inc(cInterrupts)
	case virtio.EventThrottled:
		h.d.stats.inc(cThrottled)
	case virtio.EventBroken:
		h.d.stats.inc(cBroken)
	}
}
