package tap

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Queue is one file of a TAP interface: a multiqueue TAP has one per queue
// pair, a plain TAP exactly one. Each call to Readv returns one frame, each
// call to Writev sends one; the first vnethdr.Len (12) bytes of every frame are
// the virtio-net header.
//
// The data-path methods allocate nothing and return a bare unix.Errno for a
// failed system call, os.ErrDeadlineExceeded when the deadline passed and
// os.ErrClosed once the Queue is closed. If the interface is deleted under
// an open Queue, parked and later calls fail with unix.EBADFD (no call
// parks or spins on such a Queue).
type Queue struct {
	file   *os.File
	rc     syscall.RawConn
	name   string
	index  int
	closed atomic.Bool // set by Close before the file is closed
	steer  *steering   // the Tap's, shared by its queues; nil on a single-queue TAP

	rx, tx ioDir
}

// ioDir is the reusable state of one direction: the iovec array and the
// results of the callback that runs inside RawConn.Read/Write. The
// callbacks are method values bound once in newQueue, so passing them to
// the RawConn does not allocate.
type ioDir struct {
	mu     sync.Mutex
	write  bool
	iov    []unix.Iovec
	n      int
	errno  unix.Errno
	pfd    [1]unix.PollFd
	zeroTS unix.Timespec
	parked bool   // this wait's first ready call ran (see doReady); ReadvOrPark parked
	idle   func() // ReadvOrPark's hook, for the call

	park   func(fd uintptr) bool // readv/writev; false on EAGAIN parks in the poller
	once   func(fd uintptr) bool // readv/writev exactly once
	ready  func(fd uintptr) bool // a zero-timeout ppoll before parking, none after; moves no data
	orPark func(fd uintptr) bool // readv; on EAGAIN idle, then park; none after the wake
}

// initialIovecs is the iovec capacity a Queue starts with; it grows (once)
// when a caller passes more buffers.
const initialIovecs = 64

func (d *ioDir) init(write bool) {
	d.write = write
	d.iov = make([]unix.Iovec, 0, initialIovecs)
	d.pfd[0].Events = unix.POLLIN
	if write {
		d.pfd[0].Events = unix.POLLOUT
	}
	d.park = d.doPark
	d.once = d.doOnce
	d.ready = d.doReady
	d.orPark = d.doReadOrPark
}

// newQueue wraps a TAP descriptor that is already attached. It takes
// ownership of fd: on error fd is closed.
func newQueue(fd int, name string, index int) (*Queue, error) {
	// Non-blocking before os.NewFile, so that NewFile registers the file
	// with the runtime netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if f == nil {
		unix.Close(fd)
		return nil, fmt.Errorf("invalid descriptor %d", fd)
	}
	// Deadlines work only on pollable files: this is the check that the
	// netpoller accepted the descriptor.
	if err := f.SetDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("not pollable: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	q := &Queue{file: f, rc: rc, name: name, index: index}
	q.rx.init(false)
	q.tx.init(true)
	return q, nil
}

// Index is the queue's position in its Tap (0 for a single-queue TAP).
func (q *Queue) Index() int { return q.index }

// Name is the interface name.
func (q *Queue) Name() string { return q.name }

// Readv reads one frame into iovs: the vnet header, then the Ethernet
// frame. When nothing is queued it parks the goroutine in the netpoller
// until a frame arrives, the read deadline passes (os.ErrDeadlineExceeded)
// or the Queue is closed (os.ErrClosed). Empty buffers in iovs are skipped;
// with no buffer space at all it returns unix.EINVAL without a system
// call. A frame longer than the buffers is truncated to them (see the
// package documentation).
func (q *Queue) Readv(iovs [][]byte) (int, error) {
	return q.do(&q.rx, iovs, false)
}

// TryReadv is Readv without parking: when no frame is queued it returns
// unix.EAGAIN at once.
func (q *Queue) TryReadv(iovs [][]byte) (int, error) {
	return q.do(&q.rx, iovs, true)
}

// Writev writes one frame, gathered from iovs: the vnet header, then the
// Ethernet frame. Empty buffers are skipped; with no bytes at all it
// returns unix.EINVAL. It parks in the netpoller only if the kernel refuses with
// EAGAIN (the socket send buffer, INT_MAX by default, is full). The kernel
// rejects a malformed vnet header with unix.EINVAL and returns unix.EIO
// while the interface is down; both drop only this frame.
func (q *Queue) Writev(iovs [][]byte) (int, error) {
	return q.do(&q.tx, iovs, false)
}

// TryWritev is Writev without parking: it returns unix.EAGAIN instead.
func (q *Queue) TryWritev(iovs [][]byte) (int, error) {
	return q.do(&q.tx, iovs, true)
}

// ReadvOrPark is TryReadv and WaitReadable in one wait on the file, for
// a reader that must do something between the two (virtio/netdev's RX
// engine publishes the frames it delivered and signals the guest): it
// reads one frame into iovs and returns its length; when none is queued
// it calls idle, parks until a frame can be read, and returns parked
// with nothing read (the caller reads again), or with
// os.ErrDeadlineExceeded or os.ErrClosed. idle runs on the caller's
// goroutine after the readv found nothing and before parking, and must
// not call the Queue's read side; iovs are not used after it (the
// caller may give their buffers away). A wake-up
// costs no system call besides the readv that ends it: the readv that
// found nothing is the check after RawConn.Read forgot the poller's
// recorded readiness (see doReady), so a frame that arrives after it,
// even during idle, raises an edge this same wait sees. Errors, and
// the empty iovs' unix.EINVAL, are TryReadv's.
func (q *Queue) ReadvOrPark(iovs [][]byte, idle func()) (n int, parked bool, err error) {
	d := &q.rx
	d.mu.Lock()
	defer d.endReadOrPark() // also when idle panics
	if !d.load(iovs) {
		return 0, false, unix.EINVAL
	}
	d.idle, d.parked = idle, false
	err = q.rc.Read(d.orPark)
	n, errno, parked := d.n, d.errno, d.parked
	switch {
	case err != nil:
		return 0, parked, q.pollErr(err)
	case parked:
		return 0, true, nil
	case errno != 0:
		return 0, false, errno
	}
	return n, false, nil
}

// endReadOrPark ends a ReadvOrPark: it drops the hook and the caller's
// buffers and unlocks the read side. Deferred, so that a panic in idle
// (the RX engine's publish faulting on guest memory, which the engine
// recovers from and then waits for the device's reset) does not leave
// the read side locked: the next activation's ReadvOrPark on the same
// Queue would block forever, and so would the reset after it, waiting
// for that engine.
func (d *ioDir) endReadOrPark() {
	d.idle = nil
	d.release()
	d.mu.Unlock()
}

// WaitReadable parks until a frame can be read, without reading it, and
// returns nil; or returns os.ErrDeadlineExceeded or os.ErrClosed. It
// makes one system call (a zero-timeout ppoll) before parking and none
// after the poller wakes it, so a wake-up for a frame already read (or
// taken by another reader) returns nil too: a TryReadv after it can
// still see unix.EAGAIN, and then waits again.
func (q *Queue) WaitReadable() error {
	return q.wait(&q.rx)
}

// WaitWritable parks until the kernel would accept a write (it nearly
// always would), or the write deadline passes, or the Queue is closed.
// Like WaitReadable, a stale wake-up returns nil, and the next write may
// see unix.EAGAIN again.
func (q *Queue) WaitWritable() error {
	return q.wait(&q.tx)
}

// SetReadDeadline sets the time after which Readv and WaitReadable fail
// with os.ErrDeadlineExceeded, including calls already parked. A time in
// the past interrupts a parked reader at once (the way to stop an RX
// goroutine without closing the TAP); the zero time clears the deadline.
func (q *Queue) SetReadDeadline(t time.Time) error { return q.file.SetReadDeadline(t) }

// SetWriteDeadline is SetReadDeadline for Writev and WaitWritable.
func (q *Queue) SetWriteDeadline(t time.Time) error { return q.file.SetWriteDeadline(t) }

// SetEnabled attaches (true) or detaches (false) the queue on a multiqueue
// TAP (TUNSETQUEUE with IFF_ATTACH_QUEUE or IFF_DETACH_QUEUE). The kernel
// spreads received frames only over attached queues, so a device whose
// guest uses fewer queue pairs than were opened detaches the rest. Queues
// start attached.
func (q *Queue) SetEnabled(enabled bool) error {
	flags := uint16(unix.IFF_DETACH_QUEUE)
	if enabled {
		flags = unix.IFF_ATTACH_QUEUE
	}
	return q.control("ioctl TUNSETQUEUE", func(fd int) error {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return err
		}
		ifr.SetUint16(flags)
		return unix.IoctlIfreq(fd, unix.TUNSETQUEUE, ifr)
	})
}

// Pending reports whether a frame waits to be read (a zero-timeout poll
// of the descriptor); false also when the poll fails. Not for the data
// path: it allocates.
func (q *Queue) Pending() bool {
	ready := false
	q.control("poll", func(fd int) error {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, errno := pollNow(pfd, &unix.Timespec{})
		ready = errno == 0 && n == 1 && pfd[0].Revents&unix.POLLIN != 0
		return nil
	})
	return ready
}

// SyscallConn gives raw access to the descriptor for callers that must
// hand it to the kernel (e.g. VHOST_NET_SET_BACKEND) while this Queue
// keeps owning it.
func (q *Queue) SyscallConn() (syscall.RawConn, error) { return q.rc, nil }

// Close closes the queue file. Calls parked in Readv, Writev or the Wait
// calls return os.ErrClosed; Close waits until they have left the
// descriptor. Closing the last file of a non-persistent interface deletes
// the interface. Tap.Close closes every queue.
func (q *Queue) Close() error {
	q.closed.Store(true)
	err := q.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// do runs one readv/writev on d with iovs. It allocates nothing: d's iovec
// array and callbacks are reused, and every error is a sentinel or an
// Errno.
func (q *Queue) do(d *ioDir, iovs [][]byte, try bool) (int, error) {
	d.mu.Lock()
	if !d.load(iovs) {
		d.mu.Unlock()
		return 0, unix.EINVAL
	}
	fn := d.park
	if try {
		fn = d.once
	}
	var err error
	if d.write {
		err = q.rc.Write(fn)
	} else {
		err = q.rc.Read(fn)
	}
	n, errno := d.n, d.errno
	d.release()
	d.mu.Unlock()
	if err != nil {
		return 0, q.pollErr(err)
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

func (q *Queue) wait(d *ioDir) error {
	d.mu.Lock()
	d.parked = false
	var err error
	if d.write {
		err = q.rc.Write(d.ready)
	} else {
		err = q.rc.Read(d.ready)
	}
	d.mu.Unlock()
	if err != nil {
		return q.pollErr(err)
	}
	return nil
}

// control runs f on the descriptor, kept open for the duration, and wraps
// its error with op. Not for the data path: the closure allocates.
func (q *Queue) control(op string, f func(fd int) error) error {
	var ferr error
	err := q.rc.Control(func(fd uintptr) { ferr = f(int(fd)) })
	if err != nil {
		return q.pollErr(err)
	}
	if ferr != nil {
		return fmt.Errorf("tap %q: %w", q.name, os.NewSyscallError(op, ferr))
	}
	return nil
}

// pollErr maps an error from the RawConn itself (never one from our
// callbacks) to the package's sentinels without allocating.
func (q *Queue) pollErr(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return os.ErrDeadlineExceeded
	case q.closed.Load():
		// internal/poll reports a closed file as ErrFileClosing, which is
		// not os.ErrClosed.
		return os.ErrClosed
	}
	// The netpoller saw EPOLLERR on the descriptor and refuses to wait on
	// it again (internal/poll's ErrNotPollable). The TAP driver reports
	// EPOLLERR once the file is detached from its interface, e.g. after
	// `ip link del`; the kernel's own answer to a read is then EBADFD.
	return unix.EBADFD
}

// load fills d.iov from iovs, skipping empty buffers, and reports whether
// any buffer space was given.
func (d *ioDir) load(iovs [][]byte) bool {
	iov := d.iov[:0]
	for _, b := range iovs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	d.iov = iov
	d.n, d.errno = 0, 0
	return len(iov) > 0
}

// release drops the references to the caller's buffers.
func (d *ioDir) release() {
	clear(d.iov)
	d.iov = d.iov[:0]
}

func (d *ioDir) doPark(fd uintptr) bool {
	for {
		n, errno := d.sys(fd)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		d.n, d.errno = n, errno
		return true
	}
}

func (d *ioDir) doOnce(fd uintptr) bool {
	for {
		n, errno := d.sys(fd)
		if errno == unix.EINTR {
			continue
		}
		d.n, d.errno = n, errno
		return true
	}
}

// doReady is the Wait calls' RawConn callback. RawConn.Read and Write
// first forget the readiness the netpoller recorded for the file
// (internal/poll's prepareRead/prepareWrite, i.e. runtime_pollReset),
// then call it, and park while it returns false until the poller reports
// the file ready. So the first call must ask the kernel: a frame that
// arrived after the caller's TryReadv returned EAGAIN raised its epoll
// edge then, and the poller may have taken that edge before this wait
// began (another P idle in epoll_pwait takes it at once): forgotten, and
// without this check the wait would sleep until the next frame. The
// check is a zero-timeout ppoll; an error or POLLERR/POLLHUP counts as
// ready (the next read or write reports it). After a wake the poller has
// seen an edge raised after that check, and the caller's next readv or
// writev tells whether it was stale (it then sees EAGAIN and waits
// again), so later calls return true without a system call.
func (d *ioDir) doReady(fd uintptr) bool {
	if d.parked {
		return true
	}
	d.parked = true
	d.pfd[0].Fd = int32(fd)
	d.pfd[0].Revents = 0
	n, errno := pollNow(d.pfd[:], &d.zeroTS)
	return errno != 0 || n > 0
}

// doReadOrPark is ReadvOrPark's RawConn callback: a readv; on EAGAIN it
// calls d.idle and parks (false); called again after the wake, it
// returns at once, reading nothing (the caller's buffers may be gone).
func (d *ioDir) doReadOrPark(fd uintptr) bool {
	if d.parked || d.doPark(fd) {
		return true
	}
	d.parked = true
	d.idle()
	return false
}

// sys does one readv or writev of d.iov.
func (d *ioDir) sys(fd uintptr) (int, unix.Errno) {
	if d.write {
		raceReadIovecs(d.iov)
		return rawWritev(fd, d.iov)
	}
	n, errno := rawReadv(fd, d.iov)
	if errno == 0 {
		raceWriteIovecs(d.iov, n)
	}
	return n, errno
}
