package boot

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries enforces the architecture rule: nothing under boot
// imports kvm (or anything but mem from this module), and no cgo.
func TestImportBoundaries(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{.CgoFiles}}", "github.com/flintvm/flint/boot/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/flintvm/flint/mem":           true,
		"github.com/flintvm/flint/boot":          true,
		"github.com/flintvm/flint/boot/acpi":     true,
		"github.com/flintvm/flint/boot/acpi/aml": true,
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, cgo, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg, "github.com/flintvm/flint") && !allowed[pkg] {
			t.Errorf("boot depends on %s", pkg)
		}
		if strings.HasPrefix(pkg, "github.com/flintvm/flint") && cgo != "[]" {
			t.Errorf("%s uses cgo: %s", pkg, cgo)
		}
	}
}
