package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// gone reports the paths that exist, as errors.
func gone(t *testing.T, when string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s: %s left behind", when, filepath.Base(p))
		}
	}
}

func there(t *testing.T, when string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
}

// TestFailedLaunchLeavesNoFiles: `flint run --config` whose VM fails to
// build (vmm.New: the vsock's socket cannot be bound) leaves no empty log,
// metrics or console file behind; files that were there stay, and a VM
// that runs keeps its files, empty or not.
func TestFailedLaunchLeavesNoFiles(t *testing.T) {
	testenv.RequireTinyGuests(t)
	dir := t.TempDir()
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.PowerOffViaACPI))
	logf, metrics, con := filepath.Join(dir, "flint.log"), filepath.Join(dir, "metrics.json"), filepath.Join(dir, "console.log")
	config := func(vsock string) string {
		return writeFile(t, "vm.json", fmt.Appendf(nil, `{"boot-source": {"kernel_image_path": %q},
			"machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
			"logger": {"log_path": %q, "level": "Error"}, "metrics": {"metrics_path": %q},
			"flint": {"console": %q}%s}`, k, logf, metrics, "file:"+con, vsock))
	}
	bad := config(fmt.Sprintf(`, "vsock": {"guest_cid": 3, "uds_path": %q}`, filepath.Join(dir, "no-dir", "v.sock")))
	run := func(cfg string) (int, string) {
		var stderr bytes.Buffer
		return newApp(io.Discard, &stderr, launchVM).run([]string{"flint", "run", "--no-seccomp", "--config", cfg}), stderr.String()
	}
	if code, stderr := run(bad); code == 0 {
		t.Fatalf("the vsock in a missing directory: exit 0 (%s)", stderr)
	}
	gone(t, "failed launch", logf, metrics, con)
	for _, p := range []string{logf, metrics, con} {
		os.WriteFile(p, nil, 0o600)
	}
	run(bad)
	there(t, "failed launch, files there before", logf, metrics, con)
	for _, p := range []string{logf, metrics, con} {
		os.Remove(p)
	}
	if code, stderr := run(config("")); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	there(t, "after a run", logf, metrics, con)
}

// TestFailedLaunchLogFile: the log file the config names, which cmd/flint
// opens, goes when the launch fails before the guest starts and stays
// when the guest started (the launcher keeps it, as vmm.Machine.Run does).
func TestFailedLaunchLogFile(t *testing.T) {
	logf := filepath.Join(t.TempDir(), "flint.log")
	cfg := fcConfig(t, fmt.Sprintf(`, "logger": {"log_path": %q}`, logf))
	for _, started := range []bool{false, true} {
		var stderr bytes.Buffer
		code := newApp(io.Discard, &stderr, func(c vmm.Config, _ io.Writer) int {
			if !started {
				return vmm.ExitVMMErr
			}
			for _, f := range c.Outputs {
				f.Keep()
			}
			return 0
		}).run([]string{"flint", "run", "--no-seccomp", "--config", cfg})
		if started {
			there(t, "a run", logf)
		} else {
			gone(t, "a failed launch", logf)
		}
		if code == 0 != started {
			t.Fatalf("exit %d: %s", code, &stderr)
		}
	}
}

// TestFirecrackerFailureLeavesNoFiles: `flint firecracker --log-path
// --metrics-path` opens both at once; refused later (a missing
// --config-file), it leaves no empty file behind, and none that was there
// is removed.
func TestFirecrackerFailureLeavesNoFiles(t *testing.T) {
	dir := t.TempDir()
	logf, metrics := filepath.Join(dir, "fc.log"), filepath.Join(dir, "metrics.json")
	args := []string{"flint", "firecracker", "--no-api", "--config-file", filepath.Join(dir, "missing.json"), "--log-path", logf, "--metrics-path", metrics}
	r := newFCRun()
	if code := r.run(args...); code != vmm.ExitUsage {
		t.Fatalf("exit %d: %s", code, &r.stderr)
	}
	gone(t, "refused", logf, metrics)
	os.WriteFile(logf, nil, 0o600)
	os.WriteFile(metrics, nil, 0o600)
	newFCRun().run(args...)
	there(t, "refused, files there before", logf, metrics)
}

// TestCommandModeConfigErrorLeavesNoReport: a command-mode VM refused as
// the user's error (vmm.ConfigError) writes no report, and the --report
// and --junit files it created go; one that was there stays.
func TestCommandModeConfigErrorLeavesNoReport(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	tree := fakeTree(t)
	dir := t.TempDir()
	rep, junit := filepath.Join(dir, "report.json"), filepath.Join(dir, "junit.xml")
	for _, before := range []bool{false, true} {
		if before {
			os.WriteFile(rep, nil, 0o644)
		}
		var stdout, stderr bytes.Buffer
		a := newApp(&stdout, &stderr, nil)
		a.installFilter = recordFilter
		a.launchCmd = func(vmm.Config) (vmm.CommandResult, error) {
			return vmm.CommandResult{}, &vmm.ConfigError{Err: fmt.Errorf("tap0: no such device")}
		}
		code := a.run([]string{"flint", "run", "--kernel", k, "--modules", tree, "--no-host-root", "--report", rep, "--junit", junit, "--", "true"})
		if code != vmm.ExitUsage {
			t.Fatalf("exit %d: %s", code, &stderr)
		}
		gone(t, "refused", junit)
		if before {
			there(t, "refused, report there before", rep)
		} else {
			gone(t, "refused", rep)
		}
	}
}
