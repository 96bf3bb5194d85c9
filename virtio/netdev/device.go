package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/flintvm/flint/ratelimit"
	"os"
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
	be       Backend
	offload  OffloadFunc
	offered  uint64
	mac      [6]byte
	mtu      uint16
	qsize    uint16
	maxSizes []uint16
	linkUp   atomic.Bool

	mu       sync.Mutex // guards the fields below (transport calls, SetLinkUp)
	acked    uint64
	running  bool
	irq      virtio.Interrupt
	kicks    []*os.File
	stopping atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup

	// Engines; reused across activations so their buffers stay warm.
	rx   rx
	tx   tx
	ctrl ctrl

	stats counters
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
	d := &Device{be: be, offload: opts.SetOffload, offered: f, mac: opts.MAC, mtu: mtu, qsize: qs}
	d.rx.lim, d.tx.lim = opts.RxLimiter, opts.TxLimiter
	d.maxSizes = []uint16{qs, qs}
	if virtio.Has(f, FeatureCtrlVQ) {
		d.maxSizes = append(d.maxSizes, ctrlQueueSize)
	}
	d.linkUp.Store(!opts.LinkDown)
	return d, nil
}

// Type is virtio.DeviceNet.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceNet }

// Features are the offered features.
func (d *Device) Features() uint64 { return d.offered }

// AckFeatures checks the negotiated features' dependencies (GUEST_TSO4,
// GUEST_TSO6 and GUEST_UFO need GUEST_CSUM, GUEST_ECN a GUEST_TSO, the
// HOST_* ones likewise with CSUM) and applies the receive offloads to
// the backend through Options.SetOffload. An error refuses the set.
func (d *Device) AckFeatures(negotiated uint64) error {
	if extra := negotiated &^ d.offered; extra != 0 {
		return fmt.Errorf("virtio-net: features %#x were not offered", extra)
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
	d.acked = negotiated
	return nil
}

// Negotiated returns the features last accepted by AckFeatures (0 after
// Reset).
func (d *Device) Negotiated() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acked
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
	clear(p)
	if offset < ConfigSize {
		copy(p, c[offset:])
	}
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
	notify := d.running && virtio.Has(d.acked, FeatureStatus)
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
	if d.running {
		return errors.New("virtio-net: already active")
	}
	if irq == nil || len(queues) != len(d.maxSizes) {
		return fmt.Errorf("virtio-net: activated with %d queues, want %d", len(queues), len(d.maxSizes))
	}
	ctrl := virtio.Has(d.acked, FeatureCtrlVQ)
	for i, q := range queues {
		if (q.Ring == nil || q.Kick == nil) && (i != CtrlQueue || ctrl) {
			return fmt.Errorf("virtio-net: queue %d is not enabled", i)
		}
	}
	// Clear the deadlines a previous Reset set to wake the goroutines.
	d.be.SetReadDeadline(time.Time{})
	d.be.SetWriteDeadline(time.Time{})
	d.kicks = d.kicks[:0]
	for _, q := range queues {
		if q.Kick != nil {
			q.Kick.SetReadDeadline(time.Time{})
			d.kicks = append(d.kicks, q.Kick)
		}
	}
	d.irq, d.running = irq, true
	d.stopping.Store(false)
	d.stop = make(chan struct{})
	env := engineEnv{be: d.be, stopping: &d.stopping, stats: &d.stats}
	cfg := func(i int) virtio.EngineConfig {
		return virtio.EngineConfig{Queue: queues[i], IRQ: irq, Stopping: &d.stopping, Stop: d.stop}
	}
	d.rx.init(env, cfg(RxQueue), d.acked, d.mtu)
	d.tx.init(env, cfg(TxQueue), d.acked)
	n := 2
	if ctrl {
		d.ctrl.init(env, cfg(CtrlQueue))
		n++
	}
	d.wg.Add(n)
	go func() { defer d.wg.Done(); d.rx.eng.Run() }()
	go func() { defer d.wg.Done(); d.tx.eng.Run() }()
	if ctrl {
		go func() { defer d.wg.Done(); d.ctrl.eng.Run() }()
	}
	return nil
}

// Reset stops the goroutines and waits for them, gives receive buffers
// the device holds back to the ring (so the queue's next-avail index
// counts only buffers it used), forgets the negotiated features and
// turns the backend's offloads off.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		d.stopping.Store(true)
		close(d.stop)
		past := time.Unix(1, 0)
		for _, k := range d.kicks {
			k.SetReadDeadline(past)
		}
		d.be.SetReadDeadline(past)
		d.be.SetWriteDeadline(past)
		d.wg.Wait()
		for _, k := range d.kicks {
			k.SetReadDeadline(time.Time{})
		}
		clear(d.kicks)
		d.be.SetReadDeadline(time.Time{})
		d.be.SetWriteDeadline(time.Time{})
		d.rx.release()
		d.tx.release()
		d.ctrl.release()
		d.irq, d.running = nil, false
	}
	if d.acked != 0 && d.offload != nil {
		d.offload(0)
	}
	d.acked = 0
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the receive, transmit and (when offered)
// control engines are doing, with the queue indices at their last
// transition, for debug dumps. It takes no lock: it is safe while an
// engine is stuck, from any goroutine.
func (d *Device) EngineStates() []virtio.EngineState {
	names := [...]string{RxQueue: "rx", TxQueue: "tx", CtrlQueue: "ctrl"}
	st := [...]*virtio.EngineStatus{RxQueue: &d.rx.eng.Status, TxQueue: &d.tx.eng.Status, CtrlQueue: &d.ctrl.eng.Status}
	out := make([]virtio.EngineState, len(d.maxSizes))
	for i := range out {
		out[i] = st[i].Load()
		out[i].Queue, out[i].Name = i, names[i]
	}
	return out
}
