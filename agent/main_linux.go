package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// IsAgent reports whether this process is the agent: PID 1, started as
// /init, with Flint's Spec in its root. (Flint run as PID 1 of a container
// is not: it is not called init, and has no Spec.)
func IsAgent() bool {
	if os.Getpid() != 1 || filepath.Base(os.Args[0]) != "init" {
		return false
	}
	_, err := os.Stat(SpecPath)
	return err == nil
}

// Main is the agent's whole life as PID 1: read the Spec, run it, report the
// status word, power off. It never returns (PID 1 must not exit: the kernel
// would panic).
func Main() {
	catchInitSignals(os.Stderr)
	word := runSpecFile(SpecPath)
	if err := ReportStatus(word); err != nil {
		// The host sees no report and calls the run a boot failure; the
		// console line says what the status was.
		logf(os.Stderr, "reporting %s (0x%08x): %v", describe(word), word, err)
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf(os.Stderr, "power off: %v", err)
	}
	select {}
}

// runSpecFile reads the Spec at path and runs it, logging a failed step.
func runSpecFile(path string) uint32 {
	f, err := os.Open(path)
	if err != nil {
		logf(os.Stderr, "%v", err)
		return exitdev.AgentFailed(exitdev.StageEarly, uint16(errnoOf(err)))
	}
	s, err := DecodeSpec(f)
	f.Close()
	if err != nil {
		logf(os.Stderr, "%v", err)
		return exitdev.AgentFailed(exitdev.StageEarly, uint16(syscall.EINVAL))
	}
	word, err := Run(s, Linux{})
	if err != nil {
		logf(os.Stderr, "%v", err)
	}
	return word
}

func errnoOf(err error) syscall.Errno {
	return (&StepError{Err: err}).Errno()
}

// describe names a status word for logs.
func describe(word uint32) string {
	r, err := exitdev.Decode(word)
	if err != nil {
		return fmt.Sprintf("invalid status 0x%08x", word)
	}
	return r.String()
}
