package jail

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// launcherEnv makes the re-executed test binary a launcher (Launch with
// JAIL_TEST_SPEC), for a test that kills the launcher itself.
const launcherEnv = "JAIL_TEST_LAUNCHER"

// launcherMain is the launcher of TestJailedChildDiesWithLauncher.
func launcherMain() int {
	var s Spec
	if err := json.Unmarshal([]byte(os.Getenv("JAIL_TEST_SPEC")), &s); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		return 1
	}
	os.Setenv(childEnv, "1")
	code, err := Launch(s, []string{"jailtest", "-test.run=^$"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		return 1
	}
	return code
}

// TestJailedChildDiesWithLauncher: the jailed flint dies when its
// launcher does (a supervisor that kills the process it started must
// not leave a VM running). Launch arms a parent-death signal, and the
// kernel clears it when the child's uid and gid change in Enter: Enter
// arms it again. The test starts a launcher, waits for its child to
// have entered the jail, kills the launcher with SIGKILL (nothing
// forwarded) and wants the child gone.
func TestJailedChildDiesWithLauncher(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd, out := startLauncher(t, "JAIL_TEST_PDEATH=1")
	child := jailedChild(t, cmd, out, "entered")
	cmd.Process.Kill()
	cmd.Wait()
	wantGone(t, child)
}

// TestLauncherDiesBeforeRearm: a launcher that dies after the child's
// credential change cleared the parent-death signal and before Enter arms
// it again leaves the child to a new parent; the re-armed signal would
// wait for that one's death. Enter sees the new parent and fails, and the
// child ends instead of running the VM on.
func TestLauncherDiesBeforeRearm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd, out := startLauncher(t, "JAIL_TEST_PDEATH=1", "JAIL_TEST_PDEATH_WINDOW=1")
	child := jailedChild(t, cmd, out, "window")
	cmd.Process.Kill()
	cmd.Wait()
	wantGone(t, child)
}

// startLauncher starts the test binary as a launcher (launcherMain) of
// a jailed child with env added; both write to out.
func startLauncher(t *testing.T, env ...string) (*exec.Cmd, *os.File) {
	t.Helper()
	_, out := childSetup(t, 0o755)
	var all []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, childEnv+"=") {
			all = append(all, e)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(all, launcherEnv+"=1"), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

// jailedChild waits until out holds marker and returns the host pid of
// the launcher's child.
func jailedChild(t *testing.T, cmd *exec.Cmd, out *os.File, marker string) int {
	t.Helper()
	child := 0
	for i := 0; i < 500 && child == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		if b, _ := os.ReadFile(out.Name()); !strings.Contains(string(b), marker) {
			continue
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", cmd.Process.Pid))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			if fs := strings.Fields(string(b)); len(fs) > 0 {
				fmt.Sscan(fs[0], &child)
			}
		}
	}
	if child == 0 {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("no jailed child wrote %q:\n%s", marker, b)
	}
	return child
}

// wantGone fails the test unless process pid ends within 3 s.
func wantGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 300; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Gone, or a zombie its new parent has not reaped.
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatal("the jailed child outlived its launcher")
}
