// Package transporttest provides test doubles for virtio transports: a
// recording virtio.Device, recorders for the interrupt interfaces a VMM
// implements (edge trigger, level line, MSI-X router) and a Notifier that
// plays KVM's ioeventfd matching. The transports' own tests and the VMM's
// tests use them.
//
// It is for tests only. It imports virtio, virtio/queue, virtio/transport,
// mem and the standard library.
package transporttest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport"
)

// Device is a virtio.Device that records what its transport does to it.
// It runs no goroutines. Set the exported fields before the transport is
// built; read the rest through the methods. Safe for concurrent use.
type Device struct {
	// ID is the device type (default: net).
	ID virtio.DeviceID
	// Offered are the offered features (default virtio.CommonFeatures).
	Offered uint64
	// Maxes are the queue maximum sizes (default two queues of 256).
	Maxes []uint16
	// Config is the configuration space (default 8 bytes 0..7).
	Config []byte
	// AckErr, if set, makes AckFeatures refuse every feature set.
	AckErr error
	// ActivateErr, if set, makes Activate fail.
	ActivateErr error
	// PanicIn, if set, names a method that panics as a device bug would:
	// "Activate", "ReadConfig" or "WriteConfig".
	PanicIn string

	mu          sync.Mutex
	acked       uint64
	activations int
	resets      int
	queues      []virtio.Queue
	irq         virtio.Interrupt
	mem         *mem.Memory
}

// NewDevice returns a Device with the defaults filled in.
func NewDevice() *Device {
	return &Device{ID: virtio.DeviceNet, Offered: virtio.CommonFeatures,
		Maxes: []uint16{256, 256}, Config: []byte{0, 1, 2, 3, 4, 5, 6, 7}}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceID { return d.ID }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.Offered }

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 { return d.Maxes }

// ConfigSize implements virtio.Device.
func (d *Device) ConfigSize() int { return len(d.Config) }

// AckFeatures implements virtio.Device.
func (d *Device) AckFeatures(f uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.AckErr != nil {
		return d.AckErr
	}
	d.acked = f
	return nil
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maybePanic("ReadConfig")
	clear(p)
	if off < uint64(len(d.Config)) {
		copy(p, d.Config[off:])
	}
}

// WriteConfig implements virtio.Device: it stores the bytes.
func (d *Device) WriteConfig(off uint64, p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maybePanic("WriteConfig")
	if off < uint64(len(d.Config)) {
		copy(d.Config[off:], p)
	}
}

// Activate implements virtio.Device.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maybePanic("Activate")
	if d.ActivateErr != nil {
		return d.ActivateErr
	}
	if len(queues) != len(d.Maxes) {
		return errors.New("transporttest: wrong number of queues")
	}
	for i, q := range queues {
		if (q.Ring == nil) != (q.Kick == nil) || q.Ring != nil && !q.Ring.Ready() {
			return fmt.Errorf("transporttest: queue %d handed over half set up", i)
		}
	}
	d.activations++
	d.queues, d.irq, d.mem = queues, irq, m
	return nil
}

// maybePanic panics if method is PanicIn. Caller holds mu.
func (d *Device) maybePanic(method string) {
	if d.PanicIn == method {
		var p *Device
		_ = p.Config[0] // a nil dereference, as a real bug would
	}
}

// Reset implements virtio.Device.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resets++
	d.queues, d.irq, d.mem, d.acked = nil, nil, nil, 0
}

// Acked returns the features AckFeatures accepted (0 after Reset).
func (d *Device) Acked() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acked
}

// Activations counts successful Activate calls.
func (d *Device) Activations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.activations
}

// Resets counts Reset calls.
func (d *Device) Resets() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resets
}

// Queues returns the queues of the current activation (nil if none).
func (d *Device) Queues() []virtio.Queue {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queues
}

// IRQ returns the Interrupt of the current activation (nil if none).
func (d *Device) IRQ() virtio.Interrupt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.irq
}

// Kicked reports whether kick (a Queue's Kick) becomes readable within
// wait, and consumes what it read.
func Kicked(kick *os.File, wait time.Duration) bool {
	var b [8]byte
	kick.SetReadDeadline(time.Now().Add(wait))
	defer kick.SetReadDeadline(time.Time{})
	n, err := kick.Read(b[:])
	return err == nil && n > 0
}

// Edge records edge interrupts (devices.IRQTrigger).
type Edge struct {
	n atomic.Uint64
}

// Trigger implements devices.IRQTrigger.
func (e *Edge) Trigger() error { e.n.Add(1); return nil }

// Count is the number of Trigger calls.
func (e *Edge) Count() uint64 { return e.n.Load() }

// Line records a level interrupt line (devices.IRQLine).
type Line struct {
	mu    sync.Mutex
	level bool
	rises int
}

// SetLevel implements devices.IRQLine.
func (l *Line) SetLevel(high bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if high && !l.level {
		l.rises++
	}
	l.level = high
	return nil
}

// Level is the line's current level.
func (l *Line) Level() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.level
}

// Rises counts low-to-high transitions.
func (l *Line) Rises() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rises
}

// Vector is what a Router knows about one MSI-X vector.
type Vector struct {
	Addr     uint64 // MSI address last committed
	Data     uint32 // MSI data last committed
	Masked   bool   // mask state last committed
	Triggers int    // Trigger calls
	// Updates counts SetVector calls.
	Updates int
	// BadTriggers counts Trigger calls while the vector was masked or
	// never programmed (committed), which a transport must never make.
	BadTriggers int

	next      message // reported by SetVector, installed by Commit
	committed bool
}

// message is a reported, not yet committed, vector state.
type message struct {
	Addr   uint64
	Data   uint32
	Masked bool
}

// Router records MSI-X programming and delivery; it implements
// virtio/transport/pci.MSIXRouter.
type Router struct {
	mu      sync.Mutex
	vecs    map[int]*Vector
	commits int
}

// NewRouter returns an empty Router.
func NewRouter() *Router { return &Router{vecs: map[int]*Vector{}} }

func (r *Router) vec(v int) *Vector {
	x := r.vecs[v]
	if x == nil {
		x = &Vector{Masked: true}
		r.vecs[v] = x
	}
	return x
}

// SetVector records vector v's message and mask state.
func (r *Router) SetVector(v int, addr uint64, data uint32, masked bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	x := r.vec(v)
	x.next = message{Addr: addr, Data: data, Masked: masked}
	x.Updates++
	return nil
}

// Commit installs what SetVector reported since the last Commit.
func (r *Router) Commit() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
	for _, x := range r.vecs {
		if x.Updates > 0 {
			x.Addr, x.Data, x.Masked, x.committed = x.next.Addr, x.next.Data, x.next.Masked, true
		}
	}
	return nil
}

// Commits counts Commit calls.
func (r *Router) Commits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commits
}

// Trigger records a delivery of vector v.
func (r *Router) Trigger(v int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	x := r.vec(v)
	if x.Masked || !x.committed {
		x.BadTriggers++
	}
	x.Triggers++
	return nil
}

// Vector returns a copy of vector v's record.
func (r *Router) Vector(v int) Vector {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.vec(v)
}

// Notifier plays KVM's ioeventfds: it records attachments and, for a
// guest write, signals the matching kick as KVM would.
type Notifier struct {
	mu       sync.Mutex
	attached map[transport.NotifyMatch]*os.File
	// AttachErr, if set, makes Attach fail.
	AttachErr error
	// Attaches and Detaches count calls.
	Attaches, Detaches int
}

// NewNotifier returns an empty Notifier.
func NewNotifier() *Notifier {
	return &Notifier{attached: map[transport.NotifyMatch]*os.File{}}
}

// Attach implements transport.Notifier.
func (n *Notifier) Attach(m transport.NotifyMatch, kick *os.File) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.AttachErr != nil {
		return n.AttachErr
	}
	if _, dup := n.attached[m]; dup {
		return errors.New("transporttest: ioeventfd already attached at this match")
	}
	n.attached[m] = kick
	n.Attaches++
	return nil
}

// Detach implements transport.Notifier.
func (n *Notifier) Detach(m transport.NotifyMatch, kick *os.File) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.attached[m] != kick {
		return errors.New("transporttest: detach of an ioeventfd that is not attached")
	}
	delete(n.attached, m)
	n.Detaches++
	return nil
}

// Attached returns the matches currently attached.
func (n *Notifier) Attached() []transport.NotifyMatch {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []transport.NotifyMatch
	for m := range n.attached {
		out = append(out, m)
	}
	return out
}

// GuestWrite plays a guest write of size bytes of value at addr: if an
// attached match covers it, the kick is signalled and GuestWrite reports
// true (KVM consumed the write); otherwise the write would exit to the
// VMM and GuestWrite reports false.
func (n *Notifier) GuestWrite(addr uint64, size uint32, value uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for m, f := range n.attached {
		if m.Addr == addr && (m.Len == 0 || m.Len == size) && (!m.Datamatch || m.Data == value) {
			f.Write([]byte{1, 0, 0, 0, 0, 0, 0, 0})
			return true
		}
	}
	return false
}

// Logger returns a logger that writes to tb's log.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

// Write logs p as one test log line.
func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}

// Quiet is a logger that discards everything (fuzzing).
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
