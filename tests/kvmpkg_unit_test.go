package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestParseKVMPkgs: a package counts as finished only with its END line;
// L1's kernel lines and carriage returns are dropped from its output.
func TestParseKVMPkgs(t *testing.T) {
	out := strings.Join([]string{
		"nested-host(L1): job start",
		"KVMPKG-BEGIN kvm 5.06\r",
		"\x16=== RUN   TestA\r",
		"<4>[    7.626203] kvm: SMP vm created on host with unstable TSC\r",
		"\x16--- PASS: TestA (0.00s)\r",
		"KVMPKG-END kvm rc=0 6.36\r",
		"KVMPKG-BEGIN vmm 6.36",
		"\x16=== RUN   TestB",
		"", // L1 lost here
	}, "\n")
	got := parseKVMPkgs(out)
	if len(got) != 1 || got["kvm"] == nil || got["vmm"] != nil {
		t.Fatalf("finished packages %v, want only kvm", got)
	}
	if r := got["kvm"]; r.rc != 0 || r.output != "\x16=== RUN   TestA\n\x16--- PASS: TestA (0.00s)\n" {
		t.Fatalf("kvm: rc %d output %q", r.rc, r.output)
	}
}

// TestKVMPkgConsole: L1 is lost when its console is silent before its
// first heartbeat, when its heartbeat stops, or when a package runs past
// its own timeout while L1 beats; a soft lockup report alone is no loss,
// but names itself in the verdict, and the last process list is kept.
func TestKVMPkgConsole(t *testing.T) {
	c := newKVMPkgConsole(newLineLogger(t, "console: "))
	now := time.Now()
	c.Write([]byte("<0>[  120.5] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [flint:99]\r\n"))
	if why := c.lost(now); why != "" {
		t.Errorf("lost at once: %s", why)
	}
	if why := c.lost(now.Add(kvmPkgSilence + time.Second)); !strings.Contains(why, "no heartbeat yet, and its console silent for") ||
		!strings.Contains(why, "soft lockup: CPU#1 stuck for 22s! [flint:99]") {
		t.Errorf("silent: %q", why)
	}
	beat := c.beatWriter()
	beat.Write([]byte("L1-BEAT n=1 up=3.0\nL1-PS 1 init S wchan=0\nL1-PS 99 flint S wchan=0\nL1-BE"))
	beat.Write([]byte("AT n=2 up=4.1\n"))
	if ps := c.processes(); len(ps) != 2 || ps[1] != "L1-PS 99 flint S wchan=0" {
		t.Errorf("process list %q", ps)
	}
	c.last.Store(now.Add(defaultL1Silence).UnixNano()) // the console goes on
	if why := c.lost(now.Add(defaultL1Silence + 2*time.Second)); why != "" {
		t.Errorf("heartbeat paused, console alive: %q", why)
	}
	c.last.Store(now.UnixNano())
	if why := c.lost(now.Add(defaultL1Silence + 2*time.Second)); !strings.Contains(why, "no heartbeat for") || !strings.Contains(why, "L1-BEAT n=2") {
		t.Errorf("heartbeat and console stopped: %q", why)
	}
	c.Write([]byte("KVMPKG-BEGIN vmm 8.46\r\n"))
	later := now.Add(kvmPkgOverdue + 2*time.Second)
	c.beatAt = later // L1 beats on
	if why := c.lost(later); !strings.Contains(why, "vmm still running") {
		t.Errorf("overdue: %q", why)
	}
	c.Write([]byte("KVMPKG-END vmm rc=0 9.0\r\n"))
	if why := c.lost(later); why != "" {
		t.Errorf("between packages: %q", why)
	}
}

// TestKVMTestTree: subtests (also names with '/') hang under their parent,
// and a passing benchmark, for which test2json has no pass action, is
// recognised by its result line.
func TestKVMTestTree(t *testing.T) {
	evs := []testEvent{
		{Action: "run", Test: "TestA"},
		{Action: "run", Test: "TestA/x/y"},
		{Action: "output", Test: "TestA/x/y", Output: "    a_test.go:3: hi\n"},
		{Action: "pass", Test: "TestA/x/y"},
		{Action: "pass", Test: "TestA"},
		{Action: "output", Output: "goos: linux\n"},
		{Action: "run", Test: "BenchmarkS"},
		{Action: "run", Test: "BenchmarkS/tiny"},
		{Action: "output", Test: "BenchmarkS/tiny", Output: "BenchmarkS/tiny-2   \t       3\t       237.3 ns/op\t 1.5 ms/x\n"},
		{Action: "run", Test: "TestSkip"},
		{Action: "skip", Test: "TestSkip"},
		{Action: "pass"},
	}
	tops, pkgOut, pkgAction := kvmTestTree(evs)
	if len(tops) != 3 || tops[0].name != "TestA" || len(tops[0].children) != 1 || tops[0].children[0].name != "x/y" {
		t.Fatalf("tree %+v", tops)
	}
	if tops[0].children[0].action != "pass" || tops[2].action != "skip" {
		t.Errorf("actions %q %q", tops[0].children[0].action, tops[2].action)
	}
	if b := tops[1]; b.action != "" || !b.hasBenchResult() || tops[0].hasBenchResult() {
		t.Errorf("benchmark %+v: result %v", b, b.hasBenchResult())
	}
	if pkgAction != "pass" || len(pkgOut) != 1 || pkgOut[0] != "goos: linux" {
		t.Errorf("package %q %q", pkgAction, pkgOut)
	}
}

// TestKVMPkgJob: every package runs in its directory with its flags, and
// the job exits with the number of failed packages.
func TestKVMPkgJob(t *testing.T) {
	job := kvmPkgJob(kvmPackages)
	for _, want := range []string{
		"export PATH=/usr/local/bin:$PATH",
		"FLINT_TEST_REQUIRE=kvm",
		`(cd "$PAYLOAD/kvm" && exec ./kvm.test -test.v=test2json -test.count=1 -test.timeout=3m0s)`,
		`(cd "$PAYLOAD/cmd-flint" && exec ./cmd-flint.test -test.v=test2json -test.count=1 -test.timeout=3m0s -test.bench=^BenchmarkStartup$ -test.benchtime=3x)`,
		`echo "KVMPKG-END cmd/flint rc=$rc`,
		"exit $failed",
	} {
		if !strings.Contains(job, want) {
			t.Errorf("job lacks %q:\n%s", want, job)
		}
	}
}

// TestKVMPkgRunAll: a lost L1 reruns only the packages it did not finish,
// and more than kvmPkgMaxLosses losses give up.
func TestKVMPkgRunAll(t *testing.T) {
	var calls [][]string
	session := func(lose int, finishFirst bool) func([]kvmPackage) (map[string]*kvmPkgRun, string, error) {
		return func(pkgs []kvmPackage) (map[string]*kvmPkgRun, string, error) {
			var names []string
			for _, p := range pkgs {
				names = append(names, p.path)
			}
			calls = append(calls, names)
			if len(calls) <= lose {
				runs := map[string]*kvmPkgRun{}
				if finishFirst {
					runs[pkgs[0].path] = &kvmPkgRun{} // it finished, then L1 was lost
				}
				return runs, "crashed: L1 Kernel panic", nil
			}
			runs := map[string]*kvmPkgRun{}
			for _, p := range pkgs {
				runs[p.path] = &kvmPkgRun{}
			}
			return runs, "", nil
		}
	}
	done, losses, err := kvmPkgRunAll(t, kvmPackages, session(2, true))
	if err != nil || len(done) != 3 || len(losses) != 2 {
		t.Fatalf("done %v losses %v err %v", done, losses, err)
	}
	want := "[[kvm vmm cmd/flint] [vmm cmd/flint] [cmd/flint]]"
	if got := fmt.Sprint(calls); got != want {
		t.Errorf("sessions %s, want %s", got, want)
	}
	// Lost after the last package finished: nothing to rerun.
	calls = nil
	done, losses, err = kvmPkgRunAll(t, kvmPackages, session(3, true))
	if err != nil || len(done) != 3 || len(losses) != 3 {
		t.Errorf("done %v losses %v err %v", done, losses, err)
	}
	calls = nil
	_, losses, err = kvmPkgRunAll(t, kvmPackages, session(kvmPkgMaxLosses+1, false))
	if err == nil || len(losses) != kvmPkgMaxLosses+1 || !strings.Contains(err.Error(), "giving up with kvm vmm cmd/flint unfinished") {
		t.Errorf("losses %v err %v", losses, err)
	}
}
