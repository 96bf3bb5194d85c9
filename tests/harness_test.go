package e2e

import (
	"bufio"
	"bytes"
	"context"
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
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/vmm"
)

// defaultGuestCmdline is the L2 kernel command line: the serial console flint wires to
// stdio, a keyboard-controller reset on reboot (flint exits when the guest resets) and
// an immediate reboot on panic so a broken guest ends the run instead of hanging.
const defaultGuestCmdline = "console=ttyS0 reboot=k panic=-1"

// Per-boot timeouts. Inside the nested host everything runs under TCG emulation and a
// stock kernel takes tens of seconds to reach init.
const (
	directBootTimeout = 90 * time.Second
	nestedBootTimeout = 300 * time.Second
	// nestedOverhead covers building L1's image, L1's boot and its power-off.
	nestedOverhead = 120 * time.Second
)

// env is what every end-to-end test needs: the repository, the cache, a flint binary
// and the boot path.
type env struct {
	root   string // repository root
	cache  string // kernel and image cache
	flint  string // flint binary (static)
	direct bool   // boot on this machine's /dev/kvm; else inside the nested host
	why    string // why the nested host is used
	// nestedScript runs one nested host session (default scripts/nested-host.sh;
	// tests of the harness put a fake here) and wedgeGrace overrides
	// defaultWedgeGrace when non-zero.
	nestedScript string
	wedgeGrace   time.Duration
	// l1Silence and dumpWait override defaultL1Silence and dumpWait when
	// non-zero (tests of the harness).
	l1Silence, dumpWait time.Duration
	// l1CPUs is the nested host's vCPU count (0: nested-host.sh's default, 2).
	l1CPUs int
	// lost collects why each nested host was lost, over every runNested
	// (the soak counts them).
	lost []string
}

// ciMode reports whether the run requires every test to run: CI, or
// FLINT_TEST_REQUIRE=all as `make test` sets it (testenv.RequireAll). Then a
// missing tool is a failure, not a skip.
func ciMode() bool {
	return testenv.RequireAll()
}

// requireTools skips (or, under ciMode, fails) the test unless every tool is on PATH.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	testenv.SkipOrFail(t, fmt.Sprintf("missing tools %v (make setup, or scripts/setup.sh, installs them)", missing))
}

// repoRoot finds the repository root (the directory with go.mod above this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", dir, err)
	}
	return dir
}

// setup prepares an env: tools, cache, flint binary, boot path. It skips in -short.
func setup(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end boot tests are slow; skipped in -short mode")
	}
	e := &env{root: repoRoot(t)}
	e.direct, e.why = detectBootPath()
	tools := []string{"bash", "apt-cache", "apt-get", "dpkg", "depmod", "cpio", "gzip", "busybox"}
	if !e.direct {
		tools = append(tools, "qemu-system-x86_64", "timeout")
	}
	requireTools(t, tools...)
	if e.direct {
		t.Logf("boot path: direct KVM (hardware virtualization)")
		testenv.LogPath(t, testenv.PathDirect, "")
	} else {
		t.Logf("boot path: nested test host (QEMU TCG -cpu max, kvm_amd), because: %s", e.why)
		testenv.LogPath(t, testenv.PathNested, "")
	}

	e.cache = os.Getenv("FLINT_CACHE")
	if e.cache == "" {
		e.cache = filepath.Join(e.root, ".cache")
	}
	if err := os.MkdirAll(e.cache, 0o755); err != nil {
		t.Fatal(err)
	}
	e.flint = buildFlint(t, e.root)
	return e
}

// detectBootPath decides whether flint can boot stock kernels on this machine's
// /dev/kvm (testenv.CanBootStockKernels, which never creates the device).
// FLINT_E2E_BOOT=direct|nested overrides the detection.
func detectBootPath() (direct bool, why string) {
	switch os.Getenv("FLINT_E2E_BOOT") {
	case "direct":
		return true, ""
	case "nested":
		return false, "FLINT_E2E_BOOT=nested"
	}
	return testenv.CanBootStockKernels()
}

// buildFlint builds ./cmd/flint with CGO_ENABLED=0 (so it also runs in the nested
// host's busybox initramfs) into a temporary directory, or returns $FLINT_BIN.
func buildFlint(t *testing.T, root string) string {
	t.Helper()
	if bin := os.Getenv("FLINT_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("FLINT_BIN: %v", err)
		}
		t.Logf("using prebuilt flint %s (FLINT_BIN)", abs)
		return abs
	}
	return goBuild(t, root, "./cmd/flint")
}

// goBuild builds the command in package pkg (relative to root) as a static
// binary in a temporary directory and returns its path.
func goBuild(t *testing.T, root, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// script runs scripts/NAME with args and returns its stdout; stderr goes to the log.
func (e *env) script(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout bytes.Buffer
	stderr := newLineLogger(t, "") // the scripts prefix their messages themselves
	// Through bash, so the scripts need no executable bit.
	cmd := exec.Command("bash", append([]string{filepath.Join(e.root, "scripts", name)}, args...)...)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "FLINT_CACHE="+e.cache)
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	err := cmd.Run()
	stderr.Flush()
	if err != nil {
		t.Fatalf("scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, stdout.String())
	}
	return stdout.String()
}

// kernels fetches the stock kernels (cached) and returns flavour -> vmlinuz path.
func (e *env) kernels(t *testing.T) map[string]string {
	t.Helper()
	out := e.script(t, "fetch-kernels.sh", e.cache)
	k := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		t.Logf("kernel %s", line)
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "vmlinuz="); ok {
				k[fields[0]] = v
			}
		}
	}
	for _, flavour := range []string{"cloud", "amd64"} {
		if k[flavour] == "" {
			t.Fatalf("fetch-kernels.sh printed no vmlinuz for %s:\n%s", flavour, out)
		}
	}
	return k
}

// initramfs builds a guest initramfs into the cache with scripts/mkinitramfs-guest.sh.
func (e *env) initramfs(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(e.cache, "initramfs", name+".cpio.gz")
	e.script(t, "mkinitramfs-guest.sh", append(args, "-o", out)...)
	return out
}

// boot is one flint run.
type boot struct {
	name    string // unique, also the subtest name (no spaces)
	kernel  string
	initrd  string
	cpus    int
	memMiB  int
	cmdline string
	timeout time.Duration
	// wrap, when set, runs flint through a command: wrap's words, then flint's
	// command line (e.g. scripts/net-case.sh, which runs flint in a network
	// namespace). In the nested host, a word that is one of files is replaced by
	// that file's path in the payload.
	wrap  []string
	files []string // host files and directories wrap needs (copied into the nested payload)
	// needs names an earlier boot whose changes (to a disk image in the
	// nested payload) this one reads: a rerun in a fresh nested host runs
	// that boot again first.
	needs string
	// quiet, when set, is how long the boot's console may stay silent in the
	// nested host while L1 is alive before the harness takes it for a flint
	// hang (it dumps flint's state and fails the boot). For guests that print
	// a heartbeat of their own.
	quiet time.Duration
}

// withNeeds returns the boots of all (in their order) that pick names,
// with every boot they need and every boot that needs them, transitively:
// a rerun starts from the original disk images, and what read the changes
// of a boot that runs again must read them again.
func withNeeds(all []boot, pick map[string]bool) []boot {
	want := map[string]bool{}
	for n := range pick {
		want[n] = true
	}
	for changed := true; changed; {
		changed = false
		for _, b := range all {
			if b.needs == "" || want[b.name] == want[b.needs] {
				continue
			}
			want[b.name], want[b.needs], changed = true, true, true
		}
	}
	var out []boot
	for _, b := range all {
		if want[b.name] {
			out = append(out, b)
		}
	}
	return out
}

// names lists the boots' names.
func names(boots []boot) string {
	var n []string
	for _, b := range boots {
		n = append(n, b.name)
	}
	return strings.Join(n, " ")
}

// wrapped returns flint's command line a behind b.wrap, with files mapped by path.
func (b boot) wrapped(a []string, path func(string) string) []string {
	if len(b.wrap) == 0 {
		return a
	}
	w := make([]string, 0, len(b.wrap)+len(a))
	for _, x := range b.wrap {
		for _, f := range b.files {
			if x == f {
				x = path(f)
				break
			}
		}
		w = append(w, x)
	}
	return append(w, a...)
}

func (b boot) args(kernel, initrd, flint string) []string {
	a := []string{flint, "run", "--kernel", kernel}
	if initrd != "" {
		a = append(a, "--initrd", initrd)
	}
	return append(a, "--cpus", strconv.Itoa(b.cpus), "--memory", strconv.Itoa(b.memMiB),
		"--console", "stdio", "--cmdline", b.cmdline)
}

// result is what one boot produced.
type result struct {
	output   string        // guest console and flint output
	rc       int           // flint's exit status (124/137/143: killed by the timeout)
	timedOut bool          // the per-boot timeout fired
	elapsed  time.Duration // wall time of the flint run
	// unfinished: the boot started in the nested host but the host ended before it did.
	unfinished bool
	// host: why the nested host ended during this boot, when known (e.g. "wedged: ...").
	host string
	// hung: L1 stayed alive while this boot overran its timeout or fell
	// silent: a suspected flint hang, failed and never rerun.
	hung bool
	// retried: this is the second run of a boot that the first nested host never
	// finished because L1 wedged; the wedge description.
	retried string
}

// guestCmdline returns the L2 kernel command line ($FLINT_E2E_CMDLINE overrides).
func guestCmdline() string {
	if c := os.Getenv("FLINT_E2E_CMDLINE"); c != "" {
		return c
	}
	return defaultGuestCmdline
}

// bootTimeout returns the per-boot timeout for the path ($FLINT_E2E_BOOT_TIMEOUT overrides).
func (e *env) bootTimeout(t *testing.T) time.Duration {
	if v := os.Getenv("FLINT_E2E_BOOT_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		if s, err := strconv.Atoi(v); err == nil {
			return time.Duration(s) * time.Second
		}
		t.Fatalf("FLINT_E2E_BOOT_TIMEOUT=%q is neither a duration nor seconds", v)
	}
	if e.direct {
		return directBootTimeout
	}
	return nestedBootTimeout
}

// runBoots runs every boot, directly or all in one nested host session, and returns
// the results by boot name. A boot missing from the map never finished (the nested
// host died or timed out first); the error says why.
func (e *env) runBoots(t *testing.T, boots []boot) (map[string]*result, error) {
	t.Helper()
	if e.direct {
		return e.runDirect(t, boots), nil
	}
	res, err := e.runNested(t, boots)
	if err != nil {
		return res, err
	}
	return res, e.rerunLostStates(t, boots, res)
}

// rerunLostStates runs again, in a fresh nested host, every boot in
// which the nested virtualization lost the guest's vCPU state (with the
// boots they need):
//
//   - flint found a vCPU state that cannot be the guest's (its page tables
//     outside guest RAM: vmm.ImpossibleStateMsg, in a dump that net-case.sh
//     asks for when the guest stalls, or that flint logs when --timeout
//     ends a guest). Seen as the L1 kernel's own registers (RIP inside
//     kvm_amd's __svm_vcpu_run) in the L2 vCPU: QEMU 7.2's TCG emulation of
//     SVM swaps states wrongly on some #VMEXITs, and the guest hangs (its
//     other vCPU spins on a lock or an IPI the lost one never answers).
//   - the guest triple-faulted (KVM_EXIT_SHUTDOWN) in the nested host: the
//     same loss when the bogus state faults at once. On SVM, KVM resets the
//     vCPU on a shutdown, so flint cannot show the faulting state there.
//
// A stock kernel on a correct VMM does neither; with hardware
// virtualization (e.direct) nothing is rerun. Each rerun is logged with the
// evidence; a boot lost 1+maxLostReruns times fails (its checks see its
// output).
func (e *env) rerunLostStates(t *testing.T, boots []boot, res map[string]*result) error {
	if e.direct {
		return nil
	}
	check := boots
	for run := 2; run <= 1+maxLostReruns; run++ {
		lost := map[string]bool{}
		for _, b := range check {
			r := res[b.name]
			if r != nil && (strings.Contains(r.output, vmm.ImpossibleStateMsg) || strings.Contains(r.output, vmm.TripleFaultMsg)) {
				t.Logf("RERUN %s: the nested virtualization lost the guest's vCPU state; run %d in a fresh nested host:\n%s",
					b.name, run, grepLines(r.output, vmm.ImpossibleStateMsg, "dump: vCPU", "triple fault"))
				lost[b.name] = true
			}
		}
		if len(lost) == 0 {
			return nil
		}
		again := withNeeds(boots, lost)
		if len(again) > len(lost) {
			t.Logf("RERUN with the boots they need or that need them: %s", names(again))
		}
		second, err := e.runNested(t, again)
		for _, b := range again {
			if r := second[b.name]; r != nil {
				r.retried = fmt.Sprintf("run %d: an earlier run lost the guest's vCPU state in the nested host", run)
				res[b.name] = r
			}
		}
		if err != nil {
			return err
		}
		check = again
	}
	return nil
}

// maxLostReruns is how many times rerunLostStates runs a boot again. A
// loss hits roughly one boot in ten to twenty today; two reruns make a
// boot that is lost three times in a row (a real fault, not bad luck) the
// only way to fail this way.
const maxLostReruns = 2

// grepLines returns the lines of out that contain any of subs.
func grepLines(out string, subs ...string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				keep = append(keep, l)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}

func (e *env) runDirect(t *testing.T, boots []boot) map[string]*result {
	res := map[string]*result{}
	for _, b := range boots {
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		a := b.wrapped(b.args(b.kernel, b.initrd, e.flint), func(f string) string { return f })
		cmd := exec.CommandContext(ctx, a[0], a[1:]...)
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		cmd.WaitDelay = 5 * time.Second
		start := time.Now()
		err := cmd.Run()
		r := &result{elapsed: time.Since(start), timedOut: ctx.Err() != nil}
		cancel()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			r.rc = ee.ExitCode()
			if r.rc < 0 {
				r.rc = 128 + 9
			}
		default:
			r.rc = -1
			out.WriteString("\nflint could not be started: " + err.Error())
		}
		r.output = out.String()
		res[b.name] = r
		t.Logf("boot %s: rc=%d in %v", b.name, r.rc, r.elapsed.Round(time.Millisecond))
	}
	return res
}

// shQuote quotes s for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Job script lines the parser looks for.
var (
	jobStartRE = regexp.MustCompile(`^JOB-START (\S+)$`)
	jobEndRE   = regexp.MustCompile(`^JOB (\S+) rc=(-?\d+) secs=([0-9.]+)$`)
)

// nestedJobScript writes the L1 job: each boot under busybox timeout, framed by
// "JOB-START <name>" and "JOB <name> rc=<rc> secs=<s>" lines; it exits with the
// number of failed boots.
func nestedJobScript(boots []boot, payloadName map[string]string) string {
	var s strings.Builder
	s.WriteString(`#!/bin/sh
# Generated by flint's tests/ (e2e): runs each boot, framed for the parser.
failed=0
now() { cut -d' ' -f1 /proc/uptime; }
run_boot() {
	name=$1; secs=$2; shift 2
	echo "JOB-START $name"
	t0=$(now)
	timeout -k 10 "$secs" "$@" </dev/null
	rc=$?
	t1=$(now)
	echo
	echo "JOB $name rc=$rc secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
	[ "$rc" = 0 ] || failed=$((failed + 1))
}
`)
	for _, b := range boots {
		initrd := ""
		if b.initrd != "" {
			initrd = "/payload/" + payloadName[b.initrd]
		}
		a := b.wrapped(b.args("/payload/"+payloadName[b.kernel], initrd, "/usr/bin/flint"),
			func(f string) string { return "/payload/" + payloadName[f] })
		q := make([]string, len(a))
		for i, x := range a {
			q[i] = shQuote(x)
		}
		secs := int(b.timeout / time.Second)
		if secs < 1 {
			secs = 1
		}
		fmt.Fprintf(&s, "run_boot %s %d %s\n", shQuote(b.name), secs, strings.Join(q, " "))
	}
	s.WriteString("exit $failed\n")
	return s.String()
}

// parseJobs splits nested host output into per-boot results.
func parseJobs(out string) map[string]*result {
	res := map[string]*result{}
	var cur string
	var buf strings.Builder
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if m := jobStartRE.FindStringSubmatch(line); m != nil {
			cur = m[1]
			buf.Reset()
			continue
		}
		if m := jobEndRE.FindStringSubmatch(line); m != nil && m[1] == cur {
			rc, _ := strconv.Atoi(m[2])
			secs, _ := strconv.ParseFloat(m[3], 64)
			res[cur] = &result{
				output:   buf.String(),
				rc:       rc,
				timedOut: rc == 124 || rc == 137 || rc == 143,
				elapsed:  time.Duration(secs * float64(time.Second)),
			}
			cur = ""
			continue
		}
		if cur != "" {
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
	}
	if cur != "" {
		// Started but never ended: the nested host died or timed out during this boot.
		res[cur] = &result{output: buf.String(), rc: -1, unfinished: true}
	}
	return res
}

// maxL1Losses is how many nested hosts one runNested may lose (L1 wedged,
// crashed or vanished) before it gives up. QEMU's TCG emulation of SVM
// crashes L1 now and then (seen: 3 times in one 20-minute CI run, twice in
// a row in one test), and every retry makes progress: it runs only what
// did not finish.
const maxL1Losses = 4

// runNested runs the boots in one nested host session. If L1 wedges (see
// hostWatch), its kernel crashes or it ends without finishing its job
// (l1Crash), the boots that never finished (with the boots they need) run
// again in a fresh L1, up to maxL1Losses lost hosts. Boots that finished
// are not run again for their own sake, whatever their outcome: a wrong
// marker or a non-zero flint exit status is a failure of flint, not of the
// host.
func (e *env) runNested(t *testing.T, boots []boot) (map[string]*result, error) {
	res, wedged, err := e.nestedSession(t, boots)
	var losses, hangs []string
	for {
		unfinished := map[string]bool{}
		hung := map[string]bool{}
		for _, b := range boots {
			switch r := res[b.name]; {
			case r != nil && r.hung:
				hung[b.name] = true
			case r == nil || r.unfinished:
				unfinished[b.name] = true
			}
		}
		if wedged == "" && (len(hung) == 0 || len(unfinished) == 0) {
			break
		}
		if len(unfinished) == 0 {
			t.Logf("nested host lost after its last boot: %s; every boot had finished", wedged)
			break
		}
		// A boot that needs a finished one runs after it again: the fresh L1
		// starts from the original disk images. A hung boot is a flint
		// failure: it is never run again.
		var rest []boot
		for _, b := range withNeeds(boots, unfinished) {
			if !hung[b.name] {
				rest = append(rest, b)
			}
		}
		if wedged != "" {
			losses = append(losses, wedged)
			if len(losses) == maxL1Losses {
				for _, b := range rest {
					if r := res[b.name]; r != nil && r.unfinished {
						r.host = "wedged: " + wedged
					}
				}
				err = fmt.Errorf("nested host lost %d times, giving up: %s", len(losses), strings.Join(losses, "; "))
				break
			}
			t.Logf("nested host lost (%d of at most %d): %s; retrying the remaining %d boot(s) (%s) in a fresh L1",
				len(losses), maxL1Losses, wedged, len(rest), names(rest))
		} else {
			for n := range hung {
				hangs = append(hangs, n)
			}
			t.Logf("boot(s) %s hung while L1 stayed alive (a flint failure: not rerun); the %d boot(s) that never ran (%s) run in a fresh L1",
				strings.Join(hangs, ", "), len(rest), names(rest))
		}
		var again map[string]*result
		again, wedged, err = e.nestedSession(t, rest)
		for _, b := range rest {
			if r := again[b.name]; r != nil {
				if len(losses) > 0 {
					r.retried = fmt.Sprintf("nested host %d was lost during or before this case (%s)", len(losses), losses[len(losses)-1])
				}
				res[b.name] = r
			}
		}
	}
	// What ran where, for the run's summary: losses are the emulator's, and
	// are counted so that their rate stays known.
	t.Logf("nested hosts lost in this test: %d%s", len(losses), prefixed(": ", strings.Join(losses, "; ")))
	e.lost = append(e.lost, losses...)
	if len(hangs) > 0 && err == nil {
		err = fmt.Errorf("suspected flint hang in %s (L1 stayed alive)", strings.Join(hangs, ", "))
	}
	return res, err
}

// prefixed returns p+s, or "" when s is empty.
func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// nestedSession runs the boots in one nested host. wedged says why it was cut short
// when L1 wedged ("" otherwise); err reports other failures of the session.
func (e *env) nestedSession(t *testing.T, boots []boot) (res map[string]*result, wedged string, err error) {
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload")
	if err := os.Mkdir(payload, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each distinct host file once in the payload (symlinks; nested-host.sh follows them).
	names := map[string]string{}
	add := func(path string) {
		if path == "" || names[path] != "" {
			return
		}
		base := filepath.Base(path)
		if real, err := filepath.EvalSymlinks(path); err == nil {
			base = filepath.Base(real) // vmlinuz-<kver> rather than the cache's vmlinuz link
		}
		n := fmt.Sprintf("%d-%s", len(names), base)
		names[path] = n
		if err := os.Symlink(path, filepath.Join(payload, n)); err != nil {
			t.Fatal(err)
		}
	}
	total := nestedOverhead
	for _, b := range boots {
		add(b.kernel)
		add(b.initrd)
		for _, f := range b.files {
			add(f)
		}
		total += b.timeout + 10*time.Second
	}
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 30*time.Second; left < total {
			t.Logf("nested host timeout cut from %v to %v by the go test -timeout deadline", total, left.Round(time.Second))
			total = left
		}
	}
	job := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(job, []byte(nestedJobScript(boots, names)), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	logw := newLineLogger(t, "nested: ")
	watch := newHostWatch(boots, time.Now)
	if e.wedgeGrace > 0 {
		watch.grace = e.wedgeGrace
	}
	if e.l1Silence > 0 {
		watch.silence = e.l1Silence
	}
	wait := dumpWait
	if e.dumpWait > 0 {
		wait = e.dumpWait
	}
	script := e.nestedScript
	if script == "" {
		script = filepath.Join(e.root, "scripts", "nested-host.sh")
	}
	cmd := exec.Command("bash", script,
		"--flint", e.flint, "--payload", payload, "--script", job,
		"--timeout", strconv.Itoa(int(total/time.Second)), "--cache", e.cache,
		"--append", nestedL1Append)
	if e.l1CPUs > 0 {
		cmd.Args = append(cmd.Args, "--cpus", strconv.Itoa(e.l1CPUs))
	}
	// L1's heartbeat tells a lost L1 from a hung flint; the control channel
	// asks L1 for flint's state.
	beatFile, ctl := filepath.Join(dir, "l1-beat.log"), filepath.Join(dir, "l1-ctl")
	cmd.Args = append(cmd.Args, "--beat", beatFile, "--control", ctl)
	cmd.Dir = e.root
	cmd.Stdout = io.MultiWriter(&out, logw, watch)
	cmd.Stderr = logw
	// nested-host.sh stops QEMU when it gets SIGTERM; WaitDelay covers a QEMU that
	// keeps the output pipe open anyway.
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("running nested-host.sh: %v", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tailFile(beatFile, watch.beatWriter(), done)
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				r := watch.check()
				if r == "" {
					continue
				}
				if watch.hung() {
					t.Logf("%s; asking L1 for flint's state (SIGUSR1: vCPUs, queues, interrupts; L1 process dump)", r)
					if err := sendControl(ctl, "dump"); err != nil {
						t.Logf("asking L1 for a dump: %v", err)
					}
					select {
					case <-done:
						return
					case <-time.After(wait):
					}
				} else {
					t.Logf("nested host lost: %s; flint's state cannot be dumped from a lost L1; last heartbeat: %s; %s",
						r, watch.heartbeat(), qemuCPU(beatFile+".qemu-pid", 2*time.Second))
				}
				if ps := watch.processes(); len(ps) > 0 {
					t.Logf("L1's last process dump:\n%s", strings.Join(ps, "\n"))
				}
				_ = cmd.Process.Signal(syscall.SIGTERM)
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	wg.Wait()
	logw.Flush()
	t.Logf("nested host session: %v wall for %d boots; %s", time.Since(start).Round(time.Second), len(boots), watch.heartbeat())
	res = parseJobs(out.String())
	if reason := watch.finish(); reason != "" {
		if watch.hung() {
			for _, r := range res {
				if r.unfinished {
					r.hung, r.host = true, reason
				}
			}
			return res, "", errors.New(reason)
		}
		return res, reason, fmt.Errorf("nested host wedged: %s", reason)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return res, "", nil
	case errors.As(err, &ee) && ee.ExitCode() == 124:
		return res, "", fmt.Errorf("nested host timed out after %v", total.Round(time.Second))
	case errors.As(err, &ee) && ee.ExitCode() == 125:
		// L1 died without finishing its job. QEMU 7.2's TCG emulation of
		// SVM occasionally hands L1 a corrupted state on #VMEXIT (seen: a
		// lost GS base and recursive page faults on flint's vCPU thread, or
		// L1 gone without a word: a triple fault under -no-reboot): the same
		// class of fault as a wedge, so the unfinished boots get one fresh L1.
		why := l1Crash(out.String())
		if why == "" {
			why = "ended: L1 stopped without finishing its job and without a panic message (an L1 triple fault ends QEMU under -no-reboot)"
		}
		return res, why, fmt.Errorf("nested host %s", why)
	case errors.As(err, &ee):
		return res, "", nil // the job's status: the number of failed boots, judged per boot
	default:
		return res, "", fmt.Errorf("running nested-host.sh: %v", err)
	}
}

// tailFile copies what is appended to path to w until done is closed
// (polling: the file is written by QEMU). A missing file is waited for.
func tailFile(path string, w io.Writer, done <-chan struct{}) {
	var off int64
	buf := make([]byte, 64<<10)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for last := false; ; {
		if f, err := os.Open(path); err == nil {
			for {
				n, _ := f.ReadAt(buf, off)
				if n == 0 {
					break
				}
				off += int64(n)
				_, _ = w.Write(buf[:n])
			}
			f.Close()
		}
		if last {
			return
		}
		select {
		case <-done:
			last = true // one more read: what came before the end
		case <-tick.C:
		}
	}
}

// qemuCPU says how much CPU the QEMU whose pid is in pidfile used over d:
// whether a silent L1 is halted (its vCPUs idle: nothing wakes it) or
// spinning. Linux's per-thread schedstat counts nanoseconds on a CPU.
func qemuCPU(pidfile string, d time.Duration) string {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return "QEMU's CPU time unknown: " + err.Error()
	}
	pid := strings.TrimSpace(string(b))
	sample := func() (ns int64) {
		tasks, _ := filepath.Glob(filepath.Join("/proc", pid, "task", "*", "schedstat"))
		for _, f := range tasks {
			if s, err := os.ReadFile(f); err == nil {
				if v, err := strconv.ParseInt(strings.Fields(string(s) + " 0")[0], 10, 64); err == nil {
					ns += v
				}
			}
		}
		return ns
	}
	before := sample()
	time.Sleep(d)
	used := time.Duration(sample() - before)
	state := "L1 is halted: QEMU's threads are idle"
	if used > d/10 {
		state = "L1 runs but does not answer"
	}
	return fmt.Sprintf("QEMU (pid %s) used %v of CPU in %v: %s", pid, used.Round(time.Millisecond), d, state)
}

// sendControl writes one command line to L1's control channel
// (nested-host.sh --control PATH: QEMU reads PATH.in).
func sendControl(ctl, command string) error {
	f, err := os.OpenFile(ctl+".in", os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(command + "\n")
	return err
}

// l1Crash describes an L1 kernel crash in a session's output ("" if none):
// L1's own lines carry a "<level>" prefix (a guest's do not), and a crash
// leaves an emergency-level (<0>) BUG or panic line.
func l1Crash(out string) string {
	var first, panic string
	for _, l := range strings.Split(out, "\n") {
		i := strings.Index(l, "<0>[")
		if i < 0 {
			continue
		}
		msg := strings.TrimSpace(l[i:])
		if j := strings.Index(msg, "] "); j >= 0 {
			msg = msg[j+2:]
		}
		switch {
		case strings.HasPrefix(msg, "Kernel panic"):
			panic = msg
		case first == "" && (strings.HasPrefix(msg, "BUG:") || strings.Contains(msg, "Oops")):
			first = msg
		}
	}
	switch {
	case panic == "":
		return ""
	case first != "":
		return "crashed: L1 " + first + " (" + panic + ")"
	}
	return "crashed: L1 " + panic
}

// lineLogger writes each complete line to t.Log (streamed live under go test -v).
type lineLogger struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func newLineLogger(t *testing.T, prefix string) *lineLogger {
	return &lineLogger{t: t, prefix: prefix}
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// Flush logs a trailing partial line.
func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + strings.TrimRight(string(l.buf), "\r"))
		l.buf = nil
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// finished returns the result of a case that ran to its end, or ends the
// (sub)test: the case never started, or the nested host ended during it.
func finished(t *testing.T, results map[string]*result, name string) *result {
	t.Helper()
	r := results[name]
	if r == nil {
		t.Fatalf("case never started (the nested host ended first)")
	}
	if r.unfinished {
		why := "the nested host ended while it ran"
		if r.host != "" {
			why = "nested host " + r.host
		}
		t.Fatalf("case cut off: %s; its output so far:\n%s", why, tail(r.output, 80))
	}
	if r.retried != "" {
		t.Logf("rerun: %s", r.retried)
	}
	return r
}
