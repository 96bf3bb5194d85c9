package blk

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds the package's only unsafe code: passing the address of
// the engine's iovec array to preadv(2) and pwritev(2). x/sys/unix's
// Preadv/Pwritev build a fresh iovec array per call (an allocation once a
// request has more than a few segments), which the data path must avoid.
//
// Why it is safe:
//   - The iovec array is a heap slice owned by one engine and used only by
//     that engine's goroutine; it is non-empty (the caller checks) and the
//     Go heap does not move objects.
//   - Each Iovec.Base points at a byte of a non-empty segment of a
//     queue.Chain: a view into guest memory (mmap'd, never moved or freed
//     by the runtime, and unmapped only after every device is reset) or,
//     in tests, into a Go slice that the chain keeps reachable.
//   - Each Iovec.Len is at most the length of the segment it came from, so
//     the kernel reads (pwritev) or writes (preadv) only bytes of that
//     segment.
//   - The uintptr conversion happens in the argument list of the
//     unix.Syscall6 call itself, the form the unsafe.Pointer rules allow
//     (rule 4): the compiler keeps the array alive and in place until the
//     call returns.

// halfLong is half the width of a C long: preadv's offset travels as two
// longs, low then high, and the kernel shifts the high one by two halves.
const halfLong = unsafe.Sizeof(uintptr(0)) * 4

// preadv and pwritev are the raw system calls; they return a bare errno
// (no allocation).
func preadv(fd int, iov []unix.Iovec, off int64) (int, unix.Errno) {
	return rawIOV(unix.SYS_PREADV, fd, iov, off)
}

func pwritev(fd int, iov []unix.Iovec, off int64) (int, unix.Errno) {
	return rawIOV(unix.SYS_PWRITEV, fd, iov, off)
}

func rawIOV(trap uintptr, fd int, iov []unix.Iovec, off int64) (int, unix.Errno) {
	r, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)),
		uintptr(off), uintptr(uint64(off)>>halfLong>>halfLong), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
