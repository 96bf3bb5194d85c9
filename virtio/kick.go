package virtio

// Waiting for a queue's kicks without the runtime's system-call
// bookkeeping.

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// kickReader waits for kicks on a queue's kick file (an eventfd, or a
// pipe carrying 8 bytes per kick). When the file is non-blocking, it reads
// it through the file's RawConn with a raw read(2): the read never blocks
// (EAGAIN parks the goroutine in the netpoller, as os.File.Read would), so
// it needs none of entersyscall's bookkeeping, and above all it does not
// wake the runtime's sysmon thread, which os.File.Read's syscall.Read does
// whenever the process was idle: sysmon then polls every 20 µs for a
// millisecond, which the profiles of issue 15 put at a fifth of the
// net-backend's CPU. A blocking file (a caller's, never the transports')
// is read with os.File.Read as before, except an eventfd the netpoller
// watches, which with ready set is never read (see bind). It does not
// allocate per kick.
//
// With ready set (an Engine's re-check of its ring), a wait on an
// eventfd makes no system call at all, and one on a pipe one read (the
// drain) before it parks: see read.
type kickReader struct {
	f        *os.File
	rc       syscall.RawConn       // nil: read f with os.File.Read
	fn       func(fd uintptr) bool // k.read, bound once
	ready    func() bool           // true: the ring has work, do not park (nil: read first)
	eventfd  bool                  // f is an eventfd (isEventfd, at bind): with ready, never read
	blocking bool                  // f is an eventfd whose fd was blocking at bind: never read raw
	parked   bool                  // this wait's first callback ran: the next ones read
	errno    syscall.Errno         // the last raw read's error
	eof      bool                  // the last raw read returned 0 bytes
	buf      [64]byte
}

// bind makes k read f (nil: nothing).
func (k *kickReader) bind(f *os.File) {
	k.f, k.rc, k.eventfd, k.blocking = f, nil, false, false
	if f == nil {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	nonblocking, eventfd := false, false
	if cerr := rc.Control(func(fd uintptr) {
		nonblocking, eventfd = isNonblocking(fd), isEventfd(fd)
	}); cerr != nil {
		return
	}
	if !nonblocking {
		// Blocking now. A pipe's must be read, and a raw read would
		// block the thread: os.File.Read. An eventfd with ready is never
		// read, so its O_NONBLOCK does not matter (a vhost-user frontend
		// shares the open file and may clear it: the transport's
		// non-blocking file is then blocking, and a read would hang the
		// device's reset until the next kick); only the netpoller must
		// watch the file, which it does when os.NewFile found it
		// non-blocking. A file made blocking has no deadlines (and
		// RawConn.Read could not park on it): os.File.Read too.
		// SetReadDeadline's zero is what Engines.Start sets next anyway.
		if !eventfd || f.SetReadDeadline(time.Time{}) != nil {
			return
		}
		k.blocking = true
	}
	k.eventfd = eventfd
	k.rc = rc
	if k.fn == nil {
		k.fn = k.read
	}
}

// errKickEOF: the kick pipe's writer closed it.
var errKickEOF = errors.New("virtio: kick file closed by its writer")

// wait blocks until at least one kick arrived and consumes those that
// did (a pipe may hold several), or until f's read deadline passes
// (an os.IsTimeout error: how a device's reset wakes it) or f fails.
// With ready set it also returns when ready reports work, after
// draining a pipe's queued kicks, and a kick's end of file may go
// unseen (the engine waits for the reset after EOF anyway); on an
// eventfd it returns only when ready does (or at the deadline) and
// never reads.
func (k *kickReader) wait() error {
	if k.rc == nil || k.blocking && k.ready == nil {
		_, err := k.f.Read(k.buf[:])
		return err
	}
	k.errno, k.eof, k.parked = 0, false, false
	if err := k.rc.Read(k.fn); err != nil {
		return err
	}
	switch {
	case k.errno != 0:
		return k.errno
	case k.eof:
		return io.EOF
	}
	return nil
}

// read is the RawConn callback. RawConn.Read first forgets the readiness
// the netpoller recorded for the file (internal/poll's prepareRead, i.e.
// runtime_pollReset), then calls read, and parks while read returns
// false until the poller reports the file readable. So a kick whose epoll
// edge the poller took before this wait began is forgotten, and only a
// check made inside the first call (after the reset) can stand in for
// it:
//
//   - First call, with ready set: drain the kicks queued (read until
//     EAGAIN), then ready re-checks the ring (memory only). A kick
//     matters only for the buffers it announces, and the driver makes
//     those available before it kicks: if the ring is still empty now,
//     any kick that announces buffers is written after this point and
//     its edge (EPOLLET raises one on every write to an empty pipe, and
//     since Linux 5.14 on every write to a pipe that was ever polled)
//     wakes the parked goroutine. The drain is what keeps a pipe from
//     filling: a wait whose ring check finds work at once (the kick came
//     between the engine's last pop and the check) must consume that
//     kick too, or a busy engine would leave one kick per wait in the
//     pipe until it was full, the driver's next kick failed and the
//     engine, once parked on the full pipe, was woken by nothing. This
//     holds for the first wait after bind too (a fresh file's epoll
//     registration reporting it readable is one spurious wake at most).
//   - First call without ready (a reader with no ring): read at once, as
//     a kick may be queued.
//   - After a wake: read, and drain while the buffer comes back full (a
//     pipe holding more than 8 kicks). EAGAIN with nothing read is stale
//     readiness (an edge for kicks an earlier read consumed, whose
//     buffers the engine processed after that read): park again. 0 bytes
//     is EOF.
//
// An eventfd with ready set is never read: every call, the first and
// each after a wake, is the ring check alone (false parks again, so a
// stale wake costs no system call either). The kicks stay in its
// counter, and that loses none: the kernel wakes the file's waiters on
// every write (fs/eventfd.c, eventfd_write) and every in-kernel signal
// (eventfd_signal_mask, KVM's ioeventfd) whatever the counter holds
// (wake_up_locked_poll whenever the wait queue is active), and the
// netpoller's epoll registration is edge-triggered, so each kick raises
// a new edge; the counter saturates at 2^64-1 for in-kernel signals
// (eventfd_signal in kernels before 6.8 likewise), and a frontend
// writing 1 per kick would need 2^64 kicks to block (one that writes
// more blocks only its own kicks). The check after a wake is as safe as
// the first: only RawConn.Read's start forgets readiness, so an edge
// raised after a false answer wakes the goroutine or keeps it from
// parking. Pipes and other files must still be read: 8 bytes per kick
// would fill a pipe and block its writer.
//
// A wait that saw a reset's deadline never gets here: RawConn.Read
// returns the timeout before or instead of calling it.
func (k *kickReader) read(fd uintptr) bool {
	if k.ready != nil && k.eventfd {
		return k.ready()
	}
	first := !k.parked
	k.parked = true
	got := false
	for {
		n, errno := rawRead(fd, k.buf[:])
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			if first && k.ready != nil {
				return k.ready()
			}
			return got
		case errno == 0 && n == len(k.buf):
			got = true
			continue
		}
		k.errno, k.eof = errno, errno == 0 && n == 0 && !got
		return true
	}
}

// isNonblocking reports whether fd has O_NONBLOCK (false if fcntl fails).
func isNonblocking(fd uintptr) bool {
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// nudgeEvery is how many flushes an engine makes without waiting (for a
// kick, its backend or a rate limiter) before it calls nudge.
const nudgeEvery = 256

// nudge makes one ordinary system call (entersyscall), which wakes the
// runtime's sysmon thread if it sleeps. With the data path's calls raw
// (the kick reads here, vhost-user's call-fd writes, and the TAP's if it
// makes them raw), sysmon, asleep since the process was last idle, is
// woken by nothing while engines run: and sysmon is what preempts a
// goroutine that runs 10 ms without parking and polls the network when
// no P does, so engines busy on every P would starve the rest (the
// vhost-user control goroutine) until one waits. An engine that waits
// often never calls it; a busy one calls it every nudgeEvery flushes
// (at most every 64 * 256 chains). A variable for the tests.
var nudge = func() { syscall.Syscall(syscall.SYS_GETPID, 0, 0, 0) }
