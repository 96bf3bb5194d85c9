// Command testsummary runs `go test -json` for the Makefile with readable
// output, keeps the JSON, and ends `make test` with a summary of what ran
// where.
//
//	testsummary run [-v] -o FILE -- go test -json ARGS...
//	testsummary report DIR
//
// run executes the command, copies its JSON events to FILE and prints them
// the way go test would: with -v every line (go test -v); without it the
// package result lines (ok, FAIL, build errors), the output of every test
// that failed, and one line per skipped test with its reason, so that no
// skip goes unseen. It exits with the command's status.
//
// report reads DIR/*.json (one file per phase: unit, race, e2e...) and
// DIR/phases (lines "PHASE ok|FAILED" that `make test` writes) and prints
// how many tests passed, failed and skipped on each path: a test's path is
// the "flint-test-path: PATH" line (internal/testenv.LogPath) it or a
// parent test logged (direct KVM, nested test host, UML); tests without one
// ran on the host without a VM. It lists the failed tests and the skip
// reasons, and counts the nested hosts that were lost and rerun.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/flintvm/flint/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:], os.Stdout))
	case "report":
		if len(os.Args) != 3 {
			usage()
		}
		if err := report(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testsummary run [-v] -o FILE -- go test -json ARGS... | testsummary report DIR")
	os.Exit(2)
}

// event is one line of `go test -json` (cmd/test2json), with the build
// events of Go 1.24 and later.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// run is `testsummary run`.
func run(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	verbose := fs.Bool("v", false, "print every line, as go test -v")
	out := fs.String("o", "", "write the JSON events to this file")
	fs.Parse(args)
	cmdline := fs.Args()
	if *out == "" || len(cmdline) == 0 {
		usage()
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	}
	defer f.Close()
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	}
	p := newPrinter(stdout, *verbose)
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		f.Write(line)
		f.Write([]byte{'\n'})
		p.line(line)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "testsummary:", err)
	return 1
}

// printer turns events back into go test's text.
type printer struct {
	w       io.Writer
	verbose bool
	buf     map[string][]string // package + "\x00" + test -> output lines so far
	// pkg holds a package's text until its result, so that packages that
	// run at the same time do not mix (as go test prints them).
	pkg map[string]*strings.Builder
}

func newPrinter(w io.Writer, verbose bool) *printer {
	return &printer{w: w, verbose: verbose, buf: map[string][]string{}, pkg: map[string]*strings.Builder{}}
}

// out adds text to package pkg's pending output.
func (p *printer) out(pkg, text string) {
	b := p.pkg[pkg]
	if b == nil {
		b = &strings.Builder{}
		p.pkg[pkg] = b
	}
	b.WriteString(text)
}

// resultLine is go test's result line of a test.
var resultLine = regexp.MustCompile(`^\s*--- (FAIL|SKIP|PASS): `)

// frame matches go test's framing lines that a test's output starts with.
var frame = regexp.MustCompile(`^\s*=== (RUN|NAME|PAUSE|CONT)\b`)

func (p *printer) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		fmt.Fprintf(p.w, "%s\n", b) // not an event: as it came
		return
	}
	switch {
	case e.Action == "build-output":
		io.WriteString(p.w, e.Output)
		return
	case p.verbose:
		if e.Action == "output" {
			io.WriteString(p.w, e.Output)
		}
		return
	case e.Test == "":
		// Package lines: keep "ok", "FAIL", "?", panics; drop the bare
		// "PASS" and benchmark headers go test prints only with -v.
		switch e.Action {
		case "output":
			if e.Output != "PASS\n" && !benchHeader.MatchString(e.Output) {
				p.out(e.Package, e.Output)
			}
		case "pass", "fail", "skip":
			if b := p.pkg[e.Package]; b != nil {
				io.WriteString(p.w, b.String())
				delete(p.pkg, e.Package)
			}
		}
		return
	}
	key := e.Package + "\x00" + e.Test
	switch e.Action {
	case "output":
		if !frame.MatchString(e.Output) {
			p.buf[key] = append(p.buf[key], e.Output)
		}
	case "fail":
		// The result line first, then what the test logged (go test's order).
		lines := p.buf[key]
		for i := len(lines) - 1; i >= 0; i-- {
			if resultLine.MatchString(lines[i]) {
				p.out(e.Package, lines[i])
				lines = append(lines[:i:i], lines[i+1:]...)
				break
			}
		}
		for _, l := range lines {
			p.out(e.Package, l)
		}
		delete(p.buf, key)
	case "skip":
		// One line: the test and why it skipped.
		why := "(no reason given)"
		for _, l := range p.buf[key] {
			if m := logLine.FindStringSubmatch(strings.TrimRight(l, "\n")); m != nil {
				why = m[1]
			}
		}
		p.out(e.Package, fmt.Sprintf("--- SKIP: %s (%s): %s\n", e.Test, shortPkg(e.Package), why))
		delete(p.buf, key)
	case "pass":
		delete(p.buf, key)
	}
}

var benchHeader = regexp.MustCompile(`^(goos|goarch|pkg|cpu): `)

// result is one test's outcome in a phase.
type result struct {
	phase, pkg, test string
	action           string // pass, fail, skip
	path             string // where it ran (testenv path, or "host")
	output           []string
	parent           *result
	hasChild         bool
	lost             int // lost nested hosts it reported
}

// pathLine finds the marker testenv.LogPath writes.
var pathLine = regexp.MustCompile(regexp.QuoteMeta(testenv.PathMarker) + `(\w+)`)

// lostLine matches the harness's lines for a lost nested host.
var lostLine = regexp.MustCompile(`(?i)nested host lost \(`)

// byName gives a path to tests that cannot log a marker themselves.
var byName = map[string]string{
	"github.com/flintvm/flint/virtio/transport/vhostuser TestUML": testenv.PathUML,
}

// loadPhase reads one phase's JSON events.
func loadPhase(phase, file string) ([]*result, int, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	tests := map[string]*result{}
	var order []*result
	// Package-level events: a package can fail with no test failing (it did
	// not build, TestMain exited, a goroutine panicked after the tests, the
	// -timeout fired between tests).
	pkgs := map[string]*result{}
	var pkgOrder []*result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Package == "" {
			continue
		}
		if e.Test == "" {
			p := pkgs[e.Package]
			if p == nil {
				p = &result{phase: phase, pkg: e.Package, test: "(package)", path: "host"}
				pkgs[e.Package] = p
				pkgOrder = append(pkgOrder, p)
			}
			switch e.Action {
			case "output":
				p.output = append(p.output, strings.TrimRight(e.Output, "\n"))
			case "pass", "fail", "skip":
				p.action = e.Action
			}
			continue
		}
		key := e.Package + " " + e.Test
		r := tests[key]
		if r == nil {
			r = &result{phase: phase, pkg: e.Package, test: e.Test}
			for i := strings.LastIndexByte(e.Test, '/'); i > 0; i = strings.LastIndexByte(e.Test[:i], '/') {
				if p := tests[e.Package+" "+e.Test[:i]]; p != nil {
					r.parent = p
					p.hasChild = true
					break
				}
			}
			tests[key] = r
			order = append(order, r)
		}
		switch e.Action {
		case "output":
			r.output = append(r.output, strings.TrimRight(e.Output, "\n"))
			if m := pathLine.FindStringSubmatch(e.Output); m != nil && r.path == "" {
				r.path = m[1]
			}
			if lostLine.MatchString(e.Output) {
				r.lost++
			}
		case "pass", "fail", "skip":
			r.action = e.Action
		}
	}
	for _, r := range order {
		if r.path != "" {
			continue
		}
		for p := r.parent; p != nil; p = p.parent {
			if p.path != "" {
				r.path = p.path
				break
			}
		}
		if r.path == "" {
			top := r
			for top.parent != nil {
				top = top.parent
			}
			r.path = byName[r.pkg+" "+top.test]
		}
		if r.path == "" {
			r.path = "host"
		}
	}
	// Only the tests that ran in a nested host lose one; the harness's own
	// tests of its retries (fake nested hosts, path "host") do not count.
	lost := 0
	for _, r := range order {
		if r.path == testenv.PathNested {
			lost += r.lost
		}
	}
	// A failed package whose failure no test of its own explains counts as
	// one failed test, "(package)", with the package's own output.
	for _, p := range pkgOrder {
		if p.action == "fail" && !packageTestFailed(order, p.pkg) {
			order = append(order, p)
		}
	}
	return order, lost, sc.Err()
}

func packageTestFailed(results []*result, pkg string) bool {
	for _, r := range results {
		if r.pkg == pkg && r.action != "pass" && r.action != "skip" {
			return true
		}
	}
	return false
}

// pathTitle describes a path in the summary.
var pathTitle = map[string]string{
	testenv.PathDirect: "direct KVM (this machine's /dev/kvm)",
	testenv.PathNested: "nested test host (QEMU TCG, kvm_amd in L1)",
	testenv.PathUML:    "user-mode Linux (no KVM)",
	"host":             "host, no VM",
}

// report is `testsummary report`.
func report(dir string, w io.Writer) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	phaseOrder := map[string]int{"unit": 0, "race": 1, "e2e": 2}
	sort.Slice(files, func(i, j int) bool {
		a, b := phaseName(files[i]), phaseName(files[j])
		oa, oka := phaseOrder[a]
		ob, okb := phaseOrder[b]
		if oka != okb {
			return oka
		}
		if oa != ob {
			return oa < ob
		}
		return a < b
	})
	type row struct{ pass, fail, skip int }
	rows := map[string]*row{} // phase + "\x00" + path
	var rowKeys []string
	var failed, skipped []*result
	lost := 0
	for _, file := range files {
		phase := phaseName(file)
		results, l, err := loadPhase(phase, file)
		if err != nil {
			return fmt.Errorf("%s: %v", file, err)
		}
		lost += l
		for _, r := range results {
			// Count leaves: a test with subtests is counted through them,
			// except a failure of its own that no subtest explains.
			if r.hasChild && !(r.action == "fail" && !childFailed(r, results)) {
				continue
			}
			k := phase + "\x00" + r.path
			if rows[k] == nil {
				rows[k] = &row{}
				rowKeys = append(rowKeys, k)
			}
			switch r.action {
			case "pass":
				rows[k].pass++
			case "fail", "":
				rows[k].fail++
				failed = append(failed, r)
			case "skip":
				rows[k].skip++
				skipped = append(skipped, r)
			}
		}
	}
	fmt.Fprintf(w, "\n==== make test summary (go test -json output in %s)\n", dir)
	var failedPhases []string
	if b, err := os.ReadFile(filepath.Join(dir, "phases")); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		fmt.Fprintf(w, "phases: %s\n", strings.Join(lines, ", "))
		for _, l := range lines {
			if name, ok := strings.CutSuffix(l, " FAILED"); ok {
				failedPhases = append(failedPhases, name)
			}
		}
	}
	fmt.Fprintf(w, "%-6s %-44s %7s %7s %8s\n", "phase", "where the tests ran", "passed", "failed", "skipped")
	var total row
	for _, k := range rowKeys {
		phase, path, _ := strings.Cut(k, "\x00")
		title := pathTitle[path]
		if title == "" {
			title = path
		}
		r := rows[k]
		total.pass += r.pass
		total.fail += r.fail
		total.skip += r.skip
		fmt.Fprintf(w, "%-6s %-44s %7d %7d %8d\n", phase, title, r.pass, r.fail, r.skip)
	}
	fmt.Fprintf(w, "%-6s %-44s %7d %7d %8d\n", "all", "", total.pass, total.fail, total.skip)
	if lost > 0 {
		fmt.Fprintf(w, "nested hosts lost and rerun: %d (the emulator's losses; each is logged with its evidence)\n", lost)
	}
	if len(skipped) > 0 {
		reasons := map[string][]string{}
		var keys []string
		for _, r := range skipped {
			why := skipReason(r)
			if reasons[why] == nil {
				keys = append(keys, why)
			}
			reasons[why] = append(reasons[why], r.phase+" "+shortPkg(r.pkg)+"."+r.test)
		}
		fmt.Fprintf(w, "skipped (%d), by reason:\n", len(skipped))
		for _, why := range keys {
			names := reasons[why]
			list := strings.Join(names, ", ")
			if len(names) > 6 {
				list = strings.Join(names[:6], ", ") + fmt.Sprintf(", and %d more", len(names)-6)
			}
			fmt.Fprintf(w, "  %d: %s\n     %s\n", len(names), why, list)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "FAILED (%d):\n", len(failed))
		for i, r := range failed {
			if i == 30 {
				fmt.Fprintf(w, "  ... and %d more\n", len(failed)-i)
				break
			}
			fmt.Fprintf(w, "  %s %s.%s\n", r.phase, shortPkg(r.pkg), r.test)
			for _, l := range failLines(r, 4) {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
	}
	// A failed phase without a failed test (vet, fmt-check, fuzz-short, or a
	// package that did not build) shows the end of its own output, which
	// make test keeps in DIR/PHASE.log: CI's record may hold only the tail.
	for _, phase := range failedPhases {
		if !phaseHasFailedTest(failed, phase) {
			printLogTail(w, dir, phase, 25)
		}
	}
	// Last, the plain closing line that CI reads.
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped", total.pass, total.fail, total.skip)
	if len(failedPhases) > 0 {
		fmt.Fprintf(w, "; phases failed: %s", strings.Join(failedPhases, ", "))
	}
	fmt.Fprintln(w)
	return nil
}

func phaseHasFailedTest(failed []*result, phase string) bool {
	for _, r := range failed {
		if r.phase == phase {
			return true
		}
	}
	return false
}

// printLogTail prints the last n lines of DIR/PHASE.log, if make test kept one.
func printLogTail(w io.Writer, dir, phase string, n int) {
	b, err := os.ReadFile(filepath.Join(dir, phase+".log"))
	if err != nil {
		fmt.Fprintf(w, "phase %s FAILED without a failed test; its output was not kept (%v)\n", phase, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintf(w, "phase %s FAILED without a failed test; the end of its output:\n", phase)
	for _, l := range lines {
		fmt.Fprintf(w, "  | %s\n", l)
	}
}

func phaseName(file string) string { return strings.TrimSuffix(filepath.Base(file), ".json") }

func shortPkg(p string) string { return strings.TrimPrefix(p, "github.com/flintvm/flint/") }

func childFailed(r *result, all []*result) bool {
	for _, c := range all {
		if c.parent == r && c.action == "fail" {
			return true
		}
	}
	return false
}

// logLine is a t.Log/t.Error line: "    file.go:12: text".
var logLine = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)

// skipReason is the last message a skipped test logged.
func skipReason(r *result) string {
	for i := len(r.output) - 1; i >= 0; i-- {
		if m := logLine.FindStringSubmatch(r.output[i]); m != nil {
			return m[1]
		}
	}
	return "(no reason given)"
}

// maxFailLine is how much of one message failLines keeps: enough for a
// hung boot's one-line evidence digest (tests/digest_test.go, at most 700
// characters after its reason), which is often all that a CI log's last
// lines show of why a boot failed.
const maxFailLine = 1000

// failLines is up to n of the messages a failed test logged last; for a
// failed package, its last lines of its own (build errors, a panic), without
// go test's closing FAIL lines.
func failLines(r *result, n int) []string {
	var out []string
	for i := len(r.output) - 1; i >= 0 && len(out) < n; i-- {
		l := r.output[i]
		if m := logLine.FindStringSubmatch(l); m != nil {
			l = m[1]
		} else if r.test != "(package)" || strings.TrimSpace(l) == "" || strings.HasPrefix(l, "FAIL") {
			continue
		}
		if len(l) > maxFailLine {
			l = l[:maxFailLine] + "..."
		}
		out = append([]string{l}, out...)
	}
	return out
}
