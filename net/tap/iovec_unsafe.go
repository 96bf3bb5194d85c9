package tap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds the package's only unsafe code: passing the address of
// the Queue's iovec array, and of an ifreq, to the kernel.
//
// Why it is safe:
//   - The iovec array is a heap slice owned by the Queue's ioDir and used
//     only under ioDir.mu; it is non-empty (the caller checks) and stays
//     reachable through the ioDir for the whole system call, and the Go
//     heap does not move objects.
//   - Each Iovec.Base is a *byte into a caller buffer from the [][]byte the
//     caller passed; the caller's slice keeps the buffer alive until Readv
//     or Writev returns, and the ioDir drops the pointers before returning.
//     Buffers outside the Go heap (mmap'd guest memory) are never moved or
//     freed by the runtime at all.
//   - The uintptr conversions happen in the argument list of the
//     unix.Syscall/RawSyscall call itself, the form the unsafe.Pointer
//     rules allow (rule 4): the compiler keeps the referenced objects alive
//     and in place until the call returns.
//   - readv, writev and the zero-timeout ppoll are raw system calls (no
//     entersyscall): every TAP descriptor is non-blocking (newQueue sets
//     O_NONBLOCK before anything else sees it) and ppoll's timeout is zero,
//     so none of them can block while holding the goroutine's P. Skipping
//     entersyscall matters because the first ordinary system call after an
//     idle spell wakes the runtime's sysmon thread, which then polls every
//     20 µs for a millisecond: issue 15's profiles put sysmon at 29-47% of
//     net-backend's CPU under iperf3. The device engine's nudge
//     (virtio/loop.go) still wakes sysmon when engines run without waiting.
//   - The PollFd array passed to ppoll is the ioDir's, used under ioDir.mu
//     like the iovecs, and the Timespec is the ioDir's zeroTS.
//   - The kernel writes at most Len bytes through each iovec (readv) or only
//     reads them (writev); Len is exactly len(b) of the buffer it came
//     from.
//   - The ifreq passed to SIOCGIFHWADDR is a local struct of exactly the
//     kernel's struct ifreq size (40 bytes on 64-bit Linux; the kernel
//     copies sizeof(struct ifreq)).

func rawReadv(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

func rawWritev(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// pollNow is ppoll(2) with a zero timeout, raw: the number of ready
// descriptors in pfd, or the error.
func pollNow(pfd []unix.PollFd, zero *unix.Timespec) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd[0])), uintptr(len(pfd)),
		uintptr(unsafe.Pointer(zero)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// ifreqHWAddr is struct ifreq with the union read as a struct sockaddr
// (ifr_hwaddr): family, then the address bytes.
type ifreqHWAddr struct {
	name   [unix.IFNAMSIZ]byte
	family uint16
	data   [14]byte
	_      [8]byte // rest of the 24-byte union
}

func init() {
	if unsafe.Sizeof(ifreqHWAddr{}) != unsafe.Sizeof(unix.Ifreq{}) {
		panic("tap: ifreqHWAddr does not match struct ifreq")
	}
}

// getHWAddr reads the TAP's MAC address with SIOCGIFHWADDR on its own file
// descriptor (the TAP driver answers it without a name).
func getHWAddr(fd int, mac *[6]byte) error {
	var r ifreqHWAddr
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFHWADDR, uintptr(unsafe.Pointer(&r)))
	if e != 0 {
		return e
	}
	copy(mac[:], r.data[:6])
	return nil
}
