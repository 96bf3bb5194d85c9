package fs

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds the package's only unsafe code: passing the address of
// the request engine's iovec array to preadv(2) and pwritev(2), so READ
// and WRITE move data between the host file and guest memory without a
// staging copy or an allocation (x/sys/unix's Preadv/Pwritev build a new
// iovec array per call).
//
// Why it is safe:
//   - The iovec array is a heap slice owned by the request engine and used
//     only on its goroutine; transfer never passes an empty one, and the
//     Go heap does not move objects.
//   - Each Iovec.Base points at a byte of a non-empty segment of a
//     queue.Chain (queue.AppendIovecs): guest memory (mmap'd, never moved
//     or freed by the runtime, unmapped only after every device is reset)
//     or, in tests, a Go slice the chain keeps reachable; each Iovec.Len is
//     at most the rest of its segment, so the kernel touches only bytes of
//     the chain.
//   - The uintptr conversion happens in the argument list of the Syscall6
//     call itself (unsafe.Pointer rule 4): the array stays alive and in
//     place until the call returns.

// rawIOV is preadv (or pwritev if write) at off; it returns a bare errno.
// On x86_64 the offset fits its first argument register, and the kernel
// ignores the high half it reads from the next.
func rawIOV(write bool, fd int, iov []unix.Iovec, off int64) (int, unix.Errno) {
	trap := uintptr(unix.SYS_PREADV)
	if write {
		trap = unix.SYS_PWRITEV
	}
	r, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
