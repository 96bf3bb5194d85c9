package seccomp

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// ioctlName matches the golang.org/x/sys/unix names of ioctl requests.
var ioctlName = regexp.MustCompile(`^(TUN[A-Z]|SIOC|TC[GS]|TIOC|FIO|KVM_|VHOST_|BLK)`)

// guestSide are packages of the flint binary that never run in the VMM
// process (command mode's guest agent runs as the guest's /init): their
// ioctls are the guest kernel's business, not the filter's.
var guestSide = map[string]bool{"github.com/flintvm/flint/agent": true}

// codeIoctls finds every ioctl request the flint binary's packages name:
// constants of package kvm whose value has KVM's ioctl type byte (0xAE),
// with their values, and unix.X identifiers that name ioctl requests.
func codeIoctls(t *testing.T) map[string]int64 {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}} {{.Dir}}{{end}}",
		"github.com/flintvm/flint/cmd/flint").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	found := map[string]int64{}
	fset := token.NewFileSet()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, dir, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("go list printed %q", line)
		}
		if guestSide[path] {
			continue
		}
		pkgs, err := parser.ParseDir(fset, dir, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			for name, f := range pkg.Files {
				if strings.HasSuffix(name, "_test.go") {
					continue
				}
				ast.Inspect(f, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.SelectorExpr:
						if x, ok := n.X.(*ast.Ident); ok && x.Name == "unix" && ioctlName.MatchString(n.Sel.Name) {
							found[n.Sel.Name] = -1
						}
					case *ast.ValueSpec:
						if pkg.Name != "kvm" || len(n.Values) != len(n.Names) {
							return true
						}
						for i, id := range n.Names {
							lit, ok := n.Values[i].(*ast.BasicLit)
							if !ok || !strings.HasPrefix(id.Name, "kvm") {
								continue
							}
							v, err := strconv.ParseInt(lit.Value, 0, 64)
							if err == nil && v>>8&0xff == 0xAE {
								found[id.Name] = v
							}
						}
					}
					return true
				})
			}
		}
	}
	if len(found) < 20 {
		t.Fatalf("found only %d ioctl requests in the code: the scan is broken: %v", len(found), found)
	}
	return found
}

// TestEveryIoctlIsClassified fails when the code names an ioctl request
// that is neither allowed after setup (RuntimeIoctls) nor declared
// setup-only (SetupIoctls), when a KVM request's number differs from the
// kvm package's, and when a listed request is no longer in the code.
func TestEveryIoctlIsClassified(t *testing.T) {
	code := codeIoctls(t)
	listed := map[string]bool{}
	for _, r := range RuntimeIoctls {
		listed[r.Name] = true
		v, ok := code[r.Name]
		switch {
		case !ok:
			t.Errorf("RuntimeIoctls has %s, which the code no longer uses", r.Name)
		case v >= 0 && uint32(v) != r.Req:
			t.Errorf("RuntimeIoctls has %s = %#x, the code %#x", r.Name, r.Req, v)
		}
	}
	for _, name := range SetupIoctls {
		if listed[name] {
			t.Errorf("%s is in both RuntimeIoctls and SetupIoctls", name)
		}
		listed[name] = true
		if _, ok := code[name]; !ok {
			t.Errorf("SetupIoctls has %s, which the code no longer uses", name)
		}
	}
	for name := range code {
		if !listed[name] {
			t.Errorf("the code uses ioctl %s: add it to RuntimeIoctls (allowed after setup) or SetupIoctls in filter.go", name)
		}
	}
}
