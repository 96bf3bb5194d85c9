package agent

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// outl, inl and outb are the x86 OUT and IN instructions (port_amd64.s).
// They fault unless ioperm(2) granted the port first.
func outl(port uint16, val uint32)
func inl(port uint16) uint32
func outb(port uint16, val uint8)

// ErrNoExitDevice means the probe did not find Flint's exit device (not a
// Flint VM, or an older Flint).
var ErrNoExitDevice = errors.New("no Flint exit device at its port")

// exitPort is the exit device as the agent sees it: probed once (the
// magic), after which progress and the report are plain port writes.
var exitPort struct {
	once sync.Once
	err  error
}

// withPorts runs f on one OS thread that may use the exit device's ports.
// ioperm(2) grants them to the calling thread only, and the Go scheduler
// moves goroutines between threads: without the lock, the IN or OUT would
// run where it faults (SIGSEGV, and PID 1 dies with the guest).
func withPorts(f func()) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Ioperm(exitdev.Base, exitdev.Size, 1); err != nil {
		return fmt.Errorf("ioperm 0x%x: %w", exitdev.Base, err)
	}
	f()
	return nil
}

func probeExitDevice() error {
	exitPort.once.Do(func() {
		var got uint32
		if exitPort.err = withPorts(func() { got = inl(exitdev.Base) }); exitPort.err == nil && got != exitdev.Magic {
			exitPort.err = fmt.Errorf("%w (read 0x%08x)", ErrNoExitDevice, got)
		}
	})
	return exitPort.err
}

// ReportStatus writes the status word to the exit device after probing it.
// It needs CAP_SYS_RAWIO (PID 1 in the guest has it).
func ReportStatus(word uint32) error {
	if err := probeExitDevice(); err != nil {
		return err
	}
	return withPorts(func() { outl(exitdev.Base, word) })
}

// ReportProgress tells the exit device the agent starts stage s (a no-op
// when there is no device: the report will say what went wrong).
func ReportProgress(s exitdev.Stage) {
	if probeExitDevice() == nil {
		_ = withPorts(func() { outb(exitdev.Base+exitdev.ProgressOffset, uint8(s)) })
	}
}
