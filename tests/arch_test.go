package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
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
// the standard library and golang.org/x/sys; only cmd/flint sits above vmm;
// no package or test imports anything under scripts/.
// It is the one import-rule test.
func TestImportDirection(t *testing.T) {
	cmd := exec.Command(goCommand(), "list", "-deps", "-json=ImportPath,Imports,TestImports,XTestImports,Deps,CgoFiles,Standard", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath   string
		Imports      []string
		TestImports  []string
		XTestImports []string
		Deps         []string
		CgoFiles     []string
		Standard     bool
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
		for _, d := range append(p.TestImports, p.XTestImports...) {
			if under(d, "scripts") {
				t.Errorf("%s's tests import %s: Go helpers live under internal/, scripts/ is for shell", p.ImportPath, d)
			}
		}
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
			case under(p.ImportPath, "net") && !under(d, "net") && !under(d, "internal/vnethdr"):
				t.Errorf("net must depend only on the standard library, x/sys and internal/vnethdr (the header it shares with virtio/netdev), but %s depends on %s", p.ImportPath, d)
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

// parenthesized is a remark in the "may import" column: "(once setup is
// done)", "(builds `cmd/flint`)"; names after it still count.
var parenthesized = regexp.MustCompile(`\([^)]*\)`)

// readTable parses the "## Packages" table of docs/ARCHITECTURE.md.
func readTable(t *testing.T) []archRow {
	doc, err := os.ReadFile("../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parseTable(string(doc))
	if err != nil {
		t.Fatalf("docs/ARCHITECTURE.md: %v", err)
	}
	return rows
}

// parseTable returns the rows of doc's "## Packages" table. In the first
// column, ".../x" names x under the row's first package; in the last, a
// parenthesis ("(builds `cmd/flint`)") is a remark, not an import.
func parseTable(doc string) ([]archRow, error) {
	_, table, ok := strings.Cut(doc, "## Packages")
	if !ok {
		return nil, errors.New("no ## Packages section")
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
		may := parenthesized.ReplaceAllString(cells[len(cells)-2], "")
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
		return nil, fmt.Errorf("read only %d rows from the package table", len(rows))
	}
	return rows, nil
}

// checkTable checks every row's "may import" column against the module
// packages' imports (module-relative paths). A package belongs to the row
// naming it or, failing that, to its nearest parent's (a helper someone has
// just added under a listed package); a package with neither, such as Go
// code left under scripts/, fails. It may import only the packages of its
// own row and those its "may import" column names ("everything below":
// anything but cmd/ and tests). Every name in the table must be a real
// package, in one row only.
func checkTable(t *testing.T, imports map[string][]string) {
	for _, e := range tableErrors(readTable(t), imports) {
		t.Error(e)
	}
}

// tableErrors returns every way imports breaks rows.
func tableErrors(rows []archRow, imports map[string][]string) []string {
	var errs []string
	errf := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	rowOf := map[string]int{}
	for i, r := range rows {
		for _, name := range r.pkgs {
			if j, dup := rowOf[name]; dup {
				errf("docs/ARCHITECTURE.md names %s in two rows (%v and %v)", name, rows[j].pkgs, r.pkgs)
			}
			rowOf[name] = i
			if _, ok := imports[name]; !ok {
				errf("docs/ARCHITECTURE.md names %s, which is not a package of the module", name)
			}
		}
		for _, name := range r.mayMatch {
			if _, ok := imports[name]; !ok {
				errf("docs/ARCHITECTURE.md lets %v import %s, which is not a package of the module", r.pkgs, name)
			}
		}
	}
	rowFor := func(p string) (int, bool) {
		for q := p; ; {
			if i, ok := rowOf[q]; ok {
				return i, true
			}
			i := strings.LastIndex(q, "/")
			if i < 0 {
				return 0, false
			}
			q = q[:i]
		}
	}
	pkgs := make([]string, 0, len(imports))
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		pr, ok := rowFor(p)
		if !ok {
			if strings.HasPrefix(p, "scripts/") {
				errf("%s: Go code under scripts/ (scripts/ is for shell; Go helpers go under internal/)", p)
			}
			errf("%s has no row in docs/ARCHITECTURE.md's package table: add one saying what it owns and may import", p)
			continue
		}
		r := rows[pr]
		for _, d := range imports[p] {
			rel, ok := strings.CutPrefix(d, module+"/")
			if !ok {
				continue
			}
			dr, known := rowFor(rel)
			switch {
			case known && dr == pr:
			case r.mayAll && !strings.HasPrefix(rel, "cmd/") && rel != "tests":
			case slices.Contains(r.mayMatch, rel):
			default:
				errf("%s imports %s, but docs/ARCHITECTURE.md's table lets it import only %s", p, rel, mayString(r))
			}
		}
	}
	return errs
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

// TestArchTable feeds tableErrors a small table: the imports it allows
// pass, and each way of breaking it is reported.
func TestArchTable(t *testing.T) {
	doc := "## Packages\n\n| package | owns | may import |\n|---|---|---|\n" +
		"| `cmd/x` | the CLI | everything below (and builds `tests`) |\n" +
		"| `a`, `.../sub` | a | `b` (not `f0`), `f1` |\n" +
		"| `b` | b | nothing |\n"
	for i := 0; i < 8; i++ {
		doc += fmt.Sprintf("| `f%d` | filler | nothing |\n", i)
	}
	doc += "\n## Next\n| `ignored` | after the table | `a` |\n"
	rows, err := parseTable(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 11 || !slices.Equal(rows[1].pkgs, []string{"a", "a/sub"}) || !rows[0].mayAll || len(rows[0].mayMatch) != 0 ||
		!slices.Equal(rows[1].mayMatch, []string{"b", "f1"}) {
		t.Fatalf("parsed rows %+v", rows)
	}
	good := map[string][]string{
		"cmd/x": {module + "/a", module + "/b", "fmt"},
		"a":     {module + "/a/sub", module + "/b"},
		"a/sub": {module + "/b"},
		"b":     {"os"},
	}
	for i := 0; i < 8; i++ {
		good[fmt.Sprintf("f%d", i)] = nil
	}
	if errs := tableErrors(rows, good); len(errs) != 0 {
		t.Fatalf("a module that keeps the table was rejected: %v", errs)
	}
	for name, edit := range map[string]func(map[string][]string){
		"import not allowed":   func(m map[string][]string) { m["b"] = append(m["b"], module+"/a") },
		"cmd imported":         func(m map[string][]string) { m["a"] = append(m["a"], module+"/cmd/x") },
		"package with no row":  func(m map[string][]string) { m["scripts/helper"] = nil },
		"helper imports more":  func(m map[string][]string) { m["b/helper"] = []string{module + "/a"} },
		"row names no package": func(m map[string][]string) { delete(m, "a/sub") },
	} {
		m := map[string][]string{}
		for k, v := range good {
			m[k] = slices.Clone(v)
		}
		edit(m)
		if errs := tableErrors(rows, m); len(errs) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}
}
