package agent

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// initSignals are the signals that, sent by another process, make the Go
// runtime end the agent (SIGHUP, SIGINT, SIGTERM) or dump its goroutines
// and exit (SIGQUIT, SIGABRT and the other "throw" signals); busybox's
// halt and poweroff send SIGUSR1 and SIGUSR2, which the runtime drops
// silently. PID 1 exiting panics the kernel: `flint run -- reboot` in a
// busybox root (its reboot sends init SIGTERM), or `kill -TERM 1`, ended
// the run as Flint's own failure (125, "its guest agent died").
var initSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
	syscall.SIGABRT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGSTKFLT, syscall.SIGPWR, syscall.SIGSYS}

// catchInitSignals makes the agent outlive initSignals, as an init that
// has no use for them does: each is caught (so a command the agent
// starts gets the default action for it, not an inherited SIG_IGN) and
// logged to log the first time it comes. The run still ends when the
// command does.
func catchInitSignals(log io.Writer) {
	ch := make(chan os.Signal, len(initSignals))
	signal.Notify(ch, initSignals...)
	go func() {
		seen := map[os.Signal]bool{}
		for sig := range ch {
			if !seen[sig] {
				seen[sig] = true
				logf(log, "ignoring %s sent to PID 1 (busybox's reboot, halt and poweroff signal init; the run ends when the command exits)", unix.SignalName(sig.(syscall.Signal)))
			}
		}
	}()
}
