package e2e

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/flintvm/flint"

// TestImportDirection enforces docs/ARCHITECTURE.md's import rules over the
// whole module with `go list -deps`: every row of the package table's
// "may import" column (checkTable), no cgo anywhere; devices, virtio, net
// and boot never reach kvm or vmm; mem imports nothing from the module;
// virtio never reaches net/tap (vmm plugs the TAP in) nor a module outside
// the standard library and golang.org/x/sys; only cmd/flint sits above vmm.
// It is the one import-rule test.
func TestImportDirection(t *testing.T) {
	cmd := exec.Command(goCommand(), "list", "-deps", "-json=ImportPath,Imports,Deps,CgoFiles,Standard", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Imports    []string
		Deps       []string
		CgoFiles   []string
		Standard   bool
	}
	var pkgs []pkg
	std := map[string]bool{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Standard {
			std[p.ImportPath] = true
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
				if under(p.ImportPath, "virtio") && !std[d] && !strings.HasPrefix(d, "golang.org/x/sys/") {
					t.Errorf("%s depends on %s: virtio uses only the standard library and golang.org/x/sys", p.ImportPath, d)
				}
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
	imports := map[string][]string{}
	for _, p := range pkgs {
		imports[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p.Imports
	}
	checkTable(t, imports)
}

// archRow is one row of docs/ARCHITECTURE.md's package table.
type archRow struct {
	pkgs     []string // the packages the row names
	mayAll   bool     // "everything below": anything but cmd/ and tests
	mayMatch []string // the packages named in "may import"
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readTable parses the "## Packages" table of docs/ARCHITECTURE.md.
func readTable(t *testing.T) []archRow {
	doc, err := os.ReadFile("../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Packages")
	if !ok {
		t.Fatal("docs/ARCHITECTURE.md has no ## Packages")
	}
	var rows []archRow
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		may := cells[len(cells)-2]
		if i := strings.Index(may, "("); i >= 0 {
			may = may[:i] // "(builds `cmd/flint`)" is not an import
		}
		var r archRow
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			name := m[1]
			if rest, ok := strings.CutPrefix(name, ".../"); ok && len(r.pkgs) > 0 {
				name = r.pkgs[0] + "/" + rest
			}
			r.pkgs = append(r.pkgs, name)
		}
		r.mayAll = strings.Contains(may, "everything below")
		for _, m := range backticked.FindAllStringSubmatch(may, -1) {
			r.mayMatch = append(r.mayMatch, m[1])
		}
		rows = append(rows, r)
	}
	if len(rows) < 10 {
		t.Fatalf("read only %d rows from docs/ARCHITECTURE.md's package table", len(rows))
	}
	return rows
}

// checkTable checks every row's "may import" column against the module
// packages' imports (module-relative paths). A package belongs to the row
// naming it or, failing that, its nearest parent (helpers such as
// virtio/queue/queuetest); it may import its own row's packages and those
// of the rows its "may import" names. Every row must name real packages.
func checkTable(t *testing.T, imports map[string][]string) {
	rows := readTable(t)
	rowOf := func(p string) int {
		best, bestLen := -1, -1
		for i, r := range rows {
			for _, name := range r.pkgs {
				if (p == name || strings.HasPrefix(p, name+"/")) && len(name) > bestLen {
					best, bestLen = i, len(name)
				}
			}
		}
		return best
	}
	for _, r := range rows {
		for _, name := range r.pkgs {
			if _, ok := imports[name]; !ok {
				t.Errorf("docs/ARCHITECTURE.md names %s, which is not a package of the module", name)
			}
		}
		for _, name := range r.mayMatch {
			if _, ok := imports[name]; !ok {
				t.Errorf("docs/ARCHITECTURE.md lets %v import %s, which is not a package of the module", r.pkgs, name)
			}
		}
	}
	for p, imps := range imports {
		pr := rowOf(p)
		if pr < 0 {
			continue // not in the table (yet): the rules above still apply
		}
		r := rows[pr]
		for _, d := range imps {
			rel, ok := strings.CutPrefix(d, module+"/")
			if !ok {
				continue
			}
			dr := rowOf(rel)
			switch {
			case dr == pr:
			case r.mayAll && !strings.HasPrefix(rel, "cmd/") && rel != "tests":
			case dr >= 0 && slices.ContainsFunc(rows[dr].pkgs, func(n string) bool { return slices.Contains(r.mayMatch, n) }):
			default:
				t.Errorf("%s imports %s, but docs/ARCHITECTURE.md's table lets it import only %s",
					p, rel, mayString(r))
			}
		}
	}
}

func mayString(r archRow) string {
	if r.mayAll {
		return "everything below"
	}
	if len(r.mayMatch) == 0 {
		return "nothing from the module"
	}
	return strings.Join(r.mayMatch, ", ")
}
