package umlhost

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	MaybeExec()
	os.Exit(m.Run())
}

const probeEnv = "UMLHOST_TEST_PROBE"

// TestFilterRefusesOnlyXstate runs probe (below) under Exec with the
// workaround forced: PTRACE_GETREGSET of NT_X86_XSTATE fails with EIO,
// NT_PRSTATUS still works, and UML's command line got GuestTunables.
func TestFilterRefusesOnlyXstate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := CommandContext(ctx, os.Args[0], "-test.run=^TestProbe$", "-test.v")
	cmd.Env = append(cmd.Env, forceEnv+"=1", probeEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	for _, want := range []string{"xstate: input/output error", "prstatus: ok", "tunables: ok", forceEnv + "=1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}
}

// TestProbe is the program TestFilterRefusesOnlyXstate runs: it traces a
// child and reads two of its register sets.
func TestProbe(t *testing.T) {
	if os.Getenv(probeEnv) != "1" {
		t.Skip("run by TestFilterRefusesOnlyXstate")
	}
	if os.Args[len(os.Args)-1] == GuestTunables {
		t.Log("tunables: ok")
	}
	runtime.LockOSThread() // ptrace requests must come from the tracing thread
	defer runtime.UnlockOSThread()
	child := exec.Command("/bin/true")
	child.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(child.Process.Pid, &ws, 0, nil); err != nil || !ws.Stopped() {
		t.Fatalf("child not stopped at exec: %v %v", err, ws)
	}
	report := func(name string, note uintptr) {
		err := getRegset(child.Process.Pid, note, make([]byte, 64<<10))
		switch {
		case err == nil:
			t.Logf("%s: ok", name)
		case errors.Is(err, unix.EIO):
			t.Logf("%s: %v", name, err)
		default:
			t.Errorf("%s: %v", name, err)
		}
	}
	report("xstate", ntX86Xstate)
	report("prstatus", 1) // NT_PRSTATUS
}
