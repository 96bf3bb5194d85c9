package verdict

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/devices/exitdev"
)

func scan(t *testing.T, log string) []Splat {
	t.Helper()
	s := NewScanner(Limits{}, nil)
	s.Write([]byte(log))
	s.Flush()
	return s.Splats()
}

func kindsOf(splats []Splat) []Kind {
	ks := []Kind{}
	for _, sp := range splats {
		ks = append(ks, sp.Kind)
	}
	return ks
}

func readLog(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "logs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRealLogs runs the scanner over kernel log excerpts in the formats
// Linux 6.x prints, with the first and last excerpt lines each splat must
// keep.
func TestRealLogs(t *testing.T) {
	tests := []struct {
		file  string
		kinds []Kind
		// first and last excerpt line (substrings) of each splat
		first, last []string
	}{
		{"warn.log", []Kind{Warn},
			[]string{"[ cut here ]"}, []string{"---[ end trace 0000000000000000 ]---"}},
		{"null-deref-panic.log", []Kind{Oops, Panic},
			[]string{"BUG: kernel NULL pointer dereference", "Kernel panic - not syncing: Fatal exception"},
			[]string{"---[ end trace", "---[ end Kernel panic - not syncing: Fatal exception ]---"}},
		{"sysrq-panic.log", []Kind{Panic},
			[]string{"Kernel panic - not syncing: sysrq triggered crash"}, []string{"---[ end Kernel panic"}},
		{"kasan.log", []Kind{KASAN},
			[]string{"] ======"}, []string{"] ======"}},
		{"kfence.log", []Kind{KFENCE},
			[]string{"] ======"}, []string{"] ======"}},
		{"ubsan.log", []Kind{UBSAN, UBSAN},
			[]string{"] ======", "[ cut here ]"}, []string{"] ======", "---[ end trace ]---"}},
		{"lockdep.log", []Kind{Lockdep, Lockdep, Lockdep, Lockdep},
			[]string{"] ======", "] ======", "] ======", "] ======"},
			[]string{"rtnl_lock+0x15/0x20", "-------", "possible recursive locking", "6.6.0 #1 Not tainted"}},
		{"hung-lockup-rcu.log", []Kind{Hung, Lockup, Lockup, RCU, RCU, RCU},
			[]string{"INFO: task kworker/u4:1:49 blocked", "soft lockup", "hard LOCKUP", "detected stalls", "self-detected stall", "expedited stalls"},
			nil},
		{"bug.log", []Kind{Bug, Bug, Oops, Bug},
			[]string{"BUG: sleeping function", "[ cut here ]", "general protection fault", "[ cut here ]"},
			[]string{"", "---[ end trace", "---[ end trace", "---[ end trace"}},
		{"clean-boot.log", []Kind{}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			splats := scan(t, readLog(t, tc.file))
			if got := kindsOf(splats); !reflect.DeepEqual(got, tc.kinds) {
				t.Fatalf("kinds %v, want %v", got, tc.kinds)
			}
			for i, sp := range splats {
				if i < len(tc.first) && !strings.Contains(sp.Excerpt[0], tc.first[i]) {
					t.Errorf("splat %d (%s) starts %q, want %q", i, sp.Kind, sp.Excerpt[0], tc.first[i])
				}
				last := sp.Excerpt[len(sp.Excerpt)-1]
				if i < len(tc.last) && !strings.Contains(last, tc.last[i]) {
					t.Errorf("splat %d (%s) ends %q, want %q", i, sp.Kind, last, tc.last[i])
				}
				if sp.Uptime == "" || sp.Line == 0 || sp.Title == "" || strings.HasPrefix(sp.Title, "[") {
					t.Errorf("splat %d: uptime %q line %d title %q", i, sp.Uptime, sp.Line, sp.Title)
				}
			}
		})
	}
}

func TestExcerptDetails(t *testing.T) {
	splats := scan(t, readLog(t, "null-deref-panic.log"))
	oops := splats[0]
	if oops.Title != "BUG: kernel NULL pointer dereference, address: 0000000000000008" || oops.Uptime != "12.804113" || oops.Line != 1 {
		t.Fatalf("oops title %q uptime %q line %d", oops.Title, oops.Uptime, oops.Line)
	}
	if !strings.Contains(strings.Join(oops.Excerpt, "\n"), "Oops: 0000 [#1] PREEMPT SMP NOPTI") {
		t.Fatal("the Oops line is not part of the NULL-dereference splat")
	}
	if len(oops.Excerpt) != 13 || oops.Truncated {
		t.Fatalf("oops excerpt has %d lines (truncated %v), want 13", len(oops.Excerpt), oops.Truncated)
	}
	w := scan(t, readLog(t, "warn.log"))[0]
	for _, l := range w.Excerpt {
		if strings.Contains(l, "renamed from") {
			t.Fatal("a line after the end marker is in the excerpt")
		}
	}
	k := scan(t, readLog(t, "kasan.log"))[0]
	if strings.Contains(strings.Join(k.Excerpt, "\n"), "Disabling lock debugging") {
		t.Fatal("KASAN excerpt runs past its closing rule")
	}
}

func TestFalseFriends(t *testing.T) {
	tests := []struct{ name, log string }{
		{"user WARNING after kernel lines", "[    1.000000] Run /init as init process\nWARNING: disk almost full\nBUG: in my program\nKernel panic - not syncing: just a string\n"},
		{"BUG inside a word", "[    1.0] DEBUG: x\n[    1.1] XBUG: y\n[    1.2] BUGS: z\n[    1.3] debugBUG: w\n"},
		{"marker mid-line", "[    1.0] audit: WARNING: CPU: 0 quoted\n[    1.1] echo 'Oops: 0000 [#1]'\n"},
		{"end marker alone", "[    1.0] ---[ end Kernel panic - not syncing: x ]---\n[    1.1] ---[ end trace 0 ]---\n"},
		{"hung without its phrase", "[    1.0] INFO: task list done\n"},
		{"hard lockup detector chatter", "[    0.3] NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.\n[    0.4] watchdog: CPUx: Watchdog detected hard LOCKUP\n"},
		{"rcu chatter", "[    0.1] rcu: Hierarchical RCU implementation.\n[    0.2] rcu: INFO: no stalls here\n"},
		{"separators and cut here alone", "[    1.0] ==================================\n[    1.1] ------------[ cut here ]------------\n[    1.2] ok\n"},
	}
	for _, tc := range tests {
		if got := scan(t, tc.log); len(got) != 0 {
			t.Errorf("%s: found %v (%q)", tc.name, kindsOf(got), got[0].Title)
		}
	}
}

func TestPrefixesAndNoTimestamps(t *testing.T) {
	tests := []struct {
		name, log string
		want      Kind
		title     string
	}{
		{"printk.time=0", "Run /init\nWARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n", Warn, "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2"},
		{"level prefix", "<0>[   3.5] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n", Panic, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{"caller id", "[    7.000001][    T1] BUG: KASAN: wild-memory-access in f\n", KASAN, "BUG: KASAN: wild-memory-access in f"},
		{"ANSI colours and CRLF", "\x1b[1;31m[    2.000000] \x1b[0mOops: 0002 [#1] SMP\r\n", Oops, "Oops: 0002 [#1] SMP"},
		{"leading spaces", "[    2.0]  watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]\n", Lockup, "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]"},
		{"hard lockup, newer kernels", "[  50.0] watchdog: CPU2: Watchdog detected hard LOCKUP on cpu 1\n", Lockup, "watchdog: CPU2: Watchdog detected hard LOCKUP on cpu 1"},
		{"hard lockup without prefix", "[  50.0] Watchdog detected hard LOCKUP on cpu 3\n", Lockup, "Watchdog detected hard LOCKUP on cpu 3"},
		{"old rcu format", "[  100.1] INFO: rcu_sched detected stalls on CPUs/tasks: { 0} (detected by 1, t=21002 jiffies)\n", RCU, "INFO: rcu_sched detected stalls on CPUs/tasks: { 0} (detected by 1, t=21002 jiffies)"},
		{"old lockdep format", "[   5.0] [ INFO: possible circular locking dependency detected ]\n", Lockdep, "[ INFO: possible circular locking dependency detected ]"},
		{"no newline at the end", "[   5.0] BUG: unable to handle page fault for address: ffffffffff600000", Oops, "BUG: unable to handle page fault for address: ffffffffff600000"},
		{"control bytes", "[   5.0] BUG: bad\x00 page\x07 state\n", Bug, "BUG: bad  page  state"},
		// U+009B is CSI to a terminal that takes C1 controls in UTF-8
		// (xterm, VTE): WriteSummary prints titles and excerpts to stderr.
		{"C1 controls", "[   5.0] BUG: bad \u009b2J page \u009d0;x\u0007state\n", Bug, "BUG: bad  2J page  0;x state"},
		{"bidi overrides", "[   5.0] BUG: bad \u202epage\u2066 state\u200f\n", Bug, "BUG: bad  page  state"},
	}
	for _, tc := range tests {
		got := scan(t, tc.log)
		if len(got) != 1 || got[0].Kind != tc.want || got[0].Title != tc.title {
			t.Errorf("%s: %+v, want one %s titled %q", tc.name, got, tc.want, tc.title)
		}
	}
}

// TestKernelLineAfterPartialOutput: a program writing to /dev/console
// without a newline (a progress bar, "....") goes through the tty, not
// printk, so the kernel's next record continues that console line. Its
// timestamp is then mid-line, and the splat must still count: a line
// without a timestamp at its start is otherwise ignored. Without a
// timestamp seen before, a stamp mid-line does not switch the scanner to
// timestamped mode (a program's "[1.0]" would hide printk.time=0 lines).
func TestKernelLineAfterPartialOutput(t *testing.T) {
	log := "[    1.000000] Run /init as init process\n" +
		"progress ....<1>[    5.000001] BUG: kernel NULL pointer dereference, address: 0000000000000000\n" +
		"[    5.000002] Oops: 0000 [#1] SMP\n"
	got := scan(t, log)
	if len(got) != 1 || got[0].Kind != Oops || got[0].Uptime != "5.000001" || got[0].Title != "BUG: kernel NULL pointer dereference, address: 0000000000000000" {
		t.Fatalf("%+v, want one oops at 5.000001", got)
	}
	// A line longer than the scanner keeps: the record is past its
	// first LineBytes bytes. A kernel line that long is kept from its
	// start.
	long := "[    1.000000] Run /init as init process\n" + strings.Repeat("[=.]", 300) +
		"[    5.000001] WARNING: CPU: 0 PID: 1 at x.c:1 f\n" +
		"[    6.000000] BUG: bad page state " + strings.Repeat("[x]", 300) + "\n"
	got = scan(t, long)
	if len(got) != 2 || got[0].Kind != Warn || got[0].Uptime != "5.000001" || got[1].Kind != Bug || got[1].Title[:19] != "BUG: bad page state" {
		t.Fatalf("after a long line: %+v, want a warning at 5.000001 and a bug", got)
	}
	// The splat as the console's first kernel line (loglevel=5 shows
	// little before it), after a program's output, short and long.
	for _, junk := range []string{"progress ....", strings.Repeat("[=.]", 300)} {
		got = scan(t, "Run /init\n"+junk+"[    5.000001] WARNING: CPU: 0 PID: 1 at x.c:1 f\n[    5.1] more\n")
		if len(got) != 1 || got[0].Kind != Warn || got[0].Uptime != "5.000001" {
			t.Fatalf("first kernel line after %d bytes: %+v, want one warning at 5.000001", len(junk), got)
		}
	}
	got = scan(t, "echo [1.0] hello\nWARNING: CPU: 0 PID: 1 at x.c:1 f\n")
	if len(got) != 1 || got[0].Kind != Warn {
		t.Fatalf("printk.time=0: %+v, want one warning", got)
	}
}

// TestSplitWrites feeds every log in pieces of every size from 1 to 64
// bytes: the result must not depend on how the console chunked it.
func TestSplitWrites(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "logs", "*.log"))
	if len(files) < 8 {
		t.Fatalf("only %d logs", len(files))
	}
	for _, f := range files {
		log, _ := os.ReadFile(f)
		want := scan(t, string(log))
		for n := 1; n <= 64; n++ {
			s := NewScanner(Limits{}, nil)
			for b := log; len(b) > 0; b = b[min(n, len(b)):] {
				s.Write(b[:min(n, len(b))])
			}
			s.Flush()
			if got := s.Splats(); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s in %d-byte writes: %v, want %v", f, n, kindsOf(got), kindsOf(want))
			}
		}
	}
}

// TestFirstOfKindKeptPastLimit: with --fail-on leaving warnings out, a
// kernel that warned more times than the scanner keeps and then oopsed
// must still fail the run (Judge sees only the kept splats).
func TestFirstOfKindKeptPastLimit(t *testing.T) {
	s := NewScanner(Limits{Splats: 2}, nil)
	for range 3 {
		s.Write([]byte("[    1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f\n[    1.1] ---[ end trace 0 ]---\n"))
	}
	s.Write([]byte("[    2.0] BUG: kernel NULL pointer dereference, address: 0\n[    2.1] Oops: 0000 [#1] SMP\n"))
	s.Write([]byte("[    3.0] BUG: kernel NULL pointer dereference, address: 8\n"))
	splats := s.Splats()
	if got := kindsOf(splats); !reflect.DeepEqual(got, []Kind{Warn, Warn, Oops}) || s.Count(Oops) != 2 {
		t.Fatalf("kept %v, %d oopses counted; want [warn warn oops], 2", got, s.Count(Oops))
	}
	failOn, err := ParseFailOn("oops")
	if err != nil {
		t.Fatal(err)
	}
	o := Outcome{Splats: splats, FailOn: failOn, Command: &exitdev.Report{Kind: exitdev.KindExited}}
	if v := Judge(o); v.Result != KernelFailed {
		t.Fatalf("verdict %s (%s), want %s", v.Result, v.Reason, KernelFailed)
	}
}

func TestLimitsAndCallback(t *testing.T) {
	var seen []Kind
	s := NewScanner(Limits{Splats: 2, ExcerptLines: 3, LineBytes: 40}, func(sp Splat) { seen = append(seen, sp.Kind) })
	var log bytes.Buffer
	for range 5 {
		log.WriteString("[    1.0] WARNING: CPU: 0 PID: 1 at " + strings.Repeat("x", 100) + "\n")
		for range 10 {
			log.WriteString("[    1.1]  frame\n")
		}
	}
	s.Write(log.Bytes())
	splats := s.Splats()
	if len(splats) != 2 || s.Count(Warn) != 5 || len(seen) != 5 {
		t.Fatalf("kept %d, counted %d, callbacks %d; want 2 5 5", len(splats), s.Count(Warn), len(seen))
	}
	for _, sp := range splats {
		if len(sp.Excerpt) != 3 || !sp.Truncated {
			t.Fatalf("excerpt %d lines, truncated %v", len(sp.Excerpt), sp.Truncated)
		}
		if len(sp.Excerpt[0]) > 40 {
			t.Fatalf("line of %d bytes kept", len(sp.Excerpt[0]))
		}
	}
	if s.Seen() != None.With(Warn) || s.Count(numKinds) != 0 {
		t.Fatalf("seen %v", s.Seen())
	}
	// Splats returns copies.
	splats[0].Excerpt[0] = "changed"
	if s.Splats()[0].Excerpt[0] == "changed" {
		t.Fatal("Splats shares its excerpts")
	}
}

func BenchmarkScanner(b *testing.B) {
	var log []byte
	for _, f := range []string{"clean-boot.log", "warn.log", "kasan.log", "hung-lockup-rcu.log"} {
		d, err := os.ReadFile(filepath.Join("testdata", "logs", f))
		if err != nil {
			b.Fatal(err)
		}
		log = append(log, d...)
	}
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewScanner(Limits{}, nil)
		for p := log; len(p) > 0; p = p[min(256, len(p)):] {
			s.Write(p[:min(256, len(p))])
		}
	}
}

// TestConcurrentUse writes from one goroutine while another reads, as the
// vCPU's console and the VMM's run loop do (run with -race).
func TestConcurrentUse(t *testing.T) {
	s := NewScanner(Limits{}, nil)
	log := []byte(readLog(t, "null-deref-panic.log"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			s.Write(log)
		}
	}()
	for range 100 {
		_ = s.Splats()
		_ = s.Seen()
	}
	<-done
	if s.Count(Panic) != 20 || s.Count(Oops) != 20 {
		t.Fatalf("panics %d oopses %d, want 20 each", s.Count(Panic), s.Count(Oops))
	}
}

// TestBracketFloodIsLinear: a console line full of '[' past the line
// buffer costs the same per byte as any other (the check whether a full
// buffer keeps its start is made once per buffer): about 5 µs a byte
// when it was made for each '[', 1 MiB taking seconds.
func TestBracketFloodIsLinear(t *testing.T) {
	for _, start := range []string{"[    1.0] x", "junk"} {
		s := NewScanner(Limits{}, nil)
		s.Write([]byte("[    0.5] boot\n" + start))
		flood := bytes.Repeat([]byte("["), 1<<20)
		st := time.Now()
		s.Write(flood)
		if d := time.Since(st); d > time.Second {
			t.Fatalf("1 MiB of '[' after %q took %v", start, d)
		}
	}
}
