package vhostuser

// The device's virtio.Interrupt behind vhost-user: call fds for used
// buffers, the backend channel for configuration changes, the err fds and
// a ring stop for "needs reset".

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport"
)

// activation is the virtio.Interrupt of one Device.Activate. It goes dead
// when the transport resets the device, so a device that keeps it by
// mistake cannot reach a later activation's fds.
type activation struct {
	s       *session
	rings   []bool // per ring: it started it
	dead    atomic.Bool
	faulted atomic.Bool
}

var _ virtio.Interrupt = (*activation)(nil)

// Signal writes 8 bytes to ring q's call fd, if the frontend gave one
// (with NOFD it polls). It does not allocate and takes no lock: the fd is
// read atomically, and a call fd replaced while the device runs is only
// closed after the next device reset, so the number written to is never
// a recycled one. A full pipe or saturated eventfd (EAGAIN) already
// holds a pending notification. EPIPE means the frontend closed its read
// end, which UML does when its driver drops the rings without telling
// the backend: the device is then stopped.
//
// The write is a raw write(2) (signalCall): the session made the fd
// non-blocking when it took it, so the write never blocks, and it skips
// the runtime's system-call bookkeeping, which wakes the runtime's sysmon
// thread whenever the process was idle (issue 15's profiles: sysmon's
// 20 µs polling after each wake-up was a fifth of net-backend's CPU).
func (a *activation) Signal(q int) error {
	if a.dead.Load() {
		return transport.ErrInactive
	}
	rings := a.s.rings
	if uint(q) >= uint(len(rings)) {
		return transport.ErrQueueIndex
	}
	fd := int(rings[q].call.Load())
	if fd < 0 {
		return nil
	}
	err := signalCall(fd)
	if err == unix.EPIPE {
		a.s.fault(a, "the frontend closed a call pipe (its driver dropped the rings)", q)
	}
	return err
}

// signalCall is eventfd.Signal through rawWrite8: EAGAIN (a full pipe, a
// saturated eventfd) counts as signalled, EINTR is retried.
func signalCall(fd int) error {
	for {
		switch errno := rawWrite8(fd); errno {
		case 0, unix.EAGAIN:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}

// SignalConfig sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the backend
// channel, if the frontend set one up (BACKEND_REQ); otherwise the
// frontend has no way to hear about it and the change is dropped.
func (a *activation) SignalConfig() error {
	if a.dead.Load() {
		return transport.ErrInactive
	}
	return a.s.backend.configChanged()
}

// Fault implements virtio.FaultReporter: a device goroutine failed for
// reason (a panic, a fault in the frontend's memory); as NeedsReset, with
// the reason logged.
func (a *activation) Fault(reason string) error {
	if a.dead.Load() {
		return transport.ErrInactive
	}
	a.s.fault(a, "the device reported an unrecoverable error (NEEDS_RESET): "+reason, -1)
	return nil
}

// NeedsReset stops the device and every ring, and writes the err fds:
// vhost-user has no status register, so the frontend learns of the
// failure through SET_VRING_ERR's fds (QEMU logs it) and by its rings no
// longer being served. It restarts them with SET_VRING_KICK.
func (a *activation) NeedsReset() error {
	if a.dead.Load() {
		return transport.ErrInactive
	}
	a.s.fault(a, "the device reported an unrecoverable error (NEEDS_RESET)", -1)
	return nil
}

// backendChan is the backend-to-frontend channel of SET_BACKEND_REQ_FD
// (a socket from QEMU, the write end of a pipe from UML). Messages go out
// without NEED_REPLY, since a pipe cannot carry an answer.
type backendChan struct {
	mu sync.Mutex
	fd int // -1: none
}

// errNoChannel reports a config change that could not be sent.
var errNoChannel = errors.New("vhost-user: no backend channel for a config change")

func (b *backendChan) set(fd int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fd >= 0 {
		unix.Close(b.fd)
	}
	b.fd = fd
}

func (b *backendChan) close() { b.set(-1) }

func (b *backendChan) configChanged() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fd < 0 {
		return errNoChannel
	}
	var msg [HeaderSize]byte
	putHeader(msg[:], header{Request: backendConfigChange, Flags: FlagVersion})
	for {
		n, err := unix.Write(b.fd, msg[:])
		if err == unix.EINTR {
			continue
		}
		if err == nil && n != len(msg) {
			// A torn message corrupts the stream; stop using it.
			unix.Close(b.fd)
			b.fd = -1
			return errNoChannel
		}
		return err
	}
}
