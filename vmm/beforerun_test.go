package vmm

import (
	"errors"
	"testing"

	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// Config.BeforeRun runs once, before the guest, with the VM's filter
// options; its error stops the VM without running the guest (the console
// stays empty).
func TestBeforeRun(t *testing.T) {
	calls := 0
	var got seccomp.Options
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.Print("ran"), vmmtest.ResetViaI8042), func(c *Config) {
		c.BeforeRun = func(o seccomp.Options) error { calls++; got = o; return nil }
	})
	if calls != 1 || res.Reason != stopReset || out != "ran" {
		t.Fatalf("hook called %d times; stopped with %v, console %q", calls, res.Reason, out)
	}
	if got != (seccomp.Options{}) {
		t.Errorf("options %+v for a VM with no share and no vsock, want none", got)
	}
	refused := errors.New("no filter")
	res, out = bootTiny(t, vmmtest.Concat(vmmtest.Print("ran"), vmmtest.ResetViaI8042), func(c *Config) {
		c.BeforeRun = func(seccomp.Options) error { return refused }
	})
	if res.Reason != stopError || !errors.Is(res.Err, refused) || res.ExitCode() != ExitVMMErr || out != "" {
		t.Fatalf("stopped with %v (%v) code %d, console %q; want the hook's error and no guest run", res.Reason, res.Err, res.ExitCode(), out)
	}
}
