package agent

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/devices/exitdev"
)

const signalChildEnv = "FLINT_AGENT_TEST_SIGNAL_CHILD"

// TestInitSignalsDoNotEndAgent: the signals a command (busybox's reboot,
// poweroff and halt; kill -TERM 1) sends PID 1 leave the agent running:
// the Go runtime ended it on SIGTERM, SIGINT and SIGHUP (and dumped and
// exited on SIGQUIT and SIGABRT), and PID 1's exit panics the kernel, the
// run then Flint's own failure (125). A child process stands in for the
// agent; the command it then runs still dies of SIGTERM (no SIG_IGN
// inherited).
func TestInitSignalsDoNotEndAgent(t *testing.T) {
	if os.Getenv(signalChildEnv) == "1" {
		signalChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitSignalsDoNotEndAgent$", "-test.count=1")
	cmd.Env = append(os.Environ(), signalChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "survived: killed by signal 15\n") {
		t.Fatalf("the stand-in agent: %v\n%s", err, out)
	}
	for _, sig := range []string{"SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGABRT", "SIGUSR2"} {
		if strings.Count(string(out), "flint-agent: ignoring "+sig+" sent to PID 1") != 1 {
			t.Errorf("no single log line for %s:\n%s", sig, out)
		}
	}
}

func signalChild() {
	catchInitSignals(os.Stdout)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT,
		syscall.SIGABRT, syscall.SIGUSR2, syscall.SIGTERM} {
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	s := &Spec{Argv: []string{"sh", "-c", "kill -TERM $$; exit 0"}, Env: []string{"PATH=/usr/bin:/bin"}}
	fmt.Printf("survived: %s\n", describe(RunCommand(s, func(exitdev.Stage) {})))
}
