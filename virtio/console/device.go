package console

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
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
	// InputAfterGuestWrite holds In back until the guest has written to
	// the port. A one-port device has no message that says the guest
	// opened the port, and Linux's virtio_console drops what arrives
	// before it has set the port up, while the receive buffers it
	// already posted are there to fill: the guest writes once to say it
	// is ready to read (command mode's agent does, for stdin).
	InputAfterGuestWrite bool
}

// Device is a one-port virtio-console device. It implements
// virtio.Device. Create it with New; Close it after the VM is done.
type Device struct {
	// FeatureSet: Features (Features), AckFeatures (any subset) and
	// Negotiated (0 after Reset).
	virtio.FeatureSet

	out      io.Writer
	maxSizes []uint16

	// engines: the receiveq's and transmitq's lanes; its lock
	// serializes the transport's calls and Close.
	engines virtio.Engines

	in input
	// holdInput: the reader starts at the guest's first write
	// (Options.InputAfterGuestWrite), which tx reports through wrote.
	holdInput bool
	wrote     atomic.Bool
	rx        rx // reused across activations
	tx        tx
	stats     tally
	// guard contains a panic on the input reader's goroutine.
	guard virtio.Guard
}

var _ virtio.Device = (*Device)(nil)

// New returns a device over opts.In and opts.Out.
func New(opts Options) (*Device, error) {
	qs, err := virtio.QueueSize("virtio-console", opts.QueueSize, DefaultQueueSize)
	if err != nil {
		return nil, err
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
	d := &Device{out: out, maxSizes: []uint16{qs, qs}, holdInput: opts.InputAfterGuestWrite}
	d.OfferFeatures("virtio-console", Features)
	d.rx.d, d.tx.d = d, d
	d.engines.Init("virtio-console", 2, &d.FeatureSet,
		virtio.Lane{Engine: &d.rx.eng, Handler: &d.rx, Queue: ReceiveQueue, Name: "receiveq", Batch: batch},
		virtio.Lane{Engine: &d.tx.eng, Handler: &d.tx, Queue: TransmitQueue, Name: "transmitq", Batch: batch})
	d.stats.Init(names[:], map[virtio.Event]counter{virtio.EventMalformed: cMalformed,
		virtio.EventInterrupt: cInterrupts, virtio.EventBroken: cBroken})
	d.in.init(opts.In, ib, &d.stats, &d.guard)
	return d, nil
}

// Type is virtio.DeviceConsole.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceConsole }

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
	if err := d.guard.Bind(irq); err != nil {
		return err
	}
	if err := d.engines.Activate(queues, irq); err != nil {
		d.guard.Unbind()
		return err
	}
	if !d.holdInput || d.wrote.Load() {
		d.in.start()
	}
	return nil
}

// guestWrote starts the held input at the guest's first write.
func (d *Device) guestWrote() {
	if d.holdInput && !d.wrote.Swap(true) {
		d.in.start()
	}
}

// deadliner is a writer whose blocked Write Reset can cut short.
type deadliner interface{ SetWriteDeadline(time.Time) error }

// Reset stops both engines and waits for them, and forgets the negotiated
// features. A Write in progress is cut short when the writer has
// SetWriteDeadline (the past deadline is set on the writer itself, until
// the engines stop: give the device a writer no one else writes to);
// input buffered and not yet delivered is kept.
func (d *Device) Reset() {
	d.engines.Reset(d.wakeWriter)
	d.guard.Unbind()
}

// wakeWriter sets the writer's deadline (when it has one): a past one
// while the engines stop, none after.
func (d *Device) wakeWriter(t time.Time) {
	if dl, ok := d.out.(deadliner); ok {
		dl.SetWriteDeadline(t)
	}
}

// Close resets the device and lets the reader goroutine end (once its
// Read returns: a blocked Read cannot be interrupted). The device cannot
// be activated again. It closes neither the reader nor the writer.
func (d *Device) Close() error {
	d.engines.Lock()
	defer d.engines.Unlock()
	d.engines.Stop(d.wakeWriter)
	d.guard.Unbind()
	d.engines.Close()
	d.in.close()
	return nil
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the two engines are doing ("receiveq",
// "transmitq"), for debug dumps. It takes no lock. An engine blocked in
// the writer's Write shows as running.
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }
