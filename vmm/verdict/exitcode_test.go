package verdict

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/flintvm/flint/devices/exitdev"
)

func report(w uint32) *exitdev.Report {
	r, err := exitdev.Decode(w)
	if err != nil {
		panic(err)
	}
	return &r
}

var (
	panicSplat = Splat{Kind: Panic, Title: "Kernel panic - not syncing: sysrq triggered crash"}
	warnSplat  = Splat{Kind: Warn, Title: "WARNING: CPU: 0 PID: 1 at x.c:1"}
	// initSplat: PID 1 (in command mode Flint's agent) died.
	initSplat = Splat{Kind: Panic, Title: "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200"}
	oopsSplat = Splat{Kind: Oops, Title: "BUG: kernel NULL pointer dereference, address: 0000000000000000"}
)

var exitCases = []struct {
	name   string
	o      Outcome
	code   int
	result Result
}{
	{"exit 0", Outcome{Command: report(exitdev.Exited(0)), FailOn: All}, 0, Passed},
	{"exit 7 passes through", Outcome{Command: report(exitdev.Exited(7)), FailOn: All}, 7, CommandFailed},
	{"exit 124 passes through", Outcome{Command: report(exitdev.Exited(124)), FailOn: All}, 124, CommandFailed},
	{"exit 255 passes through", Outcome{Command: report(exitdev.Exited(255)), FailOn: All}, 255, CommandFailed},
	{"SIGKILL", Outcome{Command: report(exitdev.Signaled(9, false)), FailOn: All}, 137, Signaled},
	{"SIGSEGV core", Outcome{Command: report(exitdev.Signaled(11, true)), FailOn: All}, 139, Signaled},
	{"signal 64", Outcome{Command: report(exitdev.Signaled(64, false)), FailOn: All}, 192, Signaled},
	{"not found", Outcome{Command: report(exitdev.AgentFailed(exitdev.StageExec, uint16(syscall.ENOENT))), FailOn: All}, 127, NotFound},
	{"not a directory on the path", Outcome{Command: report(exitdev.AgentFailed(exitdev.StageExec, uint16(syscall.ENOTDIR))), FailOn: All}, 127, NotFound},
	{"not executable", Outcome{Command: report(exitdev.AgentFailed(exitdev.StageExec, uint16(syscall.EACCES))), FailOn: All}, 126, NotExecutable},
	{"bad binary", Outcome{Command: report(exitdev.AgentFailed(exitdev.StageExec, uint16(syscall.ENOEXEC))), FailOn: All}, 126, NotExecutable},
	{"agent failed loading modules", Outcome{Command: report(exitdev.AgentFailed(exitdev.StageModules, uint16(syscall.ENOEXEC))), FailOn: All}, 120, BootFailed},
	{"guest stopped without report", Outcome{FailOn: All, Stage: "kernel"}, 120, BootFailed},
	{"panic after exit 0", Outcome{Command: report(exitdev.Exited(0)), Splats: []Splat{panicSplat}, FailOn: All}, 121, KernelFailed},
	{"panic with --fail-on none", Outcome{Command: report(exitdev.Exited(0)), Splats: []Splat{panicSplat}, FailOn: None}, 121, KernelFailed},
	{"panic before init", Outcome{Splats: []Splat{panicSplat}, FailOn: All, Stage: "kernel"}, 121, KernelFailed},
	{"warning with exit 3", Outcome{Command: report(exitdev.Exited(3)), Splats: []Splat{warnSplat}, FailOn: All}, 121, KernelFailed},
	{"warning not counted", Outcome{Command: report(exitdev.Exited(0)), Splats: []Splat{warnSplat}, FailOn: All &^ None.With(Warn)}, 0, Passed},
	{"hung task explains a timeout", Outcome{Splats: []Splat{{Kind: Hung}}, FailOn: All, Timeout: true}, 121, KernelFailed},
	{"timeout", Outcome{FailOn: All, Timeout: true, Stage: "command"}, 124, TimedOut},
	{"timeout beats a late report", Outcome{Command: report(exitdev.Exited(0)), FailOn: All, Timeout: true}, 124, TimedOut},
	{"idle", Outcome{FailOn: All, Idle: true}, 122, IdleTimedOut},
	{"agent died", Outcome{Splats: []Splat{initSplat}, FailOn: All, Stage: "command"}, 125, FlintFailed},
	{"agent died, a warning before", Outcome{Splats: []Splat{warnSplat, initSplat}, FailOn: All}, 125, FlintFailed},
	{"oops killed init", Outcome{Splats: []Splat{oopsSplat, initSplat}, FailOn: None}, 121, KernelFailed},
	{"init died after another panic", Outcome{Splats: []Splat{panicSplat, initSplat}, FailOn: All}, 121, KernelFailed},
	{"flint failed", Outcome{Splats: []Splat{panicSplat}, FailOn: All, Err: errors.New("KVM_RUN: EFAULT")}, 125, FlintFailed},
}

func TestExitCodes(t *testing.T) {
	for _, tc := range exitCases {
		v := Judge(tc.o)
		if v.Code != tc.code || v.Result != tc.result || ExitCode(tc.o) != tc.code {
			t.Errorf("%s: %d %s (%s), want %d %s", tc.name, v.Code, v.Result, v.Reason, tc.code, tc.result)
		}
		if v.Reason == "" {
			t.Errorf("%s: no reason", tc.name)
		}
		if tc.result == KernelFailed && len(v.Failing) == 0 {
			t.Errorf("%s: kernel failure without failing splats", tc.name)
		}
	}
	v := Judge(Outcome{Splats: []Splat{warnSplat, panicSplat, warnSplat}, FailOn: All})
	if v.Reason != "kernel failure (warn, panic): "+warnSplat.Title || len(v.Failing) != 3 {
		t.Errorf("reason %q, %d failing", v.Reason, len(v.Failing))
	}
	v = Judge(Outcome{Stage: "modules"})
	if !strings.Contains(v.Reason, "last stage seen: modules") {
		t.Errorf("boot failure reason %q does not name the stage", v.Reason)
	}
}

// TestExitCodeTable checks docs/command-mode.md's table against Judge: each
// row with a fixed code must be the code Judge gives for its result, and
// every Flint code must have its row.
// TestExitCodeTable: the exit-code tables of docs/command-mode.md and of
// the README say what Judge does.
func TestExitCodeTable(t *testing.T) {
	for _, p := range []string{"../../docs/command-mode.md", "../../README.md"} {
		checkExitCodeTable(t, p)
	}
}

func checkExitCodeTable(t *testing.T, path string) {
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `?(\\d+)(\\+N)?`? \\|.*\\| `([a-z-]+)` \\|$")
	rows := map[Result]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		rows[Result(m[3])] = m[1] + m[2]
	}
	want := map[Result]string{
		BootFailed: strconv.Itoa(CodeBootFailed), KernelFailed: strconv.Itoa(CodeKernelFailed),
		IdleTimedOut: strconv.Itoa(CodeIdle), TimedOut: strconv.Itoa(CodeTimeout),
		FlintFailed: strconv.Itoa(CodeFlintFailed), NotExecutable: strconv.Itoa(CodeNotExecutable),
		NotFound: strconv.Itoa(CodeNotFound), Signaled: strconv.Itoa(CodeSignalBase) + "+N",
	}
	for res, code := range want {
		if rows[res] != code {
			t.Errorf("%s: row for %s says %q, want %q", path, res, rows[res], code)
		}
	}
	for _, tc := range exitCases {
		code, ok := rows[tc.result]
		if !ok || strings.HasSuffix(code, "+N") {
			continue
		}
		if strconv.Itoa(tc.code) != code {
			t.Errorf("%s: %s: Judge gives %d, the table says %s for %s", path, tc.name, tc.code, code, tc.result)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("%s: table rows %v, want exactly %v", path, rows, want)
	}
}

func TestParseFailOn(t *testing.T) {
	tests := []struct {
		in   string
		want Set
		str  string
	}{
		{"all", All, "all"},
		{"none", None, "none"},
		{"panic", None.With(Panic), "panic"},
		{"oops,panic", None.With(Panic).With(Oops), "panic,oops"},
		{" KASAN , Lockdep ", None.With(KASAN).With(Lockdep), "kasan,lockdep"},
		{"all,-warn", All &^ None.With(Warn), "panic,oops,bug,kasan,kfence,ubsan,lockdep,hung,lockup,rcu"},
		{"all,-all,rcu", None.With(RCU), "rcu"},
		{"warn,none", None, "none"},
		{"panic,oops,bug,warn,kasan,kfence,ubsan,lockdep,hung,lockup,rcu", All, "all"},
	}
	for _, tc := range tests {
		got, err := ParseFailOn(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseFailOn(%q) = %v (%q), %v; want %v (%q)", tc.in, got, got.String(), err, tc.want, tc.str)
		}
	}
	bad := map[string]string{
		"":           "empty list",
		"  ":         "empty list",
		"panic,":     "empty item",
		"warning":    `unknown kind "warning"`,
		"panic,BOGS": `unknown kind "BOGS"`,
		"-none":      "removes nothing",
	}
	for in, msg := range bad {
		_, err := ParseFailOn(in)
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.HasPrefix(err.Error(), "--fail-on") {
			t.Errorf("ParseFailOn(%q) error %v, want one containing %q", in, err, msg)
		}
		if err != nil && in != "-none" && !strings.Contains(err.Error(), "panic, oops, bug, warn") {
			t.Errorf("ParseFailOn(%q) error %v does not list the valid names", in, err)
		}
	}
	if DefaultFailOn != All {
		t.Errorf("default %v", DefaultFailOn)
	}
	if Kind(200).String() != "kind(200)" || All.Has(Kind(200)) {
		t.Error("out-of-range kind")
	}
}

func TestWriteSummary(t *testing.T) {
	var b strings.Builder
	if err := WriteSummary(&b, Judge(Outcome{Command: report(exitdev.Exited(0))}), 0); err != nil || b.Len() != 0 {
		t.Fatalf("a passing run wrote %q, %v", b.String(), err)
	}
	WriteSummary(&b, Judge(Outcome{Command: report(exitdev.Exited(3))}), 0)
	if b.String() != "flint: the command exited with status 3\n" {
		t.Fatalf("command failure: %q", b.String())
	}
	s := NewScanner(Limits{}, nil)
	s.Write([]byte("[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 f\n[ 1.1] line two\n[ 1.2] line three\n[ 1.3] ---[ end trace 0 ]---\n" +
		"[ 2.0] Kernel panic - not syncing: boom\n"))
	b.Reset()
	WriteSummary(&b, Judge(Outcome{Splats: s.Splats(), FailOn: All}), 2)
	want := "flint: kernel failure (warn, panic): WARNING: CPU: 0 PID: 1 at a.c:1 f\n" +
		"  [ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 f\n  [ 1.1] line two\n  [...]\n" +
		"  [ 2.0] Kernel panic - not syncing: boom\n"
	if b.String() != want {
		t.Fatalf("summary\n%s\nwant\n%s", b.String(), want)
	}
}
