package virtio

import (
	"syscall"
	"unsafe"
)

// rawRead is read(2) of fd into b (non-empty) without the runtime's
// system-call bookkeeping (syscall.RawSyscall). Only for a non-blocking
// fd: the call must never block, or it would hold its P.
//
// Why it is safe: b is a non-empty Go slice the caller keeps alive for the
// call (kickReader.buf, a field of a live Engine); the kernel writes at
// most len(b) bytes at &b[0]; the uintptr conversion happens in the
// argument list of the RawSyscall call itself, the form the unsafe.Pointer
// rules allow (rule 4).
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), errno
}
