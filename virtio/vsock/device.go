package vsock

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
)

// Queue indices (virtio 1.2 §5.10.2).
const (
	RxQueue    = 0 // host -> guest
	TxQueue    = 1 // guest -> host
	EventQueue = 2 // transport events (never used by Flint)
)

// Geometry and defaults.
const (
	// ConfigSize is struct virtio_vsock_config: guest_cid le64.
	ConfigSize = 8
	// DefaultQueueSize is each queue's size when Options.QueueSize is 0.
	DefaultQueueSize = 256
	// DefaultBufSize is each direction's buffer per connection.
	DefaultBufSize = 64 << 10
	// DefaultMaxConns caps the connections of one device.
	DefaultMaxConns = 256
	// DefaultConnectTimeout bounds the guest's answer to a host-initiated
	// connection and a host process's CONNECT line.
	DefaultConnectTimeout = 5 * time.Second
	// FirstHostPort is the first local port of host-initiated
	// connections (the ports "OK <port>" names).
	FirstHostPort = 1 << 30
)

// FeatureStream is VIRTIO_VSOCK_F_STREAM (bit 0).
const FeatureStream = 1 << 0

// Features are the features the device offers: stream sockets and the
// common ring features; no SEQPACKET.
const Features = virtio.CommonFeatures | FeatureStream

// Options configure a Device.
type Options struct {
	// GuestCID is the guest's context ID (at least MinGuestCID, at most
	// 2^32-2: Linux's CIDs are 32-bit, -1 is VMADDR_CID_ANY).
	GuestCID uint64
	// Listener accepts host-initiated connections (CONNECT <port>); nil
	// means none. The device closes it in Close.
	Listener net.Listener
	// Dial connects a guest-initiated connection to host port port; nil
	// refuses every one (RST).
	Dial func(port uint32) (net.Conn, error)
	// MaxConns caps simultaneous connections; 0 means DefaultMaxConns.
	MaxConns int
	// BufSize is each direction's buffer per connection (the buf_alloc
	// advertised to the guest); 0 means DefaultBufSize.
	BufSize int
	// QueueSize is each queue's largest size; 0 means DefaultQueueSize.
	QueueSize uint16
	// ConnectTimeout: see DefaultConnectTimeout; 0 means that.
	ConnectTimeout time.Duration
}

// UnixDialer returns Firecracker's Dial for guest-initiated connections:
// port P connects to the unix socket "<udsPath>_P", waiting at most
// timeout.
func UnixDialer(udsPath string, timeout time.Duration) func(uint32) (net.Conn, error) {
	return func(port uint32) (net.Conn, error) {
		return net.DialTimeout("unix", fmt.Sprintf("%s_%d", udsPath, port), timeout)
	}
}

// Device is a virtio-vsock device. Create it with New; Close it after
// the VM is done.
type Device struct {
	// FeatureSet: Features (Features), AckFeatures and Negotiated. Any
	// subset of the offered features is accepted, with
	// VIRTIO_VSOCK_F_STREAM or without it (a driver of virtio 1.1 and
	// older does not know the bit: stream is then implied).
	virtio.FeatureSet

	opts     Options
	maxSizes []uint16

	// engines: the rx and tx lanes (not the event queue's); its lock
	// serializes the transport's calls and Close.
	engines virtio.Engines

	rx rxHandler
	tx txHandler

	// mu guards the connections and everything the engines, the unix
	// side's goroutines and the timers share (see conn).
	mu     sync.Mutex
	active bool // between Activate and Reset: connections may exist
	conns  map[uint64]*conn
	// orphans are connections removed while their dial ran (the guest's
	// RST, a duplicate REQUEST, a reset): each keeps its place under
	// MaxConns until the dial returns, so a guest cannot start dials
	// (goroutines, sockets) without bound by taking REQUESTs back.
	orphans  int
	ready    fifo[*conn] // connections with something for the guest
	rsts     fifo[reply] // RSTs to send for packets without a connection
	nextPort uint32
	wake     chan struct{} // a token: the rx engine has work
	host     sync.WaitGroup
	pending  atomic.Int32          // CONNECT lines being read
	lines    map[net.Conn]struct{} // their connections, closed by Close
	shut     bool                  // Close has begun

	stats virtio.Tally[Stats, counter]

	// guard contains a panic on the unix side's goroutines (accept,
	// handshake, dial, reader, writer): DEVICE_NEEDS_RESET, not the end
	// of the process.
	guard virtio.Guard
}

var _ virtio.Device = (*Device)(nil)

// New returns a device for opts and starts accepting on opts.Listener.
func New(opts Options) (*Device, error) {
	if opts.GuestCID < MinGuestCID || opts.GuestCID >= 1<<32-1 {
		return nil, fmt.Errorf("virtio-vsock: guest CID %d is not in [%d, %d]", opts.GuestCID, MinGuestCID, uint64(1<<32-2))
	}
	qs, err := virtio.QueueSize("virtio-vsock", opts.QueueSize, DefaultQueueSize)
	if err != nil {
		return nil, err
	}
	opts.QueueSize = qs
	if opts.BufSize == 0 {
		opts.BufSize = DefaultBufSize
	}
	if opts.BufSize < 4096 || opts.BufSize > 16<<20 {
		return nil, fmt.Errorf("virtio-vsock: buffer of %d bytes is not in [4 KiB, 16 MiB]", opts.BufSize)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConns < 1 || opts.MaxConns > 1<<16 {
		return nil, fmt.Errorf("virtio-vsock: connection cap %d is not in [1, 65536]", opts.MaxConns)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	d := &Device{opts: opts, maxSizes: []uint16{qs, qs, qs}, conns: map[uint64]*conn{},
		nextPort: FirstHostPort, wake: make(chan struct{}, 1), lines: map[net.Conn]struct{}{}}
	d.ready.init(opts.MaxConns)
	d.rsts.init(opts.MaxConns + rstSlack)
	d.rx.d, d.tx.d = d, d
	d.OfferFeatures("virtio-vsock", Features)
	d.engines.Init("virtio-vsock", 3, &d.FeatureSet,
		virtio.Lane{Engine: &d.rx.eng, Handler: &d.rx, Queue: RxQueue, Name: "rx", Batch: batch},
		virtio.Lane{Engine: &d.tx.eng, Handler: &d.tx, Queue: TxQueue, Name: "tx", Batch: batch})
	d.stats.Init(names[:], map[virtio.Event]counter{virtio.EventMalformed: cMalformed,
		virtio.EventInterrupt: cInterrupts, virtio.EventBroken: cBroken})
	if opts.Listener != nil {
		d.host.Add(1)
		go d.accept()
	}
	return d, nil
}

// Type is virtio.DeviceVsock.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceVsock }

// QueueMaxSizes is rx, tx and event, of Options.QueueSize.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads guest_cid.
func (d *Device) ReadConfig(offset uint64, p []byte) {
	var cfg [ConfigSize]byte
	binary.LittleEndian.PutUint64(cfg[:], d.opts.GuestCID)
	virtio.CopyConfig(p, offset, cfg[:])
}

// WriteConfig ignores the write: guest_cid is read-only.
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// Activate starts the rx and tx engines. Both must be enabled; the event
// queue may be left disabled.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	d.engines.Lock()
	defer d.engines.Unlock()
	if err := d.engines.Check(queues, irq); err != nil {
		return err
	}
	if err := d.guard.Bind(irq); err != nil {
		return err
	}
	d.mu.Lock()
	d.active = true // before the engines run: the guest may connect at once
	d.mu.Unlock()
	if err := d.engines.Start(queues, irq); err != nil {
		d.guard.Unbind()
		d.dropConns()
		return err
	}
	return nil
}

// Reset stops both engines, resets every connection's unix side (closed)
// and forgets the negotiated features. The listener stays open: CONNECTs
// that arrive before the next activation are closed at once.
func (d *Device) Reset() {
	d.engines.Reset(nil)
	d.guard.Unbind()
	d.dropConns()
}

// dropConns ends every connection once the engines stopped: no new one
// until the next activation.
func (d *Device) dropConns() {
	d.mu.Lock()
	d.active = false
	for _, c := range d.conns {
		d.kill(c, false)
	}
	d.rsts.clear()
	d.mu.Unlock()
}

// Close resets the device, closes the listener (a unix listener removes
// its socket file) and waits for every goroutine of the unix side. The
// device cannot be activated again.
func (d *Device) Close() error {
	d.engines.Lock()
	defer d.engines.Unlock()
	d.engines.Stop(nil)
	d.guard.Unbind()
	d.dropConns()
	d.engines.Close()
	var err error
	if d.opts.Listener != nil {
		err = d.opts.Listener.Close()
	}
	d.mu.Lock()
	d.shut = true
	for uc := range d.lines { // a host process that sent no CONNECT line
		uc.Close()
	}
	d.mu.Unlock()
	d.host.Wait()
	return err
}

// Conns is the number of open connections (in any state).
func (d *Device) Conns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns)
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the two engines are doing ("rx", "tx"), for
// debug dumps. It takes no lock.
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }
