package vhostuser

// The device's virtio.Interrupt behind vhost-user: call fds for used
// buffers, the backend channel for configuration changes, the err fds and
// a ring stop for "needs reset".

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/eventfd"
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
// a recycled one. A full pipe or socket or a saturated eventfd (EAGAIN)
// already holds a pending notification. EPIPE means the frontend closed
// its end, which UML does when its driver drops the rings without
// telling the backend: the device is then stopped.
//
// The write is a raw system call (notifyFD.signal), which never blocks,
// and skips the runtime's system-call bookkeeping, which wakes the
// runtime's sysmon thread whenever the process was idle (issue 15's
// profiles: sysmon's 20 µs polling after each wake-up was a fifth of
// net-backend's CPU).
func (a *activation) Signal(q int) error {
	if a.dead.Load() {
		return transport.ErrInactive
	}
	rings := a.s.rings
	if uint(q) >= uint(len(rings)) {
		return transport.ErrQueueIndex
	}
	err := notifyFD(rings[q].call.Load()).signal()
	if err == unix.EPIPE {
		a.s.fault(a, "the frontend closed a call pipe (its driver dropped the rings)", q)
	}
	return err
}

// notifyFD is an fd the backend writes notifications to (a ring's call
// or err fd, the backend channel) in one word, so that Signal reads it
// with one atomic load: the fd, and sockBit when it is a unix socket;
// noFD (-1) for none.
//
// A socket is written with send(MSG_DONTWAIT): non-blocking for that
// call whatever the file's flags say. The O_NONBLOCK the session sets
// when it takes an fd is a flag of the open file, which the frontend
// shares (it passed a copy of its own descriptor) and can clear again
// with fcntl; a raw write(2) that blocks on a full socket then holds its
// thread in the kernel where the Go runtime cannot stop it, and the
// next garbage collection waits for it forever: the whole backend
// freezes. UML's call fds and backend channel are sockets. Pipes and
// eventfds have no per-call non-blocking write that the backend's
// seccomp filter allows (pwritev2's RWF_NOWAIT works for pipes, not for
// eventfds), so they still rely on the shared flag.
type notifyFD int64

const (
	sockBit notifyFD = 1 << 32
	noFD    notifyFD = -1
)

func newNotifyFD(fd int, sock bool) notifyFD {
	n := notifyFD(fd)
	if sock {
		n |= sockBit
	}
	return n
}

func (n notifyFD) valid() bool { return n >= 0 }
func (n notifyFD) fd() int     { return int(n &^ sockBit) }

// close closes the fd, if any.
func (n notifyFD) close() {
	if n.valid() {
		unix.Close(n.fd())
	}
}

// signalRare is signal for an fd written rarely (an err fd, once per
// fault): a socket the same way, anything else through eventfd.Signal,
// an ordinary system call, so that a frontend that made its file
// blocking and full holds only the calling goroutine, not the runtime.
func (n notifyFD) signalRare() error {
	if n&sockBit != 0 {
		return n.signal()
	}
	if !n.valid() {
		return nil
	}
	return eventfd.Signal(n.fd())
}

// signal writes an 8-byte 1 to the fd without blocking (none: nothing):
// EAGAIN (a full pipe or socket, a saturated eventfd) counts as
// signalled, EINTR is retried.
func (n notifyFD) signal() error {
	if !n.valid() {
		return nil
	}
	for {
		var errno unix.Errno
		if n&sockBit != 0 {
			errno = rawSend8(n.fd())
		} else {
			errno = rawWrite8(n.fd())
		}
		switch errno {
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
// (a socket from QEMU and UML, or the write end of a pipe). Messages go
// out without NEED_REPLY, since a pipe cannot carry an answer.
type backendChan struct {
	mu sync.Mutex
	fd notifyFD
}

// errNoChannel reports a config change that could not be sent.
var errNoChannel = errors.New("vhost-user: no backend channel for a config change")

func (b *backendChan) set(fd notifyFD) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fd.close()
	b.fd = fd
}

func (b *backendChan) close() { b.set(noFD) }

func (b *backendChan) configChanged() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.fd.valid() {
		return errNoChannel
	}
	var msg [HeaderSize]byte
	putHeader(msg[:], header{Request: backendConfigChange, Flags: FlagVersion})
	for {
		var n int
		var err error
		if b.fd&sockBit != 0 {
			// Not blocking whatever the shared file's flags (see notifyFD).
			n, err = unix.SendmsgN(b.fd.fd(), msg[:], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		} else {
			n, err = unix.Write(b.fd.fd(), msg[:])
		}
		if err == unix.EINTR {
			continue
		}
		if err == nil && n != len(msg) {
			// A torn message corrupts the stream; stop using it.
			b.fd.close()
			b.fd = noFD
			return errNoChannel
		}
		return err
	}
}
