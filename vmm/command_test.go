package vmm

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/devices/exitdev"
	"github.com/flintvm/flint/vmm/verdict"
)

// fakeCommandMachine stands in for the vCPUs: it writes to the command
// run's devices the way the guest would and records the stops asked for.
type fakeCommandMachine struct {
	mu    sync.Mutex
	stops []StopReason
	c     *commandRun
	con   io.Writer
}

// fakeCmdline is the kernel command line of the fake machines: command
// mode's printk arguments.
const fakeCmdline = "console=ttyS0 " + verdict.KernelArgs

func newFakeCommandMachine(cfg CommandConfig) *fakeCommandMachine {
	return newFakeBootedMachine(cfg, fakeCmdline)
}

// newFakeBootedMachine is a fake machine whose kernel was booted with
// cmdline.
func newFakeBootedMachine(cfg CommandConfig, cmdline string) *fakeCommandMachine {
	f := &fakeCommandMachine{}
	f.c = newCommandRun(cfg, cmdline, time.Now(), func(r StopReason, _ error) {
		f.mu.Lock()
		f.stops = append(f.stops, r)
		f.mu.Unlock()
	})
	f.con = f.c.consoleTap(io.Discard)
	return f
}

func (f *fakeCommandMachine) progress(s exitdev.Stage) {
	f.c.exit.Write(exitdev.ProgressOffset, []byte{byte(s)})
}

func (f *fakeCommandMachine) report(word uint32) {
	f.c.exit.Write(0, binary.LittleEndian.AppendUint32(nil, word))
}

func (f *fakeCommandMachine) stopped() []StopReason {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]StopReason(nil), f.stops...)
}

const panicLog = "[    1.000000] sysrq: Trigger a crash\n" +
	"[    1.000100] Kernel panic - not syncing: sysrq triggered crash\n" +
	"[    1.000200] CPU: 0 PID: 42 Comm: sh Not tainted 6.1.0-27-cloud-amd64 #1\n" +
	"[    1.000300] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\n"

// TestCommandPanicIs121: a console that prints a panic gives 121 with
// the splat, even though the guest then reset without a report, and the
// run is stopped shortly after the panic.
func TestCommandPanicIs121(t *testing.T) {
	f := newFakeCommandMachine(CommandConfig{FailOn: verdict.None, PanicGrace: 10 * time.Millisecond})
	f.progress(exitdev.StageEarly)
	f.progress(exitdev.StageExec)
	f.progress(exitdev.StageWait)
	io.WriteString(f.con, panicLog)
	deadline := time.Now().Add(5 * time.Second)
	for len(f.stopped()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := f.stopped(); len(s) != 1 || s[0] != stopReset {
		t.Fatalf("stops %v, want one reset after the panic", s)
	}
	cr := f.c.judge(Result{Reason: stopReset})
	if cr.Verdict.Code != verdict.CodeKernelFailed || len(cr.Verdict.Failing) != 1 || cr.Verdict.Failing[0].Kind != verdict.Panic {
		t.Fatalf("verdict %+v, want 121 with the panic", cr.Verdict)
	}
	if cr.BootToInit <= 0 || cr.CommandTime != 0 {
		t.Errorf("boot to init %v, command time %v: want a time to /init and none for the command", cr.BootToInit, cr.CommandTime)
	}
}

// TestCommandOutcomes: the agent's report, a splat after it, the machine's
// stop reason and silence each give their exit code.
func TestCommandOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failOn   verdict.Set
		progress []exitdev.Stage
		word     uint32
		console  string
		res      Result
		code     int
		stage    string
	}{
		{"exit 7", verdict.All, []exitdev.Stage{1, 2, 5, 6}, exitdev.Exited(7), "", Result{Reason: stopPowerOff}, 7, ""},
		{"exit 0", verdict.All, []exitdev.Stage{1, 6}, exitdev.Exited(0), "", Result{Reason: stopPowerOff}, 0, ""},
		{"warning after exit", verdict.All, []exitdev.Stage{1, 6}, exitdev.Exited(0),
			"[    2.000000] WARNING: CPU: 0 PID: 1 at kernel/x.c:1 f+0x1/0x2\n", Result{Reason: stopPowerOff}, verdict.CodeKernelFailed, ""},
		{"warning not counted", verdict.All &^ (1 << verdict.Warn), []exitdev.Stage{1, 6}, exitdev.Exited(0),
			"[    2.000000] WARNING: CPU: 0 PID: 1 at kernel/x.c:1 f+0x1/0x2\n", Result{Reason: stopPowerOff}, 0, ""},
		{"killed", verdict.All, []exitdev.Stage{1, 6}, exitdev.Signaled(9, false), "", Result{Reason: stopPowerOff}, 137, ""},
		{"not found", verdict.All, []exitdev.Stage{1, 5}, exitdev.AgentFailed(exitdev.StageExec, 2), "", Result{Reason: stopPowerOff}, 127, ""},
		{"module failed", verdict.All, []exitdev.Stage{1, 2}, exitdev.AgentFailed(exitdev.StageModules, 19), "", Result{Reason: stopPowerOff}, 120, ""},
		{"no report", verdict.All, []exitdev.Stage{1, 2}, 0, "", Result{Reason: stopReset}, 120, "modules"},
		{"no init", verdict.All, nil, 0, "", Result{Reason: stopReset}, 120, "kernel (before /init)"},
		{"timeout", verdict.All, []exitdev.Stage{1, 6}, 0, "", Result{Reason: stopTimeout}, 124, "command running"},
		{"idle", verdict.All, []exitdev.Stage{1}, 0, "", Result{Reason: stopIdle}, 122, "init (early mounts)"},
		{"vmm error", verdict.All, nil, 0, "", Result{Reason: stopError, Err: errors.New("boom")}, 125, ""},
		{"signal", verdict.All, nil, 0, "", Result{Reason: stopSignal}, 125, ""},
	} {
		f := newFakeCommandMachine(CommandConfig{FailOn: tc.failOn, ReportGrace: time.Hour})
		for _, s := range tc.progress {
			f.progress(s)
		}
		if tc.word != 0 {
			f.report(tc.word)
		}
		io.WriteString(f.con, tc.console)
		cr := f.c.judge(tc.res)
		if cr.Verdict.Code != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, cr.Verdict.Code, cr.Verdict.Reason, tc.code)
		}
		if tc.stage != "" && cr.Outcome.Stage != tc.stage {
			t.Errorf("%s: stage %q, want %q", tc.name, cr.Outcome.Stage, tc.stage)
		}
	}
}

// TestCommandPrintkTimeOff: a kernel booted with printk.time=0 (the
// user's --cmdline after command mode's printk.time=1) stamps nothing. A
// program that prints a line starting with "[1.0] " must not make the
// scanner ignore the kernel's unstamped oops after it: the run exited 0
// but fails with 121. With printk.time=1 the same unstamped line is a
// program's and the run passes.
func TestCommandPrintkTimeOff(t *testing.T) {
	console := "[1.0] my test starts\n" +
		"BUG: kernel NULL pointer dereference, address: 0000000000000000\n" +
		"Oops: 0000 [#1] SMP\n"
	for _, tc := range []struct {
		cmdline string
		code    int
	}{
		{fakeCmdline + " printk.time=0", verdict.CodeKernelFailed},
		{fakeCmdline + " printk.time=N quiet", verdict.CodeKernelFailed},
		{fakeCmdline + " printk.time=0 printk.time=1", 0},
		{fakeCmdline, 0},
	} {
		f := newFakeBootedMachine(CommandConfig{FailOn: verdict.DefaultFailOn, ReportGrace: time.Hour}, tc.cmdline)
		f.progress(exitdev.StageEarly)
		f.progress(exitdev.StageWait)
		io.WriteString(f.con, console)
		f.report(exitdev.Exited(0))
		if cr := f.c.judge(Result{Reason: stopPowerOff}); cr.Verdict.Code != tc.code {
			t.Errorf("%q: code %d (%s), want %d", tc.cmdline, cr.Verdict.Code, cr.Verdict.Reason, tc.code)
		}
	}
}

// TestCommandReportStopsAfterGrace: a guest that does not power off after
// its report is stopped after the grace period.
func TestCommandReportStopsAfterGrace(t *testing.T) {
	f := newFakeCommandMachine(CommandConfig{FailOn: verdict.All, ReportGrace: 10 * time.Millisecond})
	f.progress(exitdev.StageWait)
	time.Sleep(time.Millisecond)
	f.report(exitdev.Exited(0))
	deadline := time.Now().Add(5 * time.Second)
	for len(f.stopped()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := f.stopped(); len(s) != 1 {
		t.Fatalf("stops %v, want one after the grace", s)
	}
	if cr := f.c.judge(Result{Reason: stopUser}); cr.Verdict.Code != 0 || cr.CommandTime <= 0 {
		t.Fatalf("verdict %+v command time %v", cr.Verdict, cr.CommandTime)
	}
}

// TestCommandIdle: silence for the idle timeout stops the run; output
// keeps it alive. A stop while writing is a failure only when this
// goroutine never went the timeout between writes (a starved one does:
// then the round is run again with twice the timeout, up to 2.4 s).
func TestCommandIdle(t *testing.T) {
	for idle := 150 * time.Millisecond; ; idle *= 2 {
		f := newFakeCommandMachine(CommandConfig{IdleTimeout: idle})
		done := make(chan struct{})
		prev := time.Now()
		go f.c.watchIdle(done)
		out := activityWriter{c: f.c}
		var pause time.Duration // the longest the output may have paused
		for i := 0; i < 6; i++ {
			time.Sleep(idle / 3)
			before := time.Now()
			out.Write([]byte("x"))
			pause, prev = max(pause, time.Since(prev)), before
		}
		s := f.stopped()
		if pause = max(pause, time.Since(prev)); len(s) != 0 && pause < idle {
			t.Fatalf("stopped %v while the command wrote output (at most %v apart, timeout %v)", s, pause, idle)
		}
		if len(s) != 0 {
			close(done)
			if idle > 2*time.Second {
				t.Fatalf("the output paused %v, over the idle timeout %v, with every timeout", pause, idle)
			}
			t.Logf("the output paused %v, over the idle timeout %v: again with a longer one", pause, idle)
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(f.stopped()) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(done)
		if s := f.stopped(); len(s) != 1 || s[0] != stopIdle {
			t.Fatalf("stops %v, want the idle stop", s)
		}
		return
	}
}

func TestParseConsoleStderr(t *testing.T) {
	if c, err := ParseConsole("stderr"); err != nil || c != "stderr" {
		t.Fatalf("stderr: %q %v", c, err)
	}
	if _, err := ParseConsole("stdout"); err == nil {
		t.Fatal("stdout accepted")
	}
}

// blockingWriter holds each Write until release is closed.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return len(p), nil
}

// TestCommandIdleNotWhileHostBlocks: a command whose output Flint's own
// stdout holds up (flint run --idle-timeout 1m -- make | less, the reader
// on one page) is not idle: the guest waits for the host. The idle clock
// stopped at the write's start and the run was killed as silent (122).
func TestCommandIdleNotWhileHostBlocks(t *testing.T) {
	f := newFakeCommandMachine(CommandConfig{IdleTimeout: 100 * time.Millisecond})
	bw := blockingWriter{release: make(chan struct{})}
	wrote := make(chan struct{})
	go func() {
		activityWriter{c: f.c, w: bw}.Write([]byte("page two"))
		close(wrote)
	}()
	// The watcher starts once the write is held: a write goroutine that
	// started over the idle timeout after it would make the stop right.
	for deadline := time.Now().Add(5 * time.Second); f.c.writing.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the write never began")
		}
	}
	done := make(chan struct{})
	go f.c.watchIdle(done)
	defer close(done)
	time.Sleep(400 * time.Millisecond)
	if s := f.stopped(); len(s) != 0 {
		t.Errorf("stopped %v while the host held the command's output", s)
	}
	close(bw.release)
	<-wrote
	// Silence after the write counts again.
	deadline := time.Now().Add(5 * time.Second)
	for len(f.stopped()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := f.stopped(); len(s) != 1 || s[0] != stopIdle {
		t.Errorf("stops %v after the write, want the idle stop", s)
	}
}

// TestCommandAgentLineInReason: when the agent fails a step, the
// verdict's reason carries the agent's own last console line (which
// mount, module or directory), not only the stage and errno; a command's
// own failure does not.
func TestCommandAgentLineInReason(t *testing.T) {
	line := agent.LogPrefix + "mount /sys/fs/cgroup: permission denied"
	for _, tc := range []struct {
		name string
		word uint32
		want bool
	}{
		{"agent failed", exitdev.AgentFailed(exitdev.StageMounts, 13), true},
		{"command failed", exitdev.Exited(3), false},
	} {
		f := newFakeCommandMachine(CommandConfig{ReportGrace: time.Hour})
		f.progress(exitdev.StageEarly)
		io.WriteString(f.con, "[    1.000000] x\r\n"+line+"\r\n")
		f.report(tc.word)
		cr := f.c.judge(Result{Reason: stopPowerOff})
		if got := strings.Contains(cr.Verdict.Reason, "["+line+"]"); got != tc.want {
			t.Errorf("%s: reason %q: agent line shown %v, want %v", tc.name, cr.Verdict.Reason, got, tc.want)
		}
	}
	// The line is the guest's: a C1 CSI or a bidi override in it must not
	// reach the terminal flint prints the reason on.
	f := newFakeCommandMachine(CommandConfig{ReportGrace: time.Hour})
	f.progress(exitdev.StageEarly)
	io.WriteString(f.con, agent.LogPrefix+"mount \u009b2J\u202eevil\n")
	f.report(exitdev.AgentFailed(exitdev.StageMounts, 13))
	if r := f.c.judge(Result{Reason: stopPowerOff}).Verdict.Reason; strings.ContainsAny(r, "\u009b\u202e") || !strings.Contains(r, "evil") {
		t.Errorf("reason %q: want the agent's line without C1 or bidi controls", r)
	}
}
