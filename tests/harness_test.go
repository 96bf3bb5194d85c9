package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
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
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command(goCommand(), "build", "-o", out, pkg)
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
	// flags are more of flint's flags, after the ones every boot gets.
	flags []string
	// command, when set, makes this a command-mode run (`flint run --kernel K
	// ... flags -- command`): no --console or --cmdline of the harness's own,
	// command mode's defaults apply.
	command []string
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
	a = append(a, "--cpus", strconv.Itoa(b.cpus), "--memory", strconv.Itoa(b.memMiB))
	if len(b.command) > 0 {
		a = append(a, b.flags...)
		return append(append(a, "--"), b.command...)
	}
	a = append(a, "--console", "stdio", "--cmdline", b.cmdline)
	return append(a, b.flags...)
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
	// l1ps: L1's last process dump (L1-PS lines, flint's threads' wait
	// channels among them) when this boot hung; evidence reads it.
	l1ps []string
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
	// Boots that finished with a lost vCPU state run again even when the
	// sessions also reported a failure (a suspected hang elsewhere).
	res, err := e.runNested(t, boots)
	if rerr := e.rerunLostStates(t, boots, res); err == nil {
		err = rerr
	}
	return res, err
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
		cutOff(t, "case cut off: "+why, r)
	}
	if r.retried != "" {
		t.Logf("rerun: %s", r.retried)
	}
	return r
}
