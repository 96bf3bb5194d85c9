package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flintvm/flint/internal/testenv"
)

// TestMain runs the command itself when the test binary is re-executed
// with BOOTPATH_RUN_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("BOOTPATH_RUN_MAIN") == "1" {
		os.Args = os.Args[:1] // the command takes no arguments
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBootpathProbe: the command's exit status and output are
// testenv.CanBootStockKernels's answer on this machine.
func TestBootpathProbe(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOOTPATH_RUN_MAIN=1")
	out, err := cmd.Output()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	ok, why := testenv.CanBootStockKernels()
	got := strings.TrimSpace(string(out))
	switch {
	case ok && (code != 0 || got != ""):
		t.Errorf("stock kernels boot here, but bootpath exited %d saying %q", code, got)
	case !ok && (code != 1 || got != why):
		t.Errorf("bootpath exited %d saying %q, want 1 and %q", code, got, why)
	}
}
