package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/flintvm/flint/ratelimit"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Queue indices (virtio 1.2 §5.1.2, one queue pair).
const (
	RxQueue   = 0 // receiveq1: backend -> guest
	TxQueue   = 1 // transmitq1: guest -> backend
	CtrlQueue = 2 // controlq, only with FeatureCtrlVQ
)

// Defaults for Options.
const (
	DefaultQueueSize = 256
	DefaultMTU       = 1500
	ctrlQueueSize    = 64
)

// ConfigSize is the size of the device configuration space this device
// exposes: mac[6], status le16, max_virtqueue_pairs le16, mtu le16.
const ConfigSize = 12

// Link status bits (the config status field).
const statusLinkUp = 1 // VIRTIO_NET_S_LINK_UP

// Options configure a Device. The zero value offers DefaultFeatures
// except MAC (which needs an address), with an MTU of 1500 and the link
// up.
type Options struct {
	// Features are the features offered to the driver; 0 means
	// DefaultFeatures. Clear bits to switch features off, e.g.
	// DefaultFeatures &^ FeatureMrgRxbuf.Mask(). VERSION_1 is always
	// offered. Bits outside SupportedFeatures, or a feature without the
	// feature it depends on, make New fail. FeatureMAC is dropped from
	// DefaultFeatures when MAC is zero.
	Features uint64
	// MAC is the guest's MAC address, offered with FeatureMAC. It must
	// be a unicast address; zero means none (then a driver picks a
	// random one).
	MAC [6]byte
	// MTU is the largest packet payload (without Ethernet header) the
	// device delivers without GSO, and is reported with FeatureMTU;
	// 0 means DefaultMTU. The backend must not produce larger non-GSO
	// frames (set the TAP's MTU to the same value).
	MTU uint16
	// LinkDown starts the device with the link reported down (with
	// FeatureStatus); SetLinkUp changes it.
	LinkDown bool
	// QueueSize is the largest size of the receive and transmit queues
	// (a power of two up to queue.MaxSize); 0 means DefaultQueueSize.
	QueueSize uint16
	// SetOffload is called with the negotiated features on every
	// negotiation and with 0 on reset; nil means the backend produces
	// no offloaded packets (and GUEST_* offloads then never occur).
	SetOffload OffloadFunc
	// RxLimiter and TxLimiter rate-limit traffic to and from the guest
	// (bytes are frame bytes without the virtio-net header; one packet is
	// one operation); nil limits nothing. The device waits on a timer
	// while a limiter holds it back: it never drops and never polls.
	// Receive is charged after each frame is read (its size is unknown
	// before), so it may run ahead by one frame and then pauses until the
	// debt is repaid.
	RxLimiter, TxLimiter *ratelimit.Limiter
}

// Device is a virtio-net device with one queue pair over a Backend. It
// implements virtio.Device. Create it with New.
type Device struct {
	// FeatureSet: Features (the offered features) and Negotiated (the
	// features last accepted by AckFeatures, 0 after Reset).
	virtio.FeatureSet

	be       Backend
	offload  OffloadFunc
	mac      [6]byte
	mtu      uint16
	qsize    uint16
	maxSizes []uint16
	linkUp   atomic.Bool

	mu      sync.Mutex // guards the fields below (transport calls, SetLinkUp)
	engines virtio.Engines
	irq     virtio.Interrupt

	// Engines; reused across activations so their buffers stay warm.
	rx   rx
	tx   tx
	ctrl ctrl

	stats tally
}

var _ virtio.Device = (*Device)(nil)

// New returns a device over be. It checks opts (see Options) and returns
// an error naming the first problem.
func New(be Backend, opts Options) (*Device, error) {
	if be == nil {
		return nil, errors.New("virtio-net: no backend")
	}
	f := opts.Features
	if f == 0 {
		f = DefaultFeatures
		if opts.MAC == ([6]byte{}) {
			f &^= FeatureMAC.Mask()
		}
	}
	f |= virtio.FeatureVersion1.Mask()
	if extra := f &^ SupportedFeatures; extra != 0 {
		return nil, fmt.Errorf("virtio-net: features %#x are not supported", extra)
	}
	if err := checkDeps(f); err != nil {
		return nil, err
	}
	if virtio.Has(f, FeatureMAC) && opts.MAC == ([6]byte{}) {
		return nil, errors.New("virtio-net: FeatureMAC offered without a MAC address")
	}
	if opts.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("virtio-net: MAC %x is a multicast address", opts.MAC[:])
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 68 {
		return nil, fmt.Errorf("virtio-net: MTU %d is below the IPv4 minimum of 68", mtu)
	}
	qs := opts.QueueSize
	if qs == 0 {
		qs = DefaultQueueSize
	}
	if qs > queue.MaxSize || qs&(qs-1) != 0 {
		return nil, fmt.Errorf("virtio-net: queue size %d is not a power of two <= %d", qs, queue.MaxSize)
	}
	d := &Device{be: be, offload: opts.SetOffload, mac: opts.MAC, mtu: mtu, qsize: qs}
	d.OfferFeatures("virtio-net", f)
	d.rx.lim, d.tx.lim = opts.RxLimiter, opts.TxLimiter
	d.maxSizes = []uint16{qs, qs}
	lanes := []virtio.Lane{
		{Engine: &d.rx.eng, Handler: &d.rx, Queue: RxQueue, Name: "rx", Batch: rxBatch},
		{Engine: &d.tx.eng, Handler: &d.tx, Queue: TxQueue, Name: "tx", Batch: txBatch},
	}
	if virtio.Has(f, FeatureCtrlVQ) {
		d.maxSizes = append(d.maxSizes, ctrlQueueSize)
		lanes = append(lanes, virtio.Lane{Engine: &d.ctrl.eng, Handler: &d.ctrl, Queue: CtrlQueue, Name: "ctrl", Batch: ctrlQueueSize})
	}
	d.engines.Init("virtio-net", len(d.maxSizes), &d.FeatureSet, lanes...)
	d.stats.Init(names[:], nil) // the handlers count into deltas, events included
	d.linkUp.Store(!opts.LinkDown)
	return d, nil
}

// Type is virtio.DeviceNet.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceNet }

// AckFeatures checks the negotiated features' dependencies (GUEST_TSO4,
// GUEST_TSO6 and GUEST_UFO need GUEST_CSUM, GUEST_ECN a GUEST_TSO, the
// HOST_* ones likewise with CSUM) and applies the receive offloads to
// the backend through Options.SetOffload. An error refuses the set.
func (d *Device) AckFeatures(negotiated uint64) error {
	if err := d.CheckOffered(negotiated); err != nil {
		return err
	}
	if err := checkDeps(negotiated); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.offload != nil {
		if err := d.offload(negotiated); err != nil {
			return fmt.Errorf("virtio-net: backend offloads: %w", err)
		}
	}
	return d.FeatureSet.AckFeatures(negotiated)
}

// QueueMaxSizes is [QueueSize, QueueSize], plus 64 for the control queue
// when FeatureCtrlVQ is offered.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads the configuration space: mac, status (LINK_UP),
// max_virtqueue_pairs (1) and mtu.
func (d *Device) ReadConfig(offset uint64, p []byte) {
	var c [ConfigSize]byte
	copy(c[0:6], d.mac[:])
	if d.linkUp.Load() {
		binary.LittleEndian.PutUint16(c[6:], statusLinkUp)
	}
	binary.LittleEndian.PutUint16(c[8:], 1)
	binary.LittleEndian.PutUint16(c[10:], d.mtu)
	virtio.CopyConfig(p, offset, c[:])
}

// WriteConfig ignores the write: every field is read-only for a
// VERSION_1 driver.
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// SetLinkUp changes the link status the config space reports and, if the
// device is active with FeatureStatus negotiated, notifies the driver.
// The status is informative: packets keep flowing either way.
func (d *Device) SetLinkUp(up bool) {
	if d.linkUp.Swap(up) == up {
		return
	}
	d.mu.Lock()
	irq := d.irq
	notify := d.engines.Running() && virtio.Has(d.Negotiated(), FeatureStatus)
	d.mu.Unlock()
	if notify {
		irq.SignalConfig()
	}
}

// Activate starts the RX and TX goroutines (and the control queue's with
// FeatureCtrlVQ). queues[RxQueue] and queues[TxQueue] must be enabled,
// and queues[CtrlQueue] when CTRL_VQ was negotiated.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	lanes := d.lanes()
	if err := d.engines.Check(queues, irq, lanes...); err != nil {
		return err // before configure: the engines may be running
	}
	d.configure(queues[RxQueue].Ring)
	d.irq = irq
	return d.engines.Start(queues, irq, lanes...)
}

// lanes are the lanes an activation starts: RX and TX, and the control
// queue's when CTRL_VQ was negotiated.
func (d *Device) lanes() []int {
	if virtio.Has(d.Negotiated(), FeatureCtrlVQ) {
		return []int{RxQueue, TxQueue, CtrlQueue}
	}
	return []int{RxQueue, TxQueue}
}

// configure prepares the handlers for an activation with the negotiated
// features, rxq the receive ring; Reset undoes it.
func (d *Device) configure(rxq *queue.Queue) {
	acked := d.Negotiated()
	env := engineEnv{be: d.be, engines: &d.engines, stats: &d.stats}
	d.rx.init(env, rxq, acked, d.mtu)
	d.tx.init(env, acked)
	d.ctrl.init(env)
}

// Reset stops the goroutines and waits for them (a past deadline on the
// backend wakes the ones blocked on it), gives receive buffers the
// device holds back to the ring (so the queue's next-avail index counts
// only buffers it used), forgets the negotiated features and turns the
// backend's offloads off.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	acked := d.Negotiated()
	if d.engines.Stop(func(t time.Time) {
		d.be.SetReadDeadline(t)
		d.be.SetWriteDeadline(t)
	}) {
		d.rx.release()
		d.tx.release()
		d.ctrl.release()
		d.irq = nil
	}
	if acked != 0 && d.offload != nil {
		d.offload(0)
	}
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the receive, transmit and (when offered)
// control engines are doing, with the queue indices at their last
// transition, for debug dumps. It takes no lock: it is safe while an
// engine is stuck, from any goroutine.
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }
