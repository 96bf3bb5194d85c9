package rng

import (
	"crypto/rand"

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

// Device is a virtio-rng device: the smallest device on the kit (see
// virtio/devkit.go), one lane and its counters.
type Device struct {
	// FeatureSet: Features (Features), AckFeatures (any subset) and
	// Negotiated (0 after Reset).
	virtio.FeatureSet

	limiter  *ratelimit.Limiter
	read     func([]byte) (int, error)
	maxSizes []uint16

	engines virtio.Engines // the request queue's lane

	eng   virtio.Engine
	h     handler
	stats virtio.Tally[Stats, counter]
}

var _ virtio.Device = (*Device)(nil)

// New returns a device for opts.
func New(opts Options) (*Device, error) {
	qs, err := virtio.QueueSize("virtio-rng", opts.QueueSize, DefaultQueueSize)
	if err != nil {
		return nil, err
	}
	read := opts.Read
	if read == nil {
		read = rand.Read
	}
	d := &Device{limiter: opts.Limiter, read: read, maxSizes: []uint16{qs}}
	d.h.d = d
	d.OfferFeatures("virtio-rng", Features)
	d.engines.Init("virtio-rng", 1, &d.FeatureSet, virtio.Lane{Engine: &d.eng, Handler: &d.h, Name: "requestq", Batch: 16})
	d.stats.Init(names[:], map[virtio.Event]counter{virtio.EventMalformed: cMalformed,
		virtio.EventInterrupt: cInterrupts, virtio.EventThrottled: cThrottled, virtio.EventBroken: cBroken})
	return d, nil
}

// Type is virtio.DeviceEntropy.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceEntropy }

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
	return d.engines.Activate(queues, irq)
}

// Reset stops the engine and forgets the negotiated features.
func (d *Device) Reset() { d.engines.Reset(nil) }

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the engine is doing ("requestq").
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }

// handler fills one request chain.
type handler struct {
	virtio.ChainsOnly
	d *Device
}

// Chain fills the chain's writable buffers (at most MaxChainBytes) with
// random bytes, after the rate limiter allows it.
func (h *handler) Chain(c *queue.Chain) virtio.Result {
	d := h.d
	if c.ReadLen > 0 {
		d.stats.Inc(cBadChains)
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
			d.stats.Inc(cReadErrors) // complete what was filled
			break
		}
		left -= k
	}
	used := n - uint32(left)
	d.stats.Inc(cRequests)
	d.stats.Add(cBytes, uint64(used))
	return virtio.Result{Do: virtio.Done, Used: used}
}

// Event counts the engine's events (as New maps them).
func (h *handler) Event(ev virtio.Event) { h.d.stats.Event(ev) }
