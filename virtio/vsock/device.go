package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
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
	opts     Options
	maxSizes []uint16

	ctl      sync.Mutex // transport calls: the fields up to wg
	acked    uint64
	running  bool
	closed   bool
	kicks    [2]interface{ SetReadDeadline(time.Time) error }
	stopping atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup // the engines

	rx rxHandler
	tx txHandler

	// mu guards the connections and everything the engines, the unix
	// side's goroutines and the timers share (see conn).
	mu       sync.Mutex
	active   bool // between Activate and Reset: connections may exist
	conns    map[uint64]*conn
	ready    fifo    // connections with something for the guest
	rsts     []reply // RSTs to send for packets without a connection
	nextPort uint32
	wake     chan struct{} // a token: the rx engine has work
	host     sync.WaitGroup
	pending  atomic.Int32          // CONNECT lines being read
	lines    map[net.Conn]struct{} // their connections, closed by Close
	shut     bool                  // Close has begun

	stats counters
}

var _ virtio.Device = (*Device)(nil)

// New returns a device for opts and starts accepting on opts.Listener.
func New(opts Options) (*Device, error) {
	if opts.GuestCID < MinGuestCID || opts.GuestCID >= 1<<32-1 {
		return nil, fmt.Errorf("virtio-vsock: guest CID %d is not in [%d, %d]", opts.GuestCID, MinGuestCID, uint64(1<<32-2))
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if qs := opts.QueueSize; qs < 4 || qs > queue.MaxSize || qs&(qs-1) != 0 {
		return nil, fmt.Errorf("virtio-vsock: queue size %d is not a power of two in [4, %d]", qs, queue.MaxSize)
	}
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
	qs := opts.QueueSize
	d := &Device{opts: opts, maxSizes: []uint16{qs, qs, qs}, conns: map[uint64]*conn{},
		nextPort: FirstHostPort, wake: make(chan struct{}, 1), lines: map[net.Conn]struct{}{}}
	d.ready.init(opts.MaxConns)
	d.rsts = make([]reply, 0, opts.MaxConns+rstSlack)
	d.rx.d, d.tx.d = d, d
	if opts.Listener != nil {
		d.host.Add(1)
		go d.accept()
	}
	return d, nil
}

// Type is virtio.DeviceVsock.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceVsock }

// Features are Features.
func (d *Device) Features() uint64 { return Features }

// AckFeatures accepts any subset of the offered features that has
// VIRTIO_VSOCK_F_STREAM or lacks it (a driver of virtio 1.1 and older
// does not know the bit: stream is then implied).
func (d *Device) AckFeatures(negotiated uint64) error {
	if extra := negotiated &^ Features; extra != 0 {
		return fmt.Errorf("virtio-vsock: features %#x were not offered", extra)
	}
	d.ctl.Lock()
	d.acked = negotiated
	d.ctl.Unlock()
	return nil
}

// QueueMaxSizes is rx, tx and event, of Options.QueueSize.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads guest_cid.
func (d *Device) ReadConfig(offset uint64, p []byte) {
	var cfg [ConfigSize]byte
	binary.LittleEndian.PutUint64(cfg[:], d.opts.GuestCID)
	clear(p)
	if offset < ConfigSize {
		copy(p, cfg[offset:])
	}
}

// WriteConfig ignores the write: guest_cid is read-only.
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// Activate starts the rx and tx engines. Both must be enabled; the event
// queue may be left disabled.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	switch {
	case d.closed:
		return errors.New("virtio-vsock: device closed")
	case d.running:
		return errors.New("virtio-vsock: already active")
	case irq == nil || len(queues) != 3:
		return fmt.Errorf("virtio-vsock: activated with %d queues, want 3", len(queues))
	}
	for _, i := range []int{RxQueue, TxQueue} {
		if queues[i].Ring == nil || queues[i].Kick == nil {
			return fmt.Errorf("virtio-vsock: queue %d is not enabled", i)
		}
	}
	d.running = true
	d.stopping.Store(false)
	d.stop = make(chan struct{})
	cfg := func(i int, h virtio.Handler) virtio.EngineConfig {
		queues[i].Kick.SetReadDeadline(time.Time{})
		d.kicks[i] = queues[i].Kick
		return virtio.EngineConfig{Handler: h, Queue: queues[i], Index: i, IRQ: irq,
			Stopping: &d.stopping, Stop: d.stop, Batch: batch}
	}
	d.rx.eng.Bind(cfg(RxQueue, &d.rx))
	d.tx.eng.Bind(cfg(TxQueue, &d.tx))
	d.mu.Lock()
	d.active = true
	d.mu.Unlock()
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.rx.eng.Run() }()
	go func() { defer d.wg.Done(); d.tx.eng.Run() }()
	return nil
}

// Reset stops both engines, resets every connection's unix side (closed)
// and forgets the negotiated features. The listener stays open: CONNECTs
// that arrive before the next activation are closed at once.
func (d *Device) Reset() {
	d.ctl.Lock()
	defer d.ctl.Unlock()
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
		d.wg.Wait()
		for i, k := range d.kicks {
			k.SetReadDeadline(time.Time{})
			d.kicks[i] = nil
		}
		d.rx.eng.Release()
		d.tx.eng.Release()
		d.running = false
	}
	d.mu.Lock()
	d.active = false
	for _, c := range d.conns {
		d.kill(c, false)
	}
	d.rsts = d.rsts[:0]
	d.mu.Unlock()
	d.acked = 0
}

// Close resets the device, closes the listener (a unix listener removes
// its socket file) and waits for every goroutine of the unix side. The
// device cannot be activated again.
func (d *Device) Close() error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	d.resetLocked()
	d.closed = true
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
func (d *Device) EngineStates() []virtio.EngineState {
	r, t := d.rx.eng.Status.Load(), d.tx.eng.Status.Load()
	r.Queue, r.Name = RxQueue, "rx"
	t.Queue, t.Name = TxQueue, "tx"
	return []virtio.EngineState{r, t}
}
