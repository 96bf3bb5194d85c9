// Package eventfd signals an eventfd (or a pipe read 8 bytes at a time),
// the one write every interrupt and queue kick makes. It imports nothing
// from the module, so devices, transports and vmm may all use it.
package eventfd

import "golang.org/x/sys/unix"

// one is the 8-byte little-endian 1 that adds 1 to an eventfd's counter.
var one = [8]byte{1}

// Signal writes the 8-byte little-endian 1 to fd: an eventfd adds it to its
// counter, a pipe carries it as one notification. It retries on EINTR and
// never blocks on a non-blocking fd: EAGAIN (a saturated counter or a full
// pipe) already reads as "signalled" and returns nil. Any other error is
// returned as is (unix.EPIPE for a pipe whose reader closed). It does not
// allocate.
func Signal(fd int) error {
	for {
		_, err := unix.Write(fd, one[:])
		switch err {
		case nil, unix.EAGAIN:
			return nil
		case unix.EINTR:
			continue
		}
		return err
	}
}
