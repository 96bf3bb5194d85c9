package e2e

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/flintvm/flint"

// TestImportDirection enforces docs/ARCHITECTURE.md's import rules over the
// whole module with `go list -deps`: no cgo anywhere; devices, virtio, net
// and boot never reach kvm or vmm; mem imports nothing from the module;
// virtio/net never imports net/tap (vmm plugs the TAP in); only cmd/flint
// sits above vmm.
func TestImportDirection(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	cmd := exec.Command(goBin, "list", "-deps", "-json=ImportPath,Deps,CgoFiles,Standard", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Deps       []string
		CgoFiles   []string
		Standard   bool
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.ImportPath, module) {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d module packages", len(pkgs))
	}
	under := func(p, dir string) bool { return p == module+"/"+dir || strings.HasPrefix(p, module+"/"+dir+"/") }
	for _, p := range pkgs {
		if len(p.CgoFiles) > 0 {
			t.Errorf("%s uses cgo (%v)", p.ImportPath, p.CgoFiles)
		}
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module) {
				continue
			}
			switch {
			case under(p.ImportPath, "mem"):
				t.Errorf("mem must be a leaf, but %s imports %s", p.ImportPath, d)
			case (under(p.ImportPath, "devices") || under(p.ImportPath, "virtio") || under(p.ImportPath, "net") ||
				under(p.ImportPath, "boot")) && (under(d, "kvm") || under(d, "vmm") || under(d, "cmd")):
				t.Errorf("%s must not depend on %s (devices, virtio, net and boot raise interrupts through interfaces)", p.ImportPath, d)
			case under(p.ImportPath, "virtio") && under(d, "net"):
				t.Errorf("%s must not depend on %s: the device defines its Backend and vmm plugs the TAP in", p.ImportPath, d)
			case !under(p.ImportPath, "cmd") && under(d, "cmd"):
				t.Errorf("%s depends on the CLI %s", p.ImportPath, d)
			case under(p.ImportPath, "net") && !under(d, "net"):
				t.Errorf("net must depend only on the standard library and x/sys, but %s depends on %s", p.ImportPath, d)
			case under(p.ImportPath, "kvm") && !under(d, "kvm"):
				t.Errorf("kvm must import nothing from the module, but depends on %s", d)
			}
		}
	}
}
