package virtio

// Waiting for a queue's kicks without the runtime's system-call
// bookkeeping.

import (
	"errors"
	"io"
	"os"
	"syscall"

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
// is read with os.File.Read as before. It does not allocate per kick.
type kickReader struct {
	f     *os.File
	rc    syscall.RawConn       // nil: read f with os.File.Read
	fn    func(fd uintptr) bool // k.read, bound once
	errno syscall.Errno         // the last raw read's error
	eof   bool                  // the last raw read returned 0 bytes
	buf   [64]byte
}

// bind makes k read f (nil: nothing).
func (k *kickReader) bind(f *os.File) {
	k.f, k.rc = f, nil
	if f == nil {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	nonblocking := false
	if cerr := rc.Control(func(fd uintptr) { nonblocking = isNonblocking(fd) }); cerr != nil || !nonblocking {
		return
	}
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
func (k *kickReader) wait() error {
	if k.rc == nil {
		_, err := k.f.Read(k.buf[:])
		return err
	}
	k.errno, k.eof = 0, false
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

// read is the RawConn callback: one read(2), retried on EINTR; false
// (wait for readability) on EAGAIN.
func (k *kickReader) read(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, k.buf[:])
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		k.errno, k.eof = errno, errno == 0 && n == 0
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
