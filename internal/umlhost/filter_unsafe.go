package umlhost

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// installFilter loads prog as a seccomp filter for the calling thread.
//
// Safe: the kernel reads the sock_fprog and the len(prog) instructions it
// points to during the call and keeps its own copy; prog stays alive (and
// is not moved: it is passed through unsafe.Pointer in the call
// expression) until the call returns.
func installFilter(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return errno
	}
	return nil
}

// getRegset is PTRACE_GETREGSET of note for the stopped tracee pid into
// buf (tests only).
//
// Safe: the kernel writes at most len(buf) bytes into buf during the call,
// and buf and iov stay alive until it returns.
func getRegset(pid int, note uintptr, buf []byte) error {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceGetRegset, uintptr(pid), note, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
