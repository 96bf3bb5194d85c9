package console

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Queue indices (virtio 1.2 §5.3.2, without MULTIPORT).
const (
	ReceiveQueue  = 0 // receiveq: host -> guest
	TransmitQueue = 1 // transmitq: guest -> host
)

// Geometry of the device.
const (
	// ConfigSize is struct virtio_console_config: cols le16, rows le16,
	// max_nr_ports le32, emerg_wr le32. All of it reads as zero.
	ConfigSize = 12
	// DefaultQueueSize is each queue's size when Options.QueueSize is 0.
	DefaultQueueSize = 256
	// DefaultInputBuffer is the input buffer when Options.InputBuffer is
	// 0.
	DefaultInputBuffer = 4096
)

// Features are the features the device offers: the common ring features
// (VERSION_1, INDIRECT_DESC, EVENT_IDX) and no console-specific bit.
const Features = virtio.CommonFeatures

// Options configure a Device.
type Options struct {
	// In is what the guest reads from the port (stdin); nil means no
	// input ever.
	In io.Reader
	// Out receives what the guest writes to the port (stdout, stderr); nil
	// discards it (counted as written).
	Out io.Writer
	// QueueSize is each queue's largest size (a power of two in [4,
	// queue.MaxSize]); 0 means DefaultQueueSize.
	QueueSize uint16
	// InputBuffer is how many bytes the reader buffers ahead of the
	// guest; 0 means DefaultInputBuffer.
	InputBuffer int
}

// Device is a one-port virtio-console device. It implements
// virtio.Device. Create it with New; Close it after the VM is done.
type Device struct {
	out      io.Writer
	maxSizes []uint16

	mu       sync.Mutex // guards the fields below (transport calls)
	acked    uint64
	running  bool
	closed   bool
	kicks    [2]interface{ SetReadDeadline(time.Time) error }
	stopping atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup

	in    input
	rx    rx // reused across activations
	tx    tx
	stats counters
}

var _ virtio.Device = (*Device)(nil)

// New returns a device over opts.In and opts.Out.
func New(opts Options) (*Device, error) {
	qs := opts.QueueSize
	if qs == 0 {
		qs = DefaultQueueSize
	}
	if qs < 4 || qs > queue.MaxSize || qs&(qs-1) != 0 {
		return nil, fmt.Errorf("virtio-console: queue size %d is not a power of two in [4, %d]", qs, queue.MaxSize)
	}
	ib := opts.InputBuffer
	if ib == 0 {
		ib = DefaultInputBuffer
	}
	if ib < 1 || ib > 1<<20 {
		return nil, fmt.Errorf("virtio-console: input buffer of %d bytes is not in [1, 1 MiB]", ib)
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	d := &Device{out: out, maxSizes: []uint16{qs, qs}}
	d.in.init(opts.In, ib, &d.stats)
	return d, nil
}

// Type is virtio.DeviceConsole.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceConsole }

// Features are Features.
func (d *Device) Features() uint64 { return Features }

// AckFeatures accepts any subset of the offered features.
func (d *Device) AckFeatures(negotiated uint64) error {
	if extra := negotiated &^ Features; extra != 0 {
		return fmt.Errorf("virtio-console: features %#x were not offered", extra)
	}
	d.mu.Lock()
	d.acked = negotiated
	d.mu.Unlock()
	return nil
}

// Negotiated returns the features last accepted (0 after Reset).
func (d *Device) Negotiated() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acked
}

// QueueMaxSizes is the receiveq and the transmitq, of Options.QueueSize.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads zeros: no size, one port, no emergency write.
func (d *Device) ReadConfig(offset uint64, p []byte) { clear(p) }

// WriteConfig ignores the write (emerg_wr needs EMERG_WRITE, not offered).
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// Activate starts both queues' engines and, the first time, the reader.
// Both queues must be enabled.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return errors.New("virtio-console: device closed")
	case d.running:
		return errors.New("virtio-console: already active")
	case irq == nil || len(queues) != 2:
		return fmt.Errorf("virtio-console: activated with %d queues, want 2", len(queues))
	}
	for i, q := range queues {
		if q.Ring == nil || q.Kick == nil {
			return fmt.Errorf("virtio-console: queue %d is not enabled", i)
		}
	}
	d.running = true
	d.stopping.Store(false)
	d.stop = make(chan struct{})
	for i, q := range queues {
		q.Kick.SetReadDeadline(time.Time{})
		d.kicks[i] = q.Kick
	}
	cfg := func(i int) virtio.EngineConfig {
		return virtio.EngineConfig{Queue: queues[i], Index: i, IRQ: irq, Stopping: &d.stopping, Stop: d.stop, Batch: batch}
	}
	d.rx.bind(d, &d.rx, cfg(ReceiveQueue))
	d.tx.bind(d, &d.tx, cfg(TransmitQueue))
	d.in.start()
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.rx.eng.Run() }()
	go func() { defer d.wg.Done(); d.tx.eng.Run() }()
	return nil
}

// deadliner is a writer whose blocked Write Reset can cut short.
type deadliner interface{ SetWriteDeadline(time.Time) error }

// Reset stops both engines and waits for them, and forgets the negotiated
// features. A Write in progress is cut short when the writer has
// SetWriteDeadline (the past deadline is set on the writer itself, until
// the engines stop: give the device a writer no one else writes to);
// input buffered and not yet delivered is kept.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
}

func (d *Device) resetLocked() {
	if d.running {
		d.stopping.Store(true)
		close(d.stop)
		past := time.Unix(1, 0)
		for _, k := range d.kicks {
			k.SetReadDeadline(past)
		}
		dl, _ := d.out.(deadliner)
		if dl != nil {
			dl.SetWriteDeadline(past)
		}
		d.wg.Wait()
		if dl != nil {
			dl.SetWriteDeadline(time.Time{})
		}
		for i, k := range d.kicks {
			k.SetReadDeadline(time.Time{})
			d.kicks[i] = nil
		}
		d.rx.release()
		d.tx.release()
		d.running = false
	}
	d.acked = 0
}

// Close resets the device and lets the reader goroutine end (once its
// Read returns: a blocked Read cannot be interrupted). The device cannot
// be activated again. It closes neither the reader nor the writer.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
	d.closed = true
	d.in.close()
	return nil
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the two engines are doing ("receiveq",
// "transmitq"), for debug dumps. It takes no lock. An engine blocked in
// the writer's Write shows as running.
func (d *Device) EngineStates() []virtio.EngineState {
	r, t := d.rx.eng.Status.Load(), d.tx.eng.Status.Load()
	r.Queue, r.Name = ReceiveQueue, "receiveq"
	t.Queue, t.Name = TransmitQueue, "transmitq"
	return []virtio.EngineState{r, t}
}
