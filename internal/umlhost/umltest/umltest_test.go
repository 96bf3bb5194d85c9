package umltest

import (
	"os"
	"testing"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/internal/umlhost"
)

// TestInitramfsMissing: a module UML does not have is a missing harness
// (skipped outside CI, a failure under it), not another error.
func TestInitramfsMissing(t *testing.T) {
	if testenv.RequireAll() {
		t.Skip("under CI a missing harness fails the test")
	}
	if _, err := os.Stat(umlhost.Binary); err != nil {
		t.Skip("no UML")
	}
	ok := t.Run("missing", func(t *testing.T) {
		Initramfs(t, t.TempDir(), "#!/bin/sh\n", "no/such/module.ko")
		t.Error("a missing module did not skip")
	})
	if !ok {
		t.Fatal("the subtest failed instead of skipping")
	}
}
