package agent

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// outl and inl are the x86 OUT and IN instructions (port_amd64.s). They fault
// unless ioperm(2) granted the port first.
func outl(port uint16, val uint32)
func inl(port uint16) uint32

// ErrNoExitDevice means the probe did not find Flint's exit device (not a
// Flint VM, or an older Flint).
var ErrNoExitDevice = errors.New("no Flint exit device at its port")

// ReportStatus writes the status word to the exit device after probing it.
// It needs CAP_SYS_RAWIO (PID 1 in the guest has it).
func ReportStatus(word uint32) error {
	if err := unix.Ioperm(exitdev.Base, exitdev.Size, 1); err != nil {
		return fmt.Errorf("ioperm 0x%x: %w", exitdev.Base, err)
	}
	if got := inl(exitdev.Base); got != exitdev.Magic {
		return fmt.Errorf("%w (read 0x%08x)", ErrNoExitDevice, got)
	}
	outl(exitdev.Base, word)
	return nil
}
