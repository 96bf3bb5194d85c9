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
	_, out := childSetup(t, 0o755)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, childEnv+"=") {
			env = append(env, e)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(env, launcherEnv+"=1", "JAIL_TEST_PDEATH=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	child := 0
	for i := 0; i < 500 && child == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		if b, _ := os.ReadFile(out.Name()); !strings.Contains(string(b), "entered") {
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
		t.Fatalf("no jailed child entered its jail:\n%s", b)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for i := 0; i < 300; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		// Gone, or a zombie its new parent has not reaped.
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(child, syscall.SIGKILL)
	t.Fatal("the jailed child outlived its launcher")
}
