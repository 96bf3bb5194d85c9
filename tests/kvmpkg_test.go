package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
)

// kvmPackage is a package whose tests need /dev/kvm (tiny guests): where
// this machine has none, TestKVMPackagesNested runs its compiled tests in
// the nested test host.
type kvmPackage struct {
	path  string // directory under the repository root, e.g. "cmd/flint"
	bench string // -test.bench pattern to run there too ("" none)
}

// name is the package's directory name in the payload ("cmd-flint").
func (p kvmPackage) name() string { return strings.ReplaceAll(p.path, "/", "-") }

// kvmPackages: the tiny-guest tests (kvm), the whole VMM with tiny bzImages
// and TAPs (vmm), the CLI's launcher and the start-up benchmark (cmd/flint).
var kvmPackages = []kvmPackage{
	{path: "kvm"},
	{path: "vmm"},
	{path: "cmd/flint", bench: "^BenchmarkStartup$"},
}

const (
	// kvmPkgTimeout bounds one package's test binary in L1 (-test.timeout:
	// a hang panics with every goroutine's stack, and that is a failure,
	// never a rerun). Each package takes a few seconds there.
	kvmPkgTimeout = 3 * time.Minute
	// L1 has stopped (lost) when neither its heartbeat (nested-host.sh
	// --beat, one a second) nor its console has said anything for the
	// harness's defaultL1Silence; before its first beat, for kvmPkgSilence.
	// (Under a loaded host beats were seen to pause for 20 s while the
	// console went on: any sign of life counts.)
	kvmPkgSilence = 60 * time.Second
	// kvmPkgOverdue: a package still running this long after it started,
	// past its own -test.timeout, is stuck where the Go runtime cannot end
	// it (a thread in L1's kernel): L1 wedged, lost. (An L1 soft lockup
	// report alone is no loss: under a busy host TCG's vCPU threads stall
	// and L1's watchdog reports spurious lockups, then carries on.)
	kvmPkgOverdue = kvmPkgTimeout + time.Minute
)

// l1SoftLockup matches the L1 kernel's soft lockup report (its own lines
// start with "<level>[", see nestedL1Append).
var l1SoftLockup = regexp.MustCompile(`<[0-7]>\[ *[0-9.]+\] watchdog: BUG: soft lockup - (CPU#[0-9]+ stuck for [0-9]+s! \[[^]]*\])`)

const (
	// kvmPkgBenchtime: the start-up benchmark is run, not measured, in L1.
	kvmPkgBenchtime = "3x"
	// kvmPkgMaxLosses is how many nested hosts one run may lose (QEMU
	// TCG's SVM emulation crashes or wedges L1 now and then) before the
	// test gives up.
	kvmPkgMaxLosses = 2
)

// TestKVMPackagesNested makes sure the KVM package tests (kvm, vmm,
// cmd/flint) run on every machine. Where this machine's /dev/kvm runs tiny
// guests (hardware or PVM), they ran directly in `make unit`/`make race`:
// this test says so and runs only the start-up benchmark, briefly. Where it
// does not (no /dev/kvm), it compiles them (go test -c, CGO_ENABLED=0) and
// runs them in one nested test host (scripts/nested-host.sh; L1 has
// /dev/kvm from kvm_amd) with FLINT_TEST_REQUIRE=kvm, and the start-up
// benchmark with them. Every test there becomes a subtest here; a test that
// skips there fails here: 0 skips. An L1 that is lost (exit 125, or its
// timeout) runs the packages that did not finish again in a fresh L1, up to
// kvmPkgMaxLosses times, saying so.
func TestKVMPackagesNested(t *testing.T) {
	root := repoRoot(t)
	if ok, _ := testenv.CanRunTinyGuests(); ok {
		k := testenv.Probe()
		testenv.LogPath(t, testenv.PathDirect, "KVM: "+k.Kind())
		t.Logf("this machine's %s runs tiny guests (%s): the KVM package tests (%s) ran directly "+
			"in `make unit` and `make race`; not repeated in the nested host", testenv.DevicePath, k.Kind(), kvmPkgList(kvmPackages))
		kvmBenchDirect(t, root)
		return
	}
	_, why := testenv.CanRunTinyGuests()
	if testing.Short() {
		t.Skipf("no usable KVM here (%s); running the KVM package tests in the nested host is slow: skipped in -short mode", why)
	}
	testenv.LogPath(t, testenv.PathNested, "KVM package tests")
	t.Logf("KVM package tests (%s) run in the nested test host, because this machine cannot run them: %s",
		kvmPkgList(kvmPackages), why)
	requireTools(t, "bash", "go", "qemu-system-x86_64", "timeout", "cpio", "gzip", "busybox", "depmod",
		"apt-get", "apt-cache", "dpkg", "ldd")
	cache := os.Getenv("FLINT_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache")
	}
	start := time.Now()
	dir := t.TempDir()
	bins := filepath.Join(dir, "bins")
	kvmPkgCompile(t, root, bins, kvmPackages)
	flint := buildFlint(t, root)
	tools := filepath.Join(dir, "tools")
	kvmPkgTools(t, root, tools)
	t.Logf("built %d test binaries, flint and the L1 tools in %v", len(kvmPackages), time.Since(start).Round(time.Second))

	done, losses, err := kvmPkgRunAll(t, kvmPackages, func(pkgs []kvmPackage) (map[string]*kvmPkgRun, string, error) {
		return kvmPkgSession(t, root, cache, flint, bins, tools, pkgs)
	})
	if err != nil {
		t.Fatal(err)
	}

	var total kvmPkgCount
	var lines []string
	for _, p := range kvmPackages {
		r := done[p.path]
		c := r.mirror(t, p)
		total.add(c)
		lines = append(lines, fmt.Sprintf("%s %d passed, %d failed, %d skipped", p.path, c.pass, c.fail, c.skip))
		t.Logf("flint-kvm-packages: path=nested pkg=%s passed=%d failed=%d skipped=%d tests=%d benchmarks=%d",
			p.path, c.pass, c.fail, c.skip, c.top, c.bench)
	}
	t.Logf("KVM package tests in the nested host: %s; %d nested host(s) lost; %v wall",
		strings.Join(lines, "; "), len(losses), time.Since(start).Round(time.Second))
}

// kvmPkgRunAll runs pkgs with session (one nested host each time) until
// every package finished, running again what a lost L1 did not finish, up
// to kvmPkgMaxLosses times, loudly. losses says why each L1 was lost.
func kvmPkgRunAll(t *testing.T, pkgs []kvmPackage,
	session func([]kvmPackage) (runs map[string]*kvmPkgRun, lost string, err error)) (done map[string]*kvmPkgRun, losses []string, err error) {
	done = map[string]*kvmPkgRun{}
	for {
		var todo []kvmPackage
		for _, p := range pkgs {
			if done[p.path] == nil {
				todo = append(todo, p)
			}
		}
		if len(todo) == 0 {
			return done, losses, nil
		}
		runs, lost, err := session(todo)
		for path, r := range runs {
			done[path] = r
		}
		if err != nil {
			return done, losses, err
		}
		if lost == "" {
			continue
		}
		losses = append(losses, lost)
		var left []string
		for _, p := range todo {
			if done[p.path] == nil {
				left = append(left, p.path)
			}
		}
		if len(left) == 0 {
			t.Logf("nested host lost after its last package had finished: %s", lost)
			continue
		}
		if len(losses) > kvmPkgMaxLosses {
			return done, losses, fmt.Errorf("NESTED HOST LOST %d times, giving up with %s unfinished: %s",
				len(losses), strings.Join(left, " "), strings.Join(losses, "; "))
		}
		t.Logf("NESTED HOST LOST (%d of at most %d): %s; running the unfinished package(s) %s again in a fresh L1",
			len(losses), kvmPkgMaxLosses, lost, strings.Join(left, " "))
	}
}

// kvmPkgList names the packages.
func kvmPkgList(pkgs []kvmPackage) string {
	var s []string
	for _, p := range pkgs {
		s = append(s, p.path)
	}
	return strings.Join(s, ", ")
}

// goCommand returns the go command's path.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// kvmBenchDirect runs the packages' benchmarks briefly on this machine's KVM.
func kvmBenchDirect(t *testing.T, root string) {
	for _, p := range kvmPackages {
		if p.bench == "" {
			continue
		}
		cmd := exec.Command(goCommand(), "test", "-count=1", "-run", "^$", "-bench", p.bench,
			"-benchtime", kvmPkgBenchtime, "./"+p.path)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			t.Log(l)
		}
		if err != nil {
			t.Errorf("%s benchmarks %s: %v", p.path, p.bench, err)
		} else if !benchResult.Match(out) || bytes.Contains(out, []byte("--- SKIP")) {
			t.Errorf("%s benchmarks %s: no result (skipped?)", p.path, p.bench)
		}
	}
}

// kvmPkgCompile builds each package's tests into bins/<name>.test
// (CGO_ENABLED=0: L1 has no libc).
func kvmPkgCompile(t *testing.T, root, bins string, pkgs []kvmPackage) {
	t.Helper()
	for _, p := range pkgs {
		out := filepath.Join(bins, p.name()+".test")
		cmd := exec.Command(goCommand(), "test", "-c", "-o", out, "./"+p.path)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test -c ./%s: %v\n%s", p.path, err, b)
		}
	}
}

// kvmPkgTools copies what the tests need in L1 besides busybox: iproute2's
// ip (vmm's TAP tests use ip netns) and GNU time (the benchmark's peak RSS),
// with their libraries.
func kvmPkgTools(t *testing.T, root, out string) {
	t.Helper()
	args := []string{filepath.Join(root, "scripts", "mknet-tools.sh"), "-o", out, "ip"}
	if gt, err := exec.LookPath("/usr/bin/time"); err == nil {
		args = append(args, gt)
	} else if testenv.RequireAll() {
		t.Fatalf("no GNU time (/usr/bin/time, Debian package time): the start-up benchmark needs it for peak RSS")
	}
	cmd := exec.Command("bash", args...)
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mknet-tools.sh: %v\n%s", err, b)
	}
}

// kvmPkgJob is L1's job: each package's test binary in its own directory
// (with the package's testdata), between KVMPKG-BEGIN and KVMPKG-END lines.
func kvmPkgJob(pkgs []kvmPackage) string {
	var b strings.Builder
	b.WriteString(`# KVM package tests in the nested host (tests/kvmpkg_test.go)
cp -a "$PAYLOAD/tools/." / || echo "KVMPKG-NOTE copying tools failed"
# GNU time where launch.PeakRSS looks (a copy: /bin/time is busybox's applet).
[ -x /usr/local/bin/time ] && cp /usr/local/bin/time /usr/bin/time
# iproute2's ip (ip netns) before busybox's applet.
export PATH=/usr/local/bin:$PATH FLINT_BIN=/usr/bin/flint FLINT_TEST_REQUIRE=kvm TMPDIR=/tmp
failed=0
`)
	for _, p := range pkgs {
		args := []string{"./" + p.name() + ".test", "-test.v=test2json", "-test.count=1",
			"-test.timeout=" + kvmPkgTimeout.String()}
		if p.bench != "" {
			args = append(args, "-test.bench="+p.bench, "-test.benchtime="+kvmPkgBenchtime)
		}
		fmt.Fprintf(&b, "echo \"KVMPKG-BEGIN %s $(cut -d' ' -f1 /proc/uptime)\"\n", p.path)
		fmt.Fprintf(&b, "(cd \"$PAYLOAD/%s\" && exec %s) 2>&1\n", p.name(), strings.Join(args, " "))
		fmt.Fprintf(&b, "rc=$?\necho \"KVMPKG-END %s rc=$rc $(cut -d' ' -f1 /proc/uptime)\"\n", p.path)
		b.WriteString("[ $rc = 0 ] || failed=$((failed + 1))\n")
	}
	b.WriteString("exit $failed\n")
	return b.String()
}

// kvmPkgRun is one package's run in L1.
type kvmPkgRun struct {
	rc     int    // the test binary's exit status
	output string // its console output (L1's kernel lines removed)
}

var (
	kvmPkgBegin = regexp.MustCompile(`^KVMPKG-BEGIN (\S+)`)
	kvmPkgEnd   = regexp.MustCompile(`^KVMPKG-END (\S+) rc=(\d+)`)
	// l1KernelLine: L1's own kernel messages (console_msg_format=syslog).
	l1KernelLine = regexp.MustCompile(`^<[0-7]>\[`)
	benchResult  = regexp.MustCompile(`(?m)^Benchmark\S*\s+\d+\s+\d+(\.\d+)? ns/op`)
)

// parseKVMPkgs splits a session's console output into the packages that
// finished (an END line); a package without one did not.
func parseKVMPkgs(out string) map[string]*kvmPkgRun {
	res := map[string]*kvmPkgRun{}
	cur := ""
	var buf strings.Builder
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if m := kvmPkgBegin.FindStringSubmatch(l); m != nil {
			cur = m[1]
			buf.Reset()
			continue
		}
		if m := kvmPkgEnd.FindStringSubmatch(l); m != nil && m[1] == cur {
			rc, _ := strconv.Atoi(m[2])
			res[cur] = &kvmPkgRun{rc: rc, output: buf.String()}
			cur = ""
			continue
		}
		if cur != "" && !l1KernelLine.MatchString(l) {
			buf.WriteString(l)
			buf.WriteByte('\n')
		}
	}
	return res
}

// kvmPkgConsole streams L1's console to the test log, line by line,
// without passing tests (their subtests here show them) and go test's
// framing, and watches L1: when its console last printed, its heartbeat
// (beatWriter), whether it reported a soft lockup, and which package runs
// since when.
type kvmPkgConsole struct {
	log  *lineLogger
	last atomic.Int64 // UnixNano of the last write

	mu      sync.Mutex
	buf     []byte
	lockup  string    // L1's last soft lockup report
	pkg     string    // the package running ("" between packages)
	pkgFrom time.Time // since when

	l1Beat
}

func newKVMPkgConsole(log *lineLogger) *kvmPkgConsole {
	c := &kvmPkgConsole{log: log}
	c.last.Store(time.Now().UnixNano())
	return c
}

// lost says why L1 counts as lost now ("" if it does not).
func (c *kvmPkgConsole) lost(now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var why string
	out := now.Sub(time.Unix(0, c.last.Load()))
	if c.beats > 0 && now.Sub(c.beatAt) > defaultL1Silence && out > defaultL1Silence {
		why = fmt.Sprintf("L1 silent: no heartbeat for %v (last: %s) and no console line for %v",
			now.Sub(c.beatAt).Round(time.Second), c.lastBeat, out.Round(time.Second))
	} else if d := out; c.beats == 0 && d > kvmPkgSilence {
		why = fmt.Sprintf("L1 silent: no heartbeat yet, and its console silent for %v", d.Round(time.Second))
	} else if c.pkg != "" && now.Sub(c.pkgFrom) > kvmPkgOverdue {
		why = fmt.Sprintf("wedged: %s still running %v after it started, past its own -test.timeout %v",
			c.pkg, now.Sub(c.pkgFrom).Round(time.Second), kvmPkgTimeout)
	}
	if why != "" && c.lockup != "" {
		why += "; L1 reported a soft lockup: " + c.lockup
	}
	return why
}

func (c *kvmPkgConsole) Write(p []byte) (int, error) {
	c.last.Store(time.Now().UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	lines(&c.buf, p, func(l string) {
		l = strings.ReplaceAll(l, "\x16", "") // test2json's framing mark
		s := strings.TrimSpace(l)
		if m := l1SoftLockup.FindStringSubmatch(s); m != nil {
			c.lockup = m[1]
		}
		if m := kvmPkgBegin.FindStringSubmatch(s); m != nil {
			c.pkg, c.pkgFrom = m[1], time.Now()
		} else if kvmPkgEnd.MatchString(s) {
			c.pkg = ""
		}
		if !strings.HasPrefix(s, "=== ") && !strings.HasPrefix(s, "--- PASS: ") {
			c.log.Write([]byte(l + "\n"))
		}
	})
	return len(p), nil
}

// beatWriter is where L1's heartbeat stream (nested-host.sh --beat) goes.
func (c *kvmPkgConsole) beatWriter() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.write(p, time.Now())
		return len(p), nil
	})
}

// heartbeat describes L1's last beat, for logs.
func (c *kvmPkgConsole) heartbeat() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d heartbeats, the last: %s", c.beats, c.describe(time.Now()))
}

// processes is L1's last process list from its heartbeat.
func (c *kvmPkgConsole) processes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ps...)
}

// kvmPkgSession runs pkgs in one nested host. lost says why L1 was lost
// ("" if it was not); err is any other failure of the session.
func kvmPkgSession(t *testing.T, root, cache, flint, bins, tools string, pkgs []kvmPackage) (runs map[string]*kvmPkgRun, lost string, err error) {
	t.Helper()
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload")
	for _, p := range pkgs {
		pd := filepath.Join(payload, p.name())
		if err := os.MkdirAll(pd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(bins, p.name()+".test"), filepath.Join(pd, p.name()+".test")); err != nil {
			t.Fatal(err)
		}
		if td := filepath.Join(root, p.path, "testdata"); dirExists(td) {
			if err := os.Symlink(td, filepath.Join(pd, "testdata")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink(tools, filepath.Join(payload, "tools")); err != nil {
		t.Fatal(err)
	}
	job := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(job, []byte(kvmPkgJob(pkgs)), 0o644); err != nil {
		t.Fatal(err)
	}
	total := nestedOverhead + time.Duration(len(pkgs))*(kvmPkgTimeout+30*time.Second)
	total = withinDeadline(t, total)
	var out bytes.Buffer
	logw := newLineLogger(t, "nested: ")
	beatFile := filepath.Join(dir, "l1-beat.log")
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "nested-host.sh"),
		"--flint", flint, "--payload", payload, "--script", job, "--cache", cache, "--beat", beatFile,
		"--modules", "kvm_amd tun", "--append", nestedL1Append,
		"--timeout", strconv.Itoa(int(total/time.Second)))
	cmd.Dir = root
	console := newKVMPkgConsole(logw)
	var outMu sync.Mutex
	cmd.Stdout = io.MultiWriter(lockedWriter{&outMu, &out}, console)
	// nested-host.sh's own lines (building L1, starting QEMU) count as signs of life.
	cmd.Stderr = io.MultiWriter(logw, writerFunc(func(p []byte) (int, error) {
		console.last.Store(time.Now().UnixNano())
		return len(p), nil
	}))
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("running nested-host.sh: %v", err)
	}
	stopped := make(chan string, 1)
	done := make(chan struct{})
	tailed := make(chan struct{})
	go func() {
		defer close(tailed)
		tailFile(beatFile, console.beatWriter(), done)
	}()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if why := console.lost(time.Now()); why != "" {
				t.Logf("nested host lost: %s; stopping it. L1's last process list:\n%s",
					why, strings.Join(console.processes(), "\n"))
				stopped <- why
				_ = cmd.Process.Signal(syscall.SIGTERM) // nested-host.sh stops QEMU
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	<-tailed
	logw.Flush()
	outMu.Lock()
	text := out.String()
	outMu.Unlock()
	runs = parseKVMPkgs(text)
	t.Logf("nested host session: %v wall for %s (%d finished); %s", time.Since(start).Round(time.Second), kvmPkgList(pkgs), len(runs), console.heartbeat())
	select {
	case why := <-stopped:
		return runs, why, nil
	default:
	}
	var ee *exec.ExitError
	switch {
	case err == nil || (errors.As(err, &ee) && ee.ExitCode() < 124):
		// The job's status is the number of failed packages: judged per test.
		for _, p := range pkgs {
			if runs[p.path] == nil {
				return runs, "", fmt.Errorf("L1 finished its job without an end line for %s", p.path)
			}
		}
		return runs, "", nil
	case ee != nil && ee.ExitCode() == 125:
		why := l1Crash(text)
		if why == "" {
			why = "ended without finishing its job (nested-host.sh exit 125: no NESTED-EXIT line)"
		}
		return runs, why, nil
	case ee != nil && ee.ExitCode() == 124:
		// Every test binary has its own -test.timeout, well inside L1's: a
		// Flint hang is a test failure with stacks, not this.
		return runs, fmt.Sprintf("ended without finishing its job after %v (nested-host.sh exit 124: its %v timeout, or QEMU was killed)",
			time.Since(start).Round(time.Second), total.Round(time.Second)), nil
	}
	return runs, "", fmt.Errorf("running nested-host.sh: %v", err)
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// dirExists reports whether path is a directory.
func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// kvmPkgCount counts results: all tests and subtests that ended.
type kvmPkgCount struct {
	pass, fail, skip int
	top, bench       int // top-level tests, benchmarks that produced a result
}

func (c *kvmPkgCount) add(o kvmPkgCount) {
	c.pass += o.pass
	c.fail += o.fail
	c.skip += o.skip
	c.top += o.top
	c.bench += o.bench
}

// testEvent is one line of `go tool test2json`.
type testEvent struct {
	Action string
	Test   string
	Output string
}

// kvmTestNode is one test or subtest from L1, with its subtests.
type kvmTestNode struct {
	name     string // last element (as t.Run gets it)
	action   string // pass, fail, skip; "" if it never ended
	output   []string
	children []*kvmTestNode
}

// kvmPkgEvents converts a test binary's -test.v=test2json output with
// `go tool test2json`.
func kvmPkgEvents(t *testing.T, pkg, output string) []testEvent {
	t.Helper()
	cmd := exec.Command(goCommand(), "tool", "test2json", "-p", pkg)
	cmd.Stdin = strings.NewReader(output)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool test2json: %v", err)
	}
	var evs []testEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		var e testEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("test2json line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// kvmTestTree builds the test tree from events; pkgOut is the output of
// no test (package lines), pkgAction the package's own result.
func kvmTestTree(evs []testEvent) (tops []*kvmTestNode, pkgOut []string, pkgAction string) {
	nodes := map[string]*kvmTestNode{}
	var node func(full string) *kvmTestNode
	node = func(full string) *kvmTestNode {
		if n := nodes[full]; n != nil {
			return n
		}
		n := &kvmTestNode{name: full}
		nodes[full] = n
		// The parent is the longest known prefix before a '/' (subtest
		// names may contain '/' themselves).
		for i := strings.LastIndexByte(full, '/'); i > 0; i = strings.LastIndexByte(full[:i], '/') {
			if p := nodes[full[:i]]; p != nil {
				n.name = full[i+1:]
				p.children = append(p.children, n)
				return n
			}
		}
		tops = append(tops, n)
		return n
	}
	for _, e := range evs {
		if e.Test == "" {
			switch e.Action {
			case "output":
				pkgOut = append(pkgOut, strings.TrimRight(e.Output, "\n"))
			case "pass", "fail", "skip":
				pkgAction = e.Action
			}
			continue
		}
		n := node(e.Test)
		switch e.Action {
		case "output":
			n.output = append(n.output, strings.TrimRight(e.Output, "\n"))
		case "pass", "fail", "skip":
			n.action = e.Action
		}
	}
	return tops, pkgOut, pkgAction
}

// hasBenchResult reports whether n or a subtest printed a benchmark result.
func (n *kvmTestNode) hasBenchResult() bool {
	if benchResult.MatchString(strings.Join(n.output, "\n")) {
		return true
	}
	for _, c := range n.children {
		if c.hasBenchResult() {
			return true
		}
	}
	return false
}

// framing is go test's own lines in a test's output.
var framing = regexp.MustCompile(`^\s*(=== (RUN|NAME|PAUSE|CONT)|--- (PASS|FAIL|SKIP|BENCH):)`)

// mirror makes each test of the package's L1 run a subtest here (pass,
// fail, or, for a skip, fail: 0 skips in the nested host) and counts them.
func (r *kvmPkgRun) mirror(t *testing.T, p kvmPackage) kvmPkgCount {
	var c kvmPkgCount
	t.Run(p.path, func(t *testing.T) {
		evs := kvmPkgEvents(t, "github.com/flintvm/flint/"+p.path, r.output)
		tops, pkgOut, pkgAction := kvmTestTree(evs)
		var walk func(t *testing.T, n *kvmTestNode, bench bool)
		walk = func(t *testing.T, n *kvmTestNode, bench bool) {
			t.Run(n.name, func(t *testing.T) {
				for _, l := range n.output {
					// Inside L1 the tests ran on L1's /dev/kvm; here they are nested.
					if !framing.MatchString(l) && !strings.Contains(l, testenv.PathMarker) {
						t.Log(l)
					}
				}
				for _, ch := range n.children {
					walk(t, ch, bench)
				}
				action := n.action
				if action == "" && bench && n.hasBenchResult() {
					action = "pass" // test2json reports no pass for a benchmark, only its result line
				}
				switch action {
				case "pass":
					c.pass++
				case "fail":
					c.fail++
					t.Errorf("failed in the nested host")
				case "skip":
					c.skip++
					t.Errorf("skipped in the nested host, where every KVM package test must run (0 skips)")
				default:
					c.fail++
					t.Errorf("never finished in the nested host")
				}
			})
		}
		for _, n := range tops {
			c.top++
			walk(t, n, strings.HasPrefix(n.name, "Benchmark"))
		}
		c.bench = len(benchResult.FindAllString(r.output, -1))
		if c.top == 0 {
			t.Errorf("no tests ran (exit status %d); output:\n%s", r.rc, strings.Join(pkgOut, "\n"))
		}
		if p.bench != "" && c.bench == 0 {
			t.Errorf("benchmark %s produced no result in the nested host", p.bench)
		}
		if r.rc != 0 || pkgAction == "fail" {
			t.Errorf("the test binary failed in the nested host (exit status %d, package result %q); package output:\n%s",
				r.rc, pkgAction, strings.Join(pkgOut, "\n"))
		}
		t.Logf("%s in the nested host: %d passed, %d failed, %d skipped (%d top-level tests, %d benchmark results)",
			p.path, c.pass, c.fail, c.skip, c.top, c.bench)
	})
	return c
}
