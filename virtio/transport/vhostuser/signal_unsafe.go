package vhostuser

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// callOne is the 8-byte little-endian 1 a call fd gets per notification.
var callOne = [8]byte{1}

// rawWrite8 writes callOne to fd with a raw write(2) (no runtime
// system-call bookkeeping). Only for the call fds, which the session made
// non-blocking when it took them (SET_VRING_CALL): the write never
// blocks.
//
// Why it is safe: callOne is a package-level array, never moved or freed;
// the kernel reads 8 bytes from it; the uintptr conversion happens in the
// argument list of the RawSyscall call itself, the form the unsafe.Pointer
// rules allow (rule 4).
func rawWrite8(fd int) unix.Errno {
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&callOne[0])), uintptr(len(callOne)))
	return errno
}
