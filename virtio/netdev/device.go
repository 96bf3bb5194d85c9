package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Queue indices with one queue pair (virtio 1.2 §5.1.2). With N pairs
// and FeatureMQ negotiated, pair k (0-based) is RxQueueOf(k) = 2k and
// TxQueueOf(k) = 2k+1, and the control queue is 2N (CtrlQueueOf(N));
// without MQ the driver uses pair 0 and a control queue at 2.
const (
	RxQueue   = 0 // receiveq1: backend -> guest
	TxQueue   = 1 // transmitq1: guest -> backend
	CtrlQueue = 2 // controlq, only with FeatureCtrlVQ
)

// RxQueueOf, TxQueueOf and CtrlQueueOf are the queue indices of pair k's
// receive and transmit queues, and of the control queue of a device with
// n pairs that negotiated FeatureMQ.
func RxQueueOf(k int) int   { return 2 * k }
func TxQueueOf(k int) int   { return 2*k + 1 }
func CtrlQueueOf(n int) int { return 2 * n }

// MaxQueuePairs is the most queue pairs a device takes (Options.Queues):
// 2*64+1 queues fit every transport (vhost-user's 8-bit ring index, the
// PCI transport's MSI-X table) and a TAP's 256 queues.
const MaxQueuePairs = 64

// Defaults for Options.
const (
	DefaultQueueSize = 256
	DefaultMTU       = 1500
	ctrlBatch        = 64 // control commands answered per publish
)

// ConfigSize is the size of the device configuration space this device
// exposes: mac[6], status le16, max_virtqueue_pairs le16 (Options.Queues),
// mtu le16.
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
	// while a limiter holds it back (asking it again every
	// virtio.MaxThrottle, 100 ms, at most, so that an Update takes
	// effect): it never drops.
	// Receive is charged after each frame is read (its size is unknown
	// before), so it may run ahead by one frame and then pauses until the
	// debt is repaid.
	RxLimiter, TxLimiter *ratelimit.Limiter
	// Queues is the number of receive/transmit queue pairs (NewMulti:
	// one backend each), 1 to MaxQueuePairs; 0 means the number of
	// backends. With more than one, the device offers FeatureMQ and
	// FeatureCtrlVQ on top of Features, reports the count as
	// max_virtqueue_pairs and serves the control queue's VQ_PAIRS_SET;
	// the limiters are shared by all pairs.
	Queues int
	// RxIRQGap and TxIRQGap are the least time between two used-buffer
	// notifications of each receive and each transmit queue, 0 to
	// MaxIRQGap (interrupt moderation, see virtio.EngineConfig.IRQGap);
	// 0 sends each at once. A transmit queue's gap holds only the
	// completions of small frames (txUrgentFrame bytes or less: ACKs,
	// small datagrams); one of a larger frame goes at once, with any
	// notification the gap owes.
	RxIRQGap, TxIRQGap time.Duration
	// IRQResend, 0 to MaxIRQGap, has every receive and transmit queue's
	// last notification checked once the device has sent none for that
	// long, and sent again if the driver still wants it
	// (virtio.EngineConfig.IRQResend: for a vhost-user frontend that can
	// lose one, as UML's does); 0: never.
	IRQResend time.Duration
	// Poll is the busy-poll window of every receive and transmit engine,
	// 0 to virtio.MaxPoll (see virtio.EngineConfig.Poll): an opt-in that
	// spends CPU for latency. A transmit engine polls its ring before it
	// waits for a kick, a receive engine its backend (a ReadvParker)
	// before it parks. 0: no polling.
	Poll time.Duration
}

// MaxIRQGap is the longest Options.RxIRQGap and TxIRQGap: a notification
// held longer than a millisecond would cost TCP more than the interrupts
// it saves.
const MaxIRQGap = time.Millisecond

// irqGapLimit is the bound New holds the gaps to: MaxIRQGap, raised by
// tests that need a gap no timing can race.
var irqGapLimit = MaxIRQGap

// Device is a virtio-net device with one or more queue pairs, each over
// a Backend. It implements virtio.Device. Create it with New or
// NewMulti.
type Device struct {
	// FeatureSet: Features (the offered features) and Negotiated (the
	// features last accepted by AckFeatures, 0 after Reset).
	virtio.FeatureSet

	offload  OffloadFunc
	mac      [6]byte
	mtu      uint16
	qsize    uint16
	maxSizes []uint16
	linkUp   atomic.Bool
	// frontendCtrl: a driver may negotiate MQ without CTRL_VQ (see
	// AllowFrontendControlQueue).
	frontendCtrl atomic.Bool

	mu      sync.Mutex // guards the fields below (transport calls, SetLinkUp)
	engines virtio.Engines
	irq     virtio.Interrupt

	// Engines; reused across activations so their buffers stay warm.
	pairs []qpair // one per queue pair
	ctrl  ctrl    // its engine serves queue 2 (FeatureMQ not negotiated)
	mqEng virtio.Engine
	mq    pairSet // the pairs' backends and which of them carry traffic

	stats tally
}

// qpair is one receive/transmit queue pair and its backend.
type qpair struct {
	rx    rx
	tx    tx
	stats pairTally
}

var (
	_ virtio.Device  = (*Device)(nil)
	_ virtio.Resumer = (*Device)(nil)
)

// New returns a device with one queue pair over be. It checks opts (see
// Options) and returns an error naming the first problem.
func New(be Backend, opts Options) (*Device, error) {
	return NewMulti([]Backend{be}, opts)
}

// NewMulti returns a device with one queue pair per backend: bes[k]
// carries pair k's frames (for a TAP, *tap.Queue k of an
// IFF_MULTI_QUEUE interface). Backends that implement Steerer are
// attached and detached as the driver changes the number of pairs in
// use. It checks opts (see Options) and returns an error naming the
// first problem.
func NewMulti(bes []Backend, opts Options) (*Device, error) {
	n := len(bes)
	switch {
	case n == 0 || slices.Contains(bes, nil):
		return nil, errors.New("virtio-net: no backend")
	case n > MaxQueuePairs:
		return nil, fmt.Errorf("virtio-net: %d queue pairs, at most %d", n, MaxQueuePairs)
	case opts.Queues != 0 && opts.Queues != n:
		return nil, fmt.Errorf("virtio-net: %d queue pairs with %d backends", opts.Queues, n)
	case opts.RxIRQGap < 0 || opts.RxIRQGap > irqGapLimit || opts.TxIRQGap < 0 || opts.TxIRQGap > irqGapLimit:
		return nil, fmt.Errorf("virtio-net: interrupt gaps %v (rx) and %v (tx): each must be 0 to %v", opts.RxIRQGap, opts.TxIRQGap, irqGapLimit)
	case opts.IRQResend < 0 || opts.IRQResend > MaxIRQGap:
		return nil, fmt.Errorf("virtio-net: interrupt resend interval %v: must be 0 to %v", opts.IRQResend, MaxIRQGap)
	case opts.Poll < 0 || opts.Poll > virtio.MaxPoll:
		return nil, fmt.Errorf("virtio-net: busy-poll window %v: must be 0 to %v", opts.Poll, virtio.MaxPoll)
	}
	f := opts.Features
	if f == 0 {
		f = DefaultFeatures
		if opts.MAC == ([6]byte{}) {
			f &^= FeatureMAC.Mask()
		}
	}
	f |= virtio.FeatureVersion1.Mask()
	if n > 1 {
		f |= FeatureMQ.Mask() | FeatureCtrlVQ.Mask()
	}
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
	d := &Device{offload: opts.SetOffload, mac: opts.MAC, mtu: mtu, qsize: qs, pairs: make([]qpair, n)}
	d.OfferFeatures("virtio-net", f)
	d.mq.init(bes)
	var lanes []virtio.Lane
	for k := range d.pairs {
		p := &d.pairs[k]
		p.rx.lim, p.tx.lim = opts.RxLimiter, opts.TxLimiter
		d.maxSizes = append(d.maxSizes, qs, qs)
		lanes = append(lanes,
			virtio.Lane{Engine: &p.rx.eng, Handler: &p.rx, Queue: RxQueueOf(k), Name: laneName("rx", k), Batch: rxBatch, IRQGap: opts.RxIRQGap, IRQResend: opts.IRQResend, Poll: opts.Poll},
			virtio.Lane{Engine: &p.tx.eng, Handler: &p.tx, Queue: TxQueueOf(k), Name: laneName("tx", k), Batch: txBatch, IRQGap: opts.TxIRQGap, IRQResend: opts.IRQResend, Poll: opts.Poll})
	}
	if virtio.Has(f, FeatureCtrlVQ) {
		// As large as the others: UML's virtio_uml gives every ring 256
		// entries, and Linux's driver needs only a few.
		d.maxSizes = append(d.maxSizes, qs)
		lanes = append(lanes, virtio.Lane{Engine: &d.ctrl.eng, Handler: &d.ctrl, Queue: CtrlQueue, Name: "ctrl", Batch: ctrlBatch})
		if n > 1 {
			lanes = append(lanes, virtio.Lane{Engine: &d.mqEng, Handler: &d.ctrl, Queue: CtrlQueueOf(n), Name: "ctrl", Batch: ctrlBatch})
		}
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
	deps := negotiated
	if d.frontendCtrl.Load() && !virtio.Has(negotiated, FeatureCtrlVQ) {
		deps &^= FeatureMQ.Mask() // the frontend serves the control queue
	}
	if err := checkDeps(deps); err != nil {
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

// QueueMaxSizes is QueueSize for each queue of each pair and for the
// control queue when FeatureCtrlVQ is offered.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads the configuration space: mac, status (LINK_UP),
// max_virtqueue_pairs (the number of pairs) and mtu.
func (d *Device) ReadConfig(offset uint64, p []byte) {
	var c [ConfigSize]byte
	copy(c[0:6], d.mac[:])
	if d.linkUp.Load() {
		binary.LittleEndian.PutUint16(c[6:], statusLinkUp)
	}
	binary.LittleEndian.PutUint16(c[8:], uint16(len(d.pairs)))
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

// Activate starts one RX and one TX goroutine per queue pair in use
// (and the control queue's with FeatureCtrlVQ). Without FeatureMQ that
// is pair 0, with the control queue at 2; with it, the first pairs whose
// two queues the driver enabled (pair 0 must be), with the control queue
// at 2N. Enabled queues must also include the control queue when CTRL_VQ
// was negotiated. Traffic flows on pair 0 only until the driver's
// VQ_PAIRS_SET; with FeatureMQ but no CTRL_VQ (AllowFrontendControlQueue)
// it flows on every pair started at once.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	return d.start(queues, irq, false)
}

// Resume is Activate for a restart the driver did not ask for
// (virtio.Resumer: vhost-user's session changing the memory table, say):
// the driver keeps using the pairs its last VQ_PAIRS_SET chose, so
// traffic flows on that many (as many as were started, at most) rather
// than on pair 0 alone. Nothing else the driver sets survives a reset
// here: the RX mode and MAC table commands change nothing (the device
// filters nothing), and the offloads follow the features the transport
// acks again before it resumes.
func (d *Device) Resume(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	return d.start(queues, irq, true)
}

// start is Activate, or Resume when resume is set.
func (d *Device) start(queues []virtio.Queue, irq virtio.Interrupt, resume bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	lanes, started := d.lanes(queues)
	if err := d.engines.Check(queues, irq, lanes...); err != nil {
		return err // before configure: the engines may be running
	}
	if err := d.configure(queues, started, resume); err != nil {
		return err
	}
	d.irq = irq
	return d.engines.Start(queues, irq, lanes...)
}

// lanes are the lanes an activation starts (positions in Init's list:
// pair k's are 2k and 2k+1, the control queue's at 2 is 2N and at 2N
// the one after) and the number of pairs they serve.
func (d *Device) lanes(queues []virtio.Queue) ([]int, int) {
	acked, n := d.Negotiated(), len(d.pairs)
	if !virtio.Has(acked, FeatureMQ) {
		if virtio.Has(acked, FeatureCtrlVQ) {
			return []int{0, 1, 2 * n}, 1
		}
		return []int{0, 1}, 1
	}
	lanes := []int{0, 1}
	for k := 1; k < n && len(queues) == len(d.maxSizes); k++ {
		if queues[RxQueueOf(k)].Ring == nil || queues[TxQueueOf(k)].Ring == nil {
			break // the pairs in use are the first ones
		}
		lanes = append(lanes, 2*k, 2*k+1)
	}
	pairs := len(lanes) / 2
	if !virtio.Has(acked, FeatureCtrlVQ) {
		return lanes, pairs // AllowFrontendControlQueue: the frontend has it
	}
	ctrl := 2 * n // the control queue's lane: at 2 with one pair
	if n > 1 {
		ctrl++ // the one at 2N
	}
	return append(lanes, ctrl), pairs
}

// configure prepares the handlers of the first started pairs for an
// activation on queues with the negotiated features and steers the
// backend's traffic to pair 0 (to every started pair when the frontend
// has the control queue; resuming, to the pairs the driver used before,
// up to those started); Reset undoes it.
func (d *Device) configure(queues []virtio.Queue, started int, resume bool) error {
	acked := d.Negotiated()
	use, ctrl := 1, virtio.Has(acked, FeatureCtrlVQ)
	if virtio.Has(acked, FeatureMQ) && !ctrl {
		use = started // no VQ_PAIRS_SET will come
	}
	if err := d.mq.activate(started, use, resume && ctrl); err != nil {
		return err
	}
	for k := range started {
		p := &d.pairs[k]
		env := engineEnv{be: d.mq.bes[k], engines: &d.engines, stats: &statSink{tally: &d.stats, pair: &p.stats}}
		p.rx.init(env, queues[RxQueueOf(k)].Ring, acked, d.mtu)
		p.tx.init(env, acked)
	}
	d.ctrl.init(engineEnv{be: d.mq.bes[0], engines: &d.engines, stats: &statSink{tally: &d.stats}}, &d.mq, acked)
	return nil
}

func laneName(dir string, k int) string {
	if k == 0 {
		return dir
	}
	return fmt.Sprintf("%s%d", dir, k)
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
		for _, be := range d.mq.bes {
			be.SetReadDeadline(t)
			be.SetWriteDeadline(t)
		}
	}) {
		for k := range d.pairs {
			d.pairs[k].rx.release()
			d.pairs[k].tx.release()
		}
		d.ctrl.release()
		d.irq = nil
	}
	if acked != 0 && d.offload != nil {
		d.offload(0)
	}
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the receive and transmit engines of each
// pair and (when offered) the control engines are doing, with the queue indices at their last
// transition, for debug dumps. It takes no lock: it is safe while an
// engine is stuck, from any goroutine.
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }
