package vhostuser

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// callOne is the 8-byte little-endian 1 a call fd gets per notification.
var callOne = [8]byte{1}

// rawWrite8 writes callOne to fd with a raw write(2) (no runtime
// system-call bookkeeping). Only for the call and err fds that are not
// sockets, which the session made non-blocking when it took them
// (notifyFD says what a frontend can still do about that).
//
// Why it is safe: callOne is a package-level array, never moved or freed;
// the kernel reads 8 bytes from it; the uintptr conversion happens in the
// argument list of the RawSyscall call itself, the form the unsafe.Pointer
// rules allow (rule 4).
func rawWrite8(fd int) unix.Errno {
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&callOne[0])), uintptr(len(callOne)))
	return errno
}

// rawSend8 sends callOne on socket fd with a raw sendto(2) flagged
// MSG_DONTWAIT (this call never blocks, whatever the file's O_NONBLOCK)
// and MSG_NOSIGNAL (a closed peer is EPIPE, never SIGPIPE).
//
// Why it is safe: as rawWrite8's; the destination address is nil (0,
// length 0): the socket is connected.
func rawSend8(fd int) unix.Errno {
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&callOne[0])), uintptr(len(callOne)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	return errno
}
