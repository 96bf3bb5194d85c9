package vmm

import (
	"errors"
	"testing"

	"github.com/flintvm/flint/vmm/vmmtest"
)

// Config.BeforeRun runs once, before the guest; its error stops the VM
// without running the guest (the console stays empty).
func TestBeforeRun(t *testing.T) {
	calls := 0
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.Print("ran"), vmmtest.ResetViaI8042), func(c *Config) {
		c.BeforeRun = func() error { calls++; return nil }
	})
	if calls != 1 || res.Reason != stopReset || out != "ran" {
		t.Fatalf("hook called %d times; stopped with %v, console %q", calls, res.Reason, out)
	}
	refused := errors.New("no filter")
	res, out = bootTiny(t, vmmtest.Concat(vmmtest.Print("ran"), vmmtest.ResetViaI8042), func(c *Config) {
		c.BeforeRun = func() error { return refused }
	})
	if res.Reason != stopError || !errors.Is(res.Err, refused) || res.ExitCode() != ExitVMMErr || out != "" {
		t.Fatalf("stopped with %v (%v) code %d, console %q; want the hook's error and no guest run", res.Reason, res.Err, res.ExitCode(), out)
	}
}
