package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for hostWatch.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func watchFixture() (*hostWatch, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	boots := []boot{{name: "cloud/cpus=1", timeout: 300 * time.Second}, {name: "cloud/cpus=2", timeout: 300 * time.Second}}
	return newHostWatch(boots, clk.now), clk
}

func feed(w *hostWatch, lines ...string) {
	// Split writes at odd places, as a pipe does.
	s := strings.Join(lines, "\r\n") + "\r\n"
	for len(s) > 0 {
		n := min(7, len(s))
		_, _ = w.Write([]byte(s[:n]))
		s = s[n:]
	}
}

// Soft lockup report as L1 (Debian 6.1, softlockup_all_cpu_backtrace=1, loglevel=5)
// prints it, shortened.
var lockupReport = []string{
	"<0>[  101.512345] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [flint:109]",
	"<4>[  101.512400] Modules linked in: kvm_amd(+) ccp kvm irqbypass",
	"<4>[  101.512450] CPU: 0 PID: 109 Comm: flint Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
	"<4>[  101.512500] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
	"<4>[  101.512550] RIP: 0010:svm_vcpu_run+0x2f1/0x860 [kvm_amd]",
	"<4>[  101.512600] Call Trace:",
	"<4>[  101.512650]  <TASK>",
	"<4>[  101.512700]  kvm_arch_vcpu_ioctl_run+0xdc6/0x1790 [kvm]",
	"<4>[  101.512750] Sending NMI from CPU 0 to CPUs 1:",
	"<4>[  101.512800] NMI backtrace for cpu 1",
	"<4>[  101.512850] CPU: 1 PID: 29 Comm: kworker/1:1 Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
	"<4>[  101.512900] RIP: 0010:smp_call_function_many_cond+0x12a/0x380",
	"<4>[  101.512950] RSP: 0018:ffffb3c1c00d3d20 EFLAGS: 00000202",
}

func TestHostWatchSoftLockup(t *testing.T) {
	w, clk := watchFixture()
	feed(w, "NESTED-JOB-START", "JOB-START cloud/cpus=1", "FLINT-BOOT-OK cpus=1", "", "JOB cloud/cpus=1 rc=0 secs=20.1",
		"JOB-START cloud/cpus=2")
	clk.t = clk.t.Add(30 * time.Second)
	feed(w, lockupReport...)
	if r := w.check(); r != "" {
		t.Fatalf("wedged at once: %q (want a grace period)", r)
	}
	clk.t = clk.t.Add(defaultWedgeGrace)
	feed(w, "<3>[  129.1] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
		"<0>[  129.5] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:1:29]")
	r := w.check()
	for _, want := range []string{"L1 soft lockup", "CPU#0 flint:109 at svm_vcpu_run+0x2f1/0x860", "(stuck 26s)",
		"CPU#1 kworker/1:1:29 at smp_call_function_many_cond+0x12a/0x380", "1 RCU stall"} {
		if !strings.Contains(r, want) {
			t.Errorf("reason %q lacks %q", r, want)
		}
	}
	if r2 := w.finish(); r2 != r {
		t.Errorf("finish() = %q, want the same reason %q", r2, r)
	}
}

// TestHostWatchVCPUStuck: flint's dump saying a kicked vCPU never left
// KVM_RUN ends the session as a lost host (not a flint hang), naming the
// boot; the same line outside a boot, or after the boot ended, does not.
func TestHostWatchVCPUStuck(t *testing.T) {
	w, _ := watchFixture()
	feed(w, "JOB-START jailed/cloud", `time=2026-12-06T13:49:15.179Z level=WARN msg="dump: vCPU did not leave KVM_RUN" vcpu=1 waited=2s`)
	r := w.check()
	if !strings.Contains(r, "L1 lost boot jailed/cloud's vCPU") || !strings.Contains(r, "vcpu=1") {
		t.Errorf("reason %q", r)
	}
	if w.hung() {
		t.Error("a vCPU stuck in L1's KVM_RUN counted as a flint hang")
	}
	// The same at a stop (seen 2026-12-07: a panicked guest's stop never
	// returned its vCPU; the thread outlived SIGKILL).
	ws, _ := watchFixture()
	feed(ws, "JOB-START cmd/cloud/panic", `time=2026-12-07T05:01:02.003Z level=ERROR msg="stop: vCPU did not leave KVM_RUN: the kernel (or what virtualizes the CPU under it) does not return it; kicking it again" vcpu=0 waited=5s`)
	if r := ws.check(); !strings.Contains(r, "L1 lost boot cmd/cloud/panic's vCPU") || ws.hung() {
		t.Errorf("at a stop: reason %q, hung %v", r, ws.hung())
	}
	w2, _ := watchFixture()
	feed(w2, "JOB-START a", "JOB a rc=0 secs=1", `msg="dump: vCPU did not leave KVM_RUN" vcpu=0`)
	if r := w2.check(); r != "" {
		t.Errorf("outside a boot: %q", r)
	}
}

func TestHostWatchRecovers(t *testing.T) {
	w, clk := watchFixture()
	feed(w, "JOB-START cloud/cpus=2")
	feed(w, lockupReport[0])
	clk.t = clk.t.Add(5 * time.Second)
	feed(w, "FLINT-BOOT-OK cpus=2", "JOB cloud/cpus=2 rc=0 secs=80.0")
	clk.t = clk.t.Add(time.Hour)
	if r := w.check(); r != "" {
		t.Errorf("a boot that ended after a soft lockup still counts as a wedge: %q", r)
	}
	if r := w.finish(); r != "" {
		t.Errorf("finish() = %q after every boot ended", r)
	}
}

func TestHostWatchDeadline(t *testing.T) {
	w, clk := watchFixture()
	feed(w, "JOB-START cloud/cpus=2")
	clk.t = clk.t.Add(300*time.Second + 10*time.Second + bootDeadlineSlack - time.Second)
	if r := w.check(); r != "" {
		t.Fatalf("wedged before the deadline: %q", r)
	}
	clk.t = clk.t.Add(2 * time.Second)
	r := w.check()
	if !strings.Contains(r, "boot cloud/cpus=2 still running") {
		t.Errorf("reason %q does not name the boot past its deadline", r)
	}
}

func TestHostWatchEndedDuringLockup(t *testing.T) {
	// QEMU ended (killed or L1 panicked) inside the grace period: still a wedge.
	w, _ := watchFixture()
	feed(w, "JOB-START cloud/cpus=2")
	feed(w, lockupReport...)
	if r := w.finish(); !strings.Contains(r, "CPU#0 flint:109") {
		t.Errorf("finish() = %q, want a soft lockup verdict", r)
	}
}

// TestHostWatchGuestLockup: the guest's own soft lockup (L2's console, default
// message format) is the guest's failure, not a wedged host.
func TestHostWatchGuestLockup(t *testing.T) {
	w, clk := watchFixture()
	feed(w, "JOB-START cloud/cpus=2",
		"[   30.100000] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [swapper/1:0]",
		"[   30.100100] CPU: 1 PID: 0 Comm: swapper/1 Not tainted 6.1.0-56-cloud-amd64 #1",
		"[   30.100200] RIP: 0010:native_safe_halt+0xb/0x10")
	clk.t = clk.t.Add(2 * defaultWedgeGrace)
	if r := w.check(); r != "" {
		t.Errorf("a guest soft lockup was taken for a wedged host: %q", r)
	}
	// An L1 line spliced into a guest line still counts.
	feed(w, "guest outp<0>[  101.512345] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [flint:109]")
	clk.t = clk.t.Add(defaultWedgeGrace)
	if r := w.check(); !strings.Contains(r, "CPU#0 flint:109") || strings.Contains(r, "swapper") {
		t.Errorf("reason %q, want only the L1 lockup of CPU#0", r)
	}
}

func TestHostWatchQuiet(t *testing.T) {
	w, clk := watchFixture()
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("cloud/cpus=%d", i+1)
		feed(w, "JOB-START "+name, "[    1.0] smp: Brought up 1 node, 2 CPUs", "FLINT-BOOT-OK cpus=2",
			"JOB "+name+" rc=1 secs=30.0")
		clk.t = clk.t.Add(10 * time.Minute)
	}
	if r := w.finish(); r != "" {
		t.Errorf("finish() = %q for a host that never locked up", r)
	}
}

// fakeNestedHost stands in for scripts/nested-host.sh: it "runs" the boots of the
// job script it is given, printing the framing lines. In its first session boot b
// ends with status 1, and by FAKE_MODE: wedge: L1 wedges during boot c (soft lockup
// lines, then silence); crash: L1 panics during boot c (crash2: in the first two
// sessions; crashall: in every session); lost: boot b also shows a vCPU state the
// nested virtualization lost (lost2: in the first two sessions); hang: boot c
// stays silent while L1 keeps beating (a flint hang; hangcrash: and L1 panics
// when asked for a dump); exitlate: boot c's guest
// finishes, then its VMM stays silent until L1 is asked for a dump, and ends
// while d starts; silent: L1's heartbeat and output stop during boot c (a lost
// L1).
const fakeNestedHost = `#!/bin/bash
while (($#)); do
	case $1 in
	--script) job=$2; shift ;;
	--beat) beat=$2; shift ;;
	--control) ctl=$2; shift ;;
	esac
	shift
done
n=$(cat "$FAKE_DIR/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" >"$FAKE_DIR/count"
cp "$job" "$FAKE_DIR/job$n.sh"
# The heartbeat, until $FAKE_DIR/silent$n exists; "dump" on the control FIFO
# prints a flint dump line, as L1 makes every flint do. Background helpers end
# with the fake (they hold its output open).
trap 'kill $(jobs -p) 2>/dev/null' EXIT
trap 'exit 143' TERM
if [[ -n $beat ]]; then
	( i=0; while [[ ! -e $FAKE_DIR/silent$n ]]; do i=$((i + 1)); echo "L1-BEAT n=$i up=$i" >>"$beat"; [[ $i == 2 ]] && echo "L1-PS 42 flint S wchan=futex_wait_queue" >>"$beat"; sleep 0.2; done ) &
fi
if [[ -n $ctl ]]; then
	mkfifo "$ctl.in"
	( while read -r c; do
		[[ $c == dump ]] && echo 'level=WARN msg="virtio queue" fake=dump' && : >"$FAKE_DIR/dumped$n"
		[[ $c == dump && $FAKE_MODE == hanglost ]] && echo 'level=WARN msg="vCPU state is impossible for this guest: its page tables (CR3) are outside guest RAM" vcpu=1'
		[[ $c == dump && $FAKE_MODE == hangstuck ]] && echo 'level=WARN msg="dump: vCPU did not leave KVM_RUN" vcpu=0 waited=2s'
		[[ $c == dump && $FAKE_MODE == hangcrash ]] && printf '%s\n' "<0>[  188.7] BUG: TASK stack guard page was hit at 00000000bad165e1" \
			"<4>[  188.7] CPU: 0 PID: 824 Comm: flint Not tainted 6.1.0-57-amd64 #1" "<0>[  189.0] Kernel panic - not syncing: corrupted stack end detected inside scheduler"
	done <>"$ctl.in" ) &
fi
echo NESTED-JOB-START
for name in $(sed -n "s/^run_boot '\([^']*\)'.*/\1/p" "$job"); do
	echo "JOB-START $name"
	if [[ $n == 1 && $name == c && ( $FAKE_MODE == hang || $FAKE_MODE == hanglost || $FAKE_MODE == hangstuck || $FAKE_MODE == hangcrash ) ]]; then
		sleep 600 & wait $! # flint hangs; L1 keeps beating
	fi
	if [[ $n == 1 && $name == c && $FAKE_MODE == exitlate ]]; then
		echo "FLINT-SCRIPT-EXIT=0" # the guest is done; its VMM exits only once dumped
		while [[ ! -e $FAKE_DIR/dumped$n ]]; do sleep 0.1; done
	fi
	if [[ $n == 1 && $name == d && $FAKE_MODE == exitlate ]]; then
		sleep 600 & wait $! # started during the dump's wait; stopped with the session
	fi
	if [[ $n == 1 && $name == c && $FAKE_MODE == silent ]]; then
		: >"$FAKE_DIR/silent$n" # L1 is gone: no beat, no output
		sleep 600 & wait $!
	fi
	if [[ $name == c && ( ($n == 1 && $FAKE_MODE == crash) || ($n -le 2 && $FAKE_MODE == crash2) || $FAKE_MODE == crashall ) ]]; then
		echo "<0>[  119.7] BUG: TASK stack guard page was hit at 000000000829c802"
		echo "<4>[  119.7] CPU: 0 PID: 621 Comm: flint Not tainted 6.1.0-56-amd64 #1"
		echo "<0>[  119.8] Kernel panic - not syncing: Fatal exception in interrupt"
		exit 125
	fi
	if [[ $n == 1 && $name == c && $FAKE_MODE == wedge ]]; then
		echo "<0>[  101.5] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [flint:109]"
		echo "<4>[  101.6] CPU: 0 PID: 109 Comm: flint Not tainted 6.1.0-56-amd64 #1"
		echo "<4>[  101.7] RIP: 0010:kvm_arch_vcpu_ioctl_run+0x1/0x2 [kvm]"
		sleep 600 & wait $!
	fi
	rc=0
	[[ $n == 1 && $name == b ]] && rc=1
	if [[ $name == b && ( ($n == 1 && $FAKE_MODE == lost) || ($n -le 2 && $FAKE_MODE == lost2) ) ]]; then
		echo 'level=WARN msg="vCPU state is impossible for this guest: its page tables (CR3) are outside guest RAM" vcpu=0'
	fi
	echo "FLINT-BOOT-OK cpus=1"
	echo "JOB $name rc=$rc secs=1.0"
done
echo NESTED-EXIT=0
`

// TestNestedRetryAfterWedge runs the harness against fakeNestedHost: the wedged
// session is stopped, only the boots that never finished run again, and the boot
// that failed (status 1) is not retried.
func TestNestedRetryAfterWedge(t *testing.T) {
	testNestedRetry(t, "wedge", "CPU#0 flint:109 at kvm_arch_vcpu_ioctl_run")
}

// TestNestedRetryAfterCrash: the same when L1's kernel panics during boot c
// (nested-host.sh exits 125).
func TestNestedRetryAfterCrash(t *testing.T) {
	testNestedRetry(t, "crash", "crashed: L1 BUG: TASK stack guard page was hit")
}

// TestNestedRetryAfterTwoCrashes: L1 panics during boot c in two sessions in a
// row; the third runs c and d, and a and b keep their first results.
func TestNestedRetryAfterTwoCrashes(t *testing.T) {
	t.Setenv("FAKE_MODE", "crash2")
	e, boots, dir := fakeNested(t)
	res, err := e.runNested(t, boots)
	if err != nil {
		t.Fatalf("runNested: %v", err)
	}
	for _, job := range []string{"job2.sh", "job3.sh"} {
		b, err := os.ReadFile(filepath.Join(dir, job))
		if err != nil || strings.Contains(string(b), "run_boot 'b'") || !strings.Contains(string(b), "run_boot 'c'") {
			t.Errorf("%s should run c and d only (%v):\n%s", job, err, b)
		}
	}
	for name, rc := range map[string]int{"a": 0, "b": 1, "c": 0, "d": 0} {
		if r := res[name]; r == nil || r.unfinished || r.rc != rc {
			t.Errorf("%s: %+v, want finished with status %d", name, r, rc)
		}
	}
}

// TestNestedGivesUp: an L1 that crashes in every session is given up after
// maxL1Losses sessions, and the cut-off boot says why.
func TestNestedGivesUp(t *testing.T) {
	t.Setenv("FAKE_MODE", "crashall")
	e, boots, dir := fakeNested(t)
	res, err := e.runNested(t, boots)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("lost %d times", maxL1Losses)) {
		t.Fatalf("runNested: %v, want giving up after %d losses", err, maxL1Losses)
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("job%d.sh", maxL1Losses+1))); err == nil {
		t.Errorf("a session after the %dth loss ran", maxL1Losses)
	}
	if r := res["c"]; r == nil || !r.unfinished || !strings.Contains(r.host, "stack guard page") {
		t.Errorf("c: %+v, want unfinished with the crash as the reason", r)
	}
}

// TestNestedRerunLostState: boot b shows a vCPU state the nested
// virtualization lost (vmm.ImpossibleStateMsg); runBoots runs it again in a
// fresh nested host, with d, which needs b's changes; c needs a, which is
// not rerun, so neither is c.
func TestNestedRerunLostState(t *testing.T) {
	t.Setenv("FAKE_MODE", "lost")
	e, boots, dir := fakeNested(t)
	boots[2].needs, boots[3].needs = "a", "b"
	res, err := e.runBoots(t, boots)
	if err != nil {
		t.Fatalf("runBoots: %v", err)
	}
	job2, err := os.ReadFile(filepath.Join(dir, "job2.sh"))
	if err != nil {
		t.Fatalf("no second session: %v", err)
	}
	for name, again := range map[string]bool{"a": false, "b": true, "c": false, "d": true} {
		if strings.Contains(string(job2), "run_boot '"+name+"'") != again {
			t.Errorf("rerun of %s: %v, want %v; second session:\n%s", name, !again, again, job2)
		}
		if r := res[name]; r == nil || r.rc != 0 || (r.retried != "") != again {
			t.Errorf("%s: result %+v, want rc 0, retried %v", name, r, again)
		}
	}
}

// TestNestedRerunLostTwice: boot b is lost in its first two runs; the
// third (with d, which needs it) stands.
func TestNestedRerunLostTwice(t *testing.T) {
	t.Setenv("FAKE_MODE", "lost2")
	e, boots, dir := fakeNested(t)
	boots[3].needs = "b"
	res, err := e.runBoots(t, boots)
	if err != nil {
		t.Fatalf("runBoots: %v", err)
	}
	job3, err := os.ReadFile(filepath.Join(dir, "job3.sh"))
	if err != nil || !strings.Contains(string(job3), "run_boot 'b'") || !strings.Contains(string(job3), "run_boot 'd'") {
		t.Fatalf("third session should run b and d (%v):\n%s", err, job3)
	}
	if r := res["b"]; r == nil || r.rc != 0 || !strings.Contains(r.retried, "run 3") {
		t.Errorf("b: %+v, want the third run's result", r)
	}
}

// fakeNested is an env whose nested host is fakeNestedHost, and boots a-d.
func fakeNested(t *testing.T) (*env, []boot, string) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fake-nested-host.sh")
	if err := os.WriteFile(script, []byte(fakeNestedHost), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_DIR", dir)
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &env{root: repoRoot(t), cache: dir, flint: "/bin/true", nestedScript: script, wedgeGrace: time.Second,
		l1Silence: 2 * time.Second, dumpWait: time.Second}
	var boots []boot
	for _, n := range []string{"a", "b", "c", "d"} {
		boots = append(boots, boot{name: n, kernel: kernel, cpus: 1, memMiB: 64, cmdline: "x", timeout: time.Minute})
	}
	return e, boots, dir
}

func testNestedRetry(t *testing.T, mode, why string) {
	t.Setenv("FAKE_MODE", mode)
	e, boots, dir := fakeNested(t)
	start := time.Now()
	res, err := e.runNested(t, boots)
	if err != nil {
		t.Fatalf("runNested: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the wedged session was not stopped promptly (%v)", d)
	}
	job2, err := os.ReadFile(filepath.Join(dir, "job2.sh"))
	if err != nil {
		t.Fatalf("no second session: %v", err)
	}
	if strings.Contains(string(job2), "run_boot 'a'") || strings.Contains(string(job2), "run_boot 'b'") ||
		!strings.Contains(string(job2), "run_boot 'c'") || !strings.Contains(string(job2), "run_boot 'd'") {
		t.Errorf("retry session should run exactly c and d:\n%s", job2)
	}
	want := map[string]struct {
		rc      int
		retried bool
	}{"a": {0, false}, "b": {1, false}, "c": {0, true}, "d": {0, true}}
	for name, w := range want {
		r := res[name]
		if r == nil {
			t.Errorf("%s: no result", name)
			continue
		}
		if r.rc != w.rc || r.unfinished || (r.retried != "") != w.retried {
			t.Errorf("%s: rc=%d unfinished=%v retried=%q, want rc=%d retried=%v", name, r.rc, r.unfinished, r.retried, w.rc, w.retried)
		}
	}
	if r := res["c"]; r != nil && !strings.Contains(r.retried, why) {
		t.Errorf("wedge description %q does not say where L1 was stuck", r.retried)
	}
}

// TestNestedFlintHang: boot c falls silent while L1 keeps beating. The
// harness asks L1 for flint's state, fails c without rerunning it, and runs
// d, which never started, in a fresh L1 (not counted as a lost host).
func TestNestedFlintHang(t *testing.T) {
	e, boots, dir := quietNested(t, "hang")
	start := time.Now()
	res, err := e.runNested(t, boots)
	if err == nil || !strings.Contains(err.Error(), "suspected flint hang in c") || !strings.Contains(err.Error(), "c: "+evidencePrefix) {
		t.Errorf("runNested: %v, want a suspected flint hang in c, with c's evidence digest", err)
	}
	if c := res["c"]; c == nil || len(c.l1ps) == 0 {
		t.Errorf("c: %+v, want L1's last process dump kept for the digest", c)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the hang was not noticed promptly (%v)", d)
	}
	c := res["c"]
	if c == nil || !c.hung || !strings.Contains(c.host, "printed nothing") || !strings.Contains(c.host, "L1-BEAT") {
		t.Errorf("c: %+v, want hung, with the silence and L1's last beat as the reason", c)
	} else if !strings.Contains(c.output, "fake=dump") {
		t.Errorf("c's output lacks the dump L1 was asked for:\n%s", c.output)
	}
	job2, err := os.ReadFile(filepath.Join(dir, "job2.sh"))
	if err != nil || strings.Contains(string(job2), "run_boot 'c'") || !strings.Contains(string(job2), "run_boot 'd'") {
		t.Errorf("second session should run d only (%v):\n%s", err, job2)
	}
	if r := res["d"]; r == nil || r.unfinished || r.rc != 0 || r.retried != "" {
		t.Errorf("d: %+v, want finished, not marked as a rerun after a lost host", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "job3.sh")); err == nil {
		t.Errorf("a third session ran")
	}
}

// TestNestedHangThenL1Crash: boot c falls silent while L1 keeps beating,
// and L1's kernel panics while flint's state is dumped (no dump comes). The
// crash is the emulator's: c is not failed as a flint hang but runs again,
// with d, in a fresh L1.
func TestNestedHangThenL1Crash(t *testing.T) {
	e, boots, dir := quietNested(t, "hangcrash")
	res, err := e.runNested(t, boots)
	if err != nil {
		t.Fatalf("runNested: %v, want c rerun after L1's crash", err)
	}
	job2, err := os.ReadFile(filepath.Join(dir, "job2.sh"))
	if err != nil || !strings.Contains(string(job2), "run_boot 'c'") || !strings.Contains(string(job2), "run_boot 'd'") {
		t.Fatalf("second session should run c and d (%v):\n%s", err, job2)
	}
	if c := res["c"]; c == nil || c.hung || c.unfinished || c.rc != 0 || !strings.Contains(c.retried, "stack guard page") {
		t.Errorf("c: %+v, want finished in the second session, retried after the L1 crash", c)
	}
}

// TestNestedHangAfterGuestExit: boot c's guest finished, then its VMM fell
// silent and ended only during the dump's wait, after which d started. The
// hang is c's (a VMM that did not exit, said so in the reason), not d's: d,
// cut short when the session was stopped, runs again in a fresh L1.
func TestNestedHangAfterGuestExit(t *testing.T) {
	e, boots, dir := quietNested(t, "exitlate")
	res, err := e.runNested(t, boots)
	if err == nil || !strings.Contains(err.Error(), "suspected flint hang in c") {
		t.Errorf("runNested: %v, want a suspected flint hang in c", err)
	}
	if c := res["c"]; c == nil || !c.hung || !strings.Contains(c.host, "the VMM did not exit") {
		t.Errorf("c: %+v, want hung, the reason saying the guest had finished and the VMM did not exit", c)
	}
	job2, err := os.ReadFile(filepath.Join(dir, "job2.sh"))
	if err != nil || strings.Contains(string(job2), "run_boot 'c'") || !strings.Contains(string(job2), "run_boot 'd'") {
		t.Errorf("second session should run d only (%v):\n%s", err, job2)
	}
	if d := res["d"]; d == nil || d.hung || d.unfinished || d.rc != 0 {
		t.Errorf("d: %+v, want run again and finished, not hung", d)
	}
}

// quietNested is fakeNested in FAKE_MODE mode with every boot's console
// watched for 3 s of silence (the hang cases).
func quietNested(t *testing.T, mode string) (*env, []boot, string) {
	t.Setenv("FAKE_MODE", mode)
	e, boots, dir := fakeNested(t)
	for i := range boots {
		boots[i].quiet = 3 * time.Second
	}
	return e, boots, dir
}

// TestNestedL1Silent: L1's heartbeat and output stop during boot c: a lost
// host, noticed within seconds (not at c's timeout); c and d run again.
func TestNestedL1Silent(t *testing.T) {
	testNestedRetry(t, "silent", "L1 silent: no heartbeat")
}

// TestHostWatchHeartbeat: the watch's verdicts from the heartbeat alone.
func TestHostWatchHeartbeat(t *testing.T) {
	w, clk := watchFixture()
	bw := w.beatWriter()
	beat := func(n int) {
		clk.t = clk.t.Add(time.Second)
		fmt.Fprintf(bw, "L1-BEAT n=%d up=%d\nL1-PS 7 flint S wchan=x\n", n, n)
	}
	feed(w, "JOB-START cloud/cpus=1")
	for i := 1; i <= 5; i++ {
		beat(i)
	}
	if r := w.check(); r != "" {
		t.Fatalf("verdict %q while L1 beats", r)
	}
	// Past the deadline, L1 still beating: flint's fault.
	clk.t = clk.t.Add(300*time.Second + 10*time.Second + bootDeadlineSlack)
	beat(6)
	if r := w.check(); !w.hung() || !strings.Contains(r, "suspected flint hang: boot cloud/cpus=1") || !strings.Contains(r, "n=6") {
		t.Errorf("check() = %q hung=%v, want a suspected flint hang naming the boot and the last beat", r, w.hung())
	}
	if ps := w.processes(); len(ps) != 1 || !strings.Contains(ps[0], "wchan=x") {
		t.Errorf("processes() = %q, want the last L1-PS block", ps)
	}

	// Beats stop: L1 lost, whatever the boot does.
	w, clk = watchFixture()
	bw = w.beatWriter()
	feed(w, "JOB-START cloud/cpus=1")
	beat(1)
	clk.t = clk.t.Add(defaultL1Silence - time.Second)
	if r := w.check(); r != "" {
		t.Fatalf("verdict %q before the silence limit", r)
	}
	clk.t = clk.t.Add(time.Second)
	if r := w.check(); w.hung() || !strings.Contains(r, "L1 silent: no heartbeat for 30s") || !strings.Contains(r, "during boot cloud/cpus=1") {
		t.Errorf("check() = %q hung=%v, want L1 silent during the boot", r, w.hung())
	}
}

// TestNestedHangWithLostState: boot c falls silent while L1 beats, and the
// dump flint gives shows a vCPU state (or a vCPU) the emulator lost: that
// is the nested host's loss, so c and d run again in a fresh L1 and pass.
func TestNestedHangWithLostState(t *testing.T) {
	for _, mode := range []string{"hanglost", "hangstuck"} {
		t.Run(mode, func(t *testing.T) { testNestedHangLost(t, mode) })
	}
}

// testNestedHangLost: TestNestedHangWithLostState with the dump of mode
// (hanglost: an impossible vCPU state; hangstuck: a vCPU that did not
// leave KVM_RUN for the dump).
func testNestedHangLost(t *testing.T, mode string) {
	e, boots, dir := quietNested(t, mode)
	res, err := e.runNested(t, boots)
	if err != nil {
		t.Fatalf("runNested: %v", err)
	}
	job2, err := os.ReadFile(filepath.Join(dir, "job2.sh"))
	if err != nil || !strings.Contains(string(job2), "run_boot 'c'") || !strings.Contains(string(job2), "run_boot 'd'") {
		t.Fatalf("second session should run c and d (%v):\n%s", err, job2)
	}
	if c := res["c"]; c == nil || c.hung || c.unfinished || c.rc != 0 || !strings.Contains(c.retried, "lost boot c's vCPU state") {
		t.Errorf("c: %+v, want the rerun's result, marked as a rerun after a lost state", c)
	}
}
