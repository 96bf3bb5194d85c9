package netdev

// A TAP-like backend for the stress test: one end of an AF_UNIX
// SOCK_SEQPACKET socketpair (one frame per read or write, as a TAP
// queue), non-blocking and registered with the Go netpoller, with the
// same waits as net/tap's Queue: Writev parks on EAGAIN, WaitReadable
// and WaitWritable check once with a zero-timeout poll and then park,
// and ReadvOrPark reads or calls idle and parks in one RawConn.Read (a
// frame written after its empty readv, idle included, ends the park).

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type sockQueue struct {
	f  *os.File
	rc syscall.RawConn

	// Read side (the RX engine's goroutine only).
	riov   [][]byte
	rn     int
	rerr   syscall.Errno
	parked bool
	idle   func()
	rfn    func(uintptr) bool
	// Write side (the TX engine's goroutine only).
	wiov [][]byte
	wn   int
	werr syscall.Errno
	wfn  func(uintptr) bool
}

var _ ReadvParker = (*sockQueue)(nil)

// newSockPair returns the device's end as a backend and the peer's
// descriptor (blocking), with sndbuf as both ends' send buffer (0: the
// default).
func newSockPair(tb testing.TB, sndbuf int) (*sockQueue, int) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Skip("socketpair:", err)
	}
	if sndbuf > 0 {
		for _, fd := range fds {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
		}
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		tb.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "stress-backend")
	rc, err := f.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	s := &sockQueue{f: f, rc: rc}
	s.rfn, s.wfn = s.readCB, s.writeCB
	return s, fds[1]
}

func (s *sockQueue) Close() error { return s.f.Close() }

// once runs a readv or writev until it is not interrupted: false on
// EAGAIN, else true with its count and errno in *n and *errno.
func once(op func() (int, error), n *int, errno *syscall.Errno) bool {
	for {
		c, err := op()
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		*n, *errno = c, errnoOf(err)
		return true
	}
}

func (s *sockQueue) readOnce(fd uintptr) bool {
	return once(func() (int, error) { return unix.Readv(int(fd), s.riov) }, &s.rn, &s.rerr)
}

// readCB is ReadvOrPark's callback (net/tap's doReadOrPark).
func (s *sockQueue) readCB(fd uintptr) bool {
	if s.parked || s.readOnce(fd) {
		return true
	}
	if s.idle == nil {
		return false // TryReadv's EAGAIN is reported by the caller
	}
	s.parked = true
	s.idle()
	return false
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

func (s *sockQueue) pollErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return os.ErrDeadlineExceeded
	}
	return os.ErrClosed
}

func (s *sockQueue) TryReadv(iovs [][]byte) (int, error) {
	s.riov, s.rn, s.rerr, s.idle, s.parked = iovs, 0, 0, nil, false
	got := false
	err := s.rc.Control(func(fd uintptr) { got = s.readOnce(fd) })
	s.riov = nil
	switch {
	case err != nil:
		return 0, s.pollErr(err)
	case !got:
		return 0, unix.EAGAIN
	case s.rerr != 0:
		return 0, s.rerr
	}
	return s.rn, nil
}

func (s *sockQueue) ReadvOrPark(iovs [][]byte, idle func()) (int, bool, error) {
	s.riov, s.rn, s.rerr, s.idle, s.parked = iovs, 0, 0, idle, false
	err := s.rc.Read(s.rfn)
	s.riov, s.idle = nil, nil
	switch {
	case err != nil:
		return 0, s.parked, s.pollErr(err)
	case s.parked:
		return 0, true, nil
	case s.rerr != 0:
		return 0, false, s.rerr
	}
	return s.rn, false, nil
}

// wait is net/tap's: one zero-timeout poll, then park; no check after
// the wake.
func (s *sockQueue) wait(events int16, read bool) error {
	checked := false
	fn := func(fd uintptr) bool {
		if checked {
			return true
		}
		checked = true
		p := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(p, 0)
		return err != nil || n > 0
	}
	var err error
	if read {
		err = s.rc.Read(fn)
	} else {
		err = s.rc.Write(fn)
	}
	if err != nil {
		return s.pollErr(err)
	}
	return nil
}

func (s *sockQueue) WaitReadable() error { return s.wait(unix.POLLIN, true) }
func (s *sockQueue) WaitWritable() error { return s.wait(unix.POLLOUT, false) }

func (s *sockQueue) writeCB(fd uintptr) bool {
	return once(func() (int, error) { return unix.Writev(int(fd), s.wiov) }, &s.wn, &s.werr)
}

func (s *sockQueue) Writev(iovs [][]byte) (int, error) {
	s.wiov, s.wn, s.werr = iovs, 0, 0
	err := s.rc.Write(s.wfn)
	s.wiov = nil
	switch {
	case err != nil:
		return 0, s.pollErr(err)
	case s.werr != 0:
		return 0, s.werr
	}
	return s.wn, nil
}

func (s *sockQueue) SetReadDeadline(t time.Time) error  { return s.f.SetReadDeadline(t) }
func (s *sockQueue) SetWriteDeadline(t time.Time) error { return s.f.SetWriteDeadline(t) }
