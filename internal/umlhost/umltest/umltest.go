// Package umltest is internal/umlhost for tests: the UML guest's
// initramfs and its run, with a harness that is not installed skipping
// the test (failing it under CI, as internal/testenv says) and a timeout
// failing it with the console. The UML tests of virtio/transport/vhostuser
// and virtio/fs use it; their TestMain must call umlhost.MaybeExec.
//
// It imports internal/umlhost and internal/testenv.
package umltest

import (
	"errors"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/internal/umlhost"
)

// Initramfs is umlhost.Initramfs for tb: a missing harness skips tb (or
// fails it under CI), another error fails it.
func Initramfs(tb testing.TB, dir, init string, mods ...string) string {
	tb.Helper()
	p, err := umlhost.Initramfs(dir, init, mods...)
	if errors.Is(err, umlhost.ErrMissing) {
		testenv.SkipOrFail(tb, err.Error()+" (make setup installs the UML harness)")
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Run is umlhost.Run of UML (umlhost.Binary) with args for tb: it
// returns the console, and fails tb with it on a timeout.
func Run(tb testing.TB, dir string, timeout time.Duration, args ...string) string {
	tb.Helper()
	out, err := umlhost.Run(dir, timeout, append([]string{umlhost.Binary}, args...)...)
	if err != nil {
		tb.Fatalf("%v; console:\n%s", err, out)
	}
	return out
}
