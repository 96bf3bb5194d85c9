package kvm

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds every use of package unsafe in kvm. Each is one of:
//   - passing a pointer to a Go value to an ioctl for the duration of the
//     call: the value is referenced by the call's frame (the pointer is
//     converted in the call expression, as unsafe.Pointer rule 4 requires),
//     and the struct layout matches the kernel's (TestABISizes);
//   - the address of a guest RAM mapping for KVM_SET_USER_MEMORY_REGION: the
//     bytes come from mmap, are never moved by the Go GC, and stay mapped
//     until the VM is closed;
//   - atomic access to the kvm_run page's first word, which the kernel and
//     the kicking goroutine share: the page is an mmap of the vCPU fd,
//     page-aligned, so the word is 4-byte aligned.

// ioctl issues a request with an integer argument. EINTR is retried for all
// requests but KVM_RUN (whose EINTR callers must see), which uses runIoctl.
func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return r, e
		}
		return r, nil
	}
}

// ioctlPtr issues a request whose argument points at p.
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return r, e
		}
		return r, nil
	}
}

// runIoctl issues KVM_RUN once; an EINTR (a kick, or any signal) is returned.
func runIoctl(fd int) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmRun, 0)
	if e != 0 {
		return e
	}
	return nil
}

// varIoctl passes a kernel struct made of a header followed by a flexible
// array of entries (kvm_cpuid2, kvm_msrs, kvm_irq_routing). entries is
// copied into an 8-byte aligned buffer, the ioctl runs, and the entries are
// copied back (for _IOWR requests that fill them). It returns the header as
// the kernel left it.
func varIoctl[H, E any](fd int, req uintptr, hdr H, entries []E) (H, uintptr, error) {
	hsize := unsafe.Sizeof(hdr)
	var e E
	esize := unsafe.Sizeof(e)
	total := hsize + esize*uintptr(len(entries))
	buf := make([]uint64, (total+7)/8)
	base := unsafe.Pointer(unsafe.SliceData(buf))
	*(*H)(base) = hdr
	if len(entries) > 0 {
		copy(unsafe.Slice((*E)(unsafe.Add(base, hsize)), len(entries)), entries)
	}
	r, err := ioctlPtr(fd, req, base)
	out := *(*H)(base)
	if len(entries) > 0 {
		copy(entries, unsafe.Slice((*E)(unsafe.Add(base, hsize)), len(entries)))
	}
	return out, r, err
}

// hostAddr is the host virtual address of b's first byte (an mmap).
func hostAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// runWord returns the kvm_run page's first 32-bit word
// (request_interrupt_window, immediate_exit, padding) for atomic updates.
func runWord(run []byte) *uint32 {
	return (*uint32)(unsafe.Pointer(unsafe.SliceData(run)))
}

// immediateExitBit is immediate_exit (byte 1 of kvm_run) within runWord on
// little-endian x86.
const immediateExitBit = 1 << 8

func setImmediateExit(run []byte, on bool) {
	if on {
		atomic.OrUint32(runWord(run), immediateExitBit)
	} else {
		atomic.AndUint32(runWord(run), ^uint32(immediateExitBit))
	}
}

func setStruct[T any](fd int, req uintptr, v *T) error {
	_, err := ioctlPtr(fd, req, unsafe.Pointer(v))
	return err
}
