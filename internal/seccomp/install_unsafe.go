package seccomp

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install builds the filter for mode and installs it on every thread of the
// process; threads created later inherit it. Mode Off installs nothing.
// There is no way back: call it once setup is complete.
func Install(mode Mode) error {
	return InstallWith(Options{Mode: mode})
}

// InstallWith is Install with the filter's options (FileServer for a VMM
// serving virtio-fs); a zero PID means this process's.
func InstallWith(o Options) error {
	if o.Mode == Off {
		return nil
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	prog, err := Build(o)
	if err != nil {
		return err
	}
	// Lazily initialised state that would otherwise be set up after the
	// filter, by calls it refuses: the local time zone (slog's timestamps
	// open /etc/localtime on first use).
	_ = time.Local.String()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	return setFilter(prog)
}

// setFilter calls seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC).
//
// unsafe: the kernel reads the sock_fprog and the instructions it points to
// during the call only (it copies the program); fprog and prog are
// referenced by this frame until the call returns, and the pointer is
// converted in the call expression as unsafe.Pointer rule 4 requires.
func setFilter(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return fmt.Errorf("seccomp: filter of %d instructions", len(prog))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", e)
	}
	if r != 0 {
		// With TSYNC, a positive result is a thread that could not be
		// synchronised (it has a filter of its own that is not an ancestor).
		return fmt.Errorf("seccomp: thread %d could not take the filter", r)
	}
	return nil
}
