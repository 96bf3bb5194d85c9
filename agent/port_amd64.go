package agent

import (
	"errors"
	"fmt"
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

// exitPort is the exit device as the agent sees it: probed once (ioperm,
// then the magic), after which progress and the report are plain port
// writes.
var exitPort struct {
	once sync.Once
	err  error
}

func probeExitDevice() error {
	exitPort.once.Do(func() {
		if err := unix.Ioperm(exitdev.Base, exitdev.Size, 1); err != nil {
			exitPort.err = fmt.Errorf("ioperm 0x%x: %w", exitdev.Base, err)
			return
		}
		if got := inl(exitdev.Base); got != exitdev.Magic {
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
	outl(exitdev.Base, word)
	return nil
}

// ReportProgress tells the exit device the agent starts stage s (a no-op
// when there is no device: the report will say what went wrong).
func ReportProgress(s exitdev.Stage) {
	if probeExitDevice() == nil {
		outb(exitdev.Base+exitdev.ProgressOffset, uint8(s))
	}
}
