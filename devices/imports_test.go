package devices

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoKVMImports enforces the architecture rule that nothing under
// devices depends on the kvm package: devices raise interrupts through
// IRQLine, so they run behind KVM, vhost-user or a test alike.
func TestNoKVMImports(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/flintvm/flint/"
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		rel := strings.TrimPrefix(pkg, module)
		if rel == "kvm" || strings.HasPrefix(rel, "kvm/") {
			t.Errorf("a package under devices depends on %s", pkg)
		}
		if !strings.HasPrefix(rel, "devices") && rel != "mem" {
			t.Errorf("a package under devices depends on %s; only devices and mem are allowed", pkg)
		}
	}
}
