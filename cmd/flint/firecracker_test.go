package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// fcVM stands in for a VM under `flint firecracker`: Run blocks until
// Ctrl-Alt-Del, then reports a guest reset (exit code 0); it records the
// PATCH hooks' calls.
type fcVM struct {
	mu      sync.Mutex
	stop    chan struct{}
	once    sync.Once
	closed  bool
	updates []string
}

func newFCVM() *fcVM { return &fcVM{stop: make(chan struct{})} }

func (f *fcVM) Run() vmm.Result { <-f.stop; return vmm.Result{Reason: vmm.StopReason(1)} }
func (f *fcVM) FlushMetrics() error {
	return vmm.ErrNoMetrics // no metrics file: FlushMetrics answers 204 anyway
}

func (f *fcVM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fcVM) SendCtrlAltDel() error {
	f.once.Do(func() { close(f.stop) })
	return nil
}

func (f *fcVM) UpdateDrive(id, path string, rl *ratelimit.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, fmt.Sprintf("drive %s %q %v", id, path, rl != nil))
	return nil
}

func (f *fcVM) UpdateNetInterface(id string, rx, tx *ratelimit.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, fmt.Sprintf("net %s %v %v", id, rx != nil, tx != nil))
	return nil
}

// fcRun is one in-process run of the CLI.
type fcRun struct {
	a        *app
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	launched *vmm.Config // what --no-api launched
	onLaunch func(vmm.Config)
	built    chan vmm.Config
	vm       *fcVM
	vmErr    error // newVM's error
	filters  []seccomp.Mode
}

func newFCRun() *fcRun {
	r := &fcRun{built: make(chan vmm.Config, 1), vm: newFCVM()}
	r.a = newApp(&r.stdout, &r.stderr, func(cfg vmm.Config, _ io.Writer) int {
		r.launched = &cfg
		for _, f := range cfg.Outputs {
			f.Keep() // the guest starts, as in vmm.Machine.Run
		}
		if r.onLaunch != nil {
			r.onLaunch(cfg)
		}
		return 0
	})
	r.a.installFilter = func(o seccomp.Options) error { r.filters = append(r.filters, o.Mode); return nil }
	r.a.newVM = func(cfg vmm.Config) (machine, error) {
		if r.vmErr != nil {
			return nil, r.vmErr
		}
		r.built <- cfg
		return r.vm, nil
	}
	return r
}

// run runs args (program name first) to the end.
func (r *fcRun) run(args ...string) int { return r.a.run(args) }

// start runs args in the background and waits for the API socket.
func (r *fcRun) start(t *testing.T, sock string, args ...string) chan int {
	t.Helper()
	code := make(chan int, 1)
	go func() { code <- r.a.run(args) }()
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return code
		}
		select {
		case c := <-code:
			t.Fatalf("exited with %d before serving: %s", c, &r.stderr)
		default:
		}
		if i == 500 {
			t.Fatalf("no API socket: %s", &r.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fcConfig writes a Firecracker config file booting a test kernel, with
// a drive "scratch".
func fcConfig(t *testing.T, extra string) string {
	k := writeFile(t, "vmlinux", vmmtest.BzImage(vmmtest.Spin))
	img := writeFile(t, "scratch.img", make([]byte, 4096))
	return writeFile(t, "vm.json", fmt.Appendf(nil, `{"boot-source": {"kernel_image_path": %q, "boot_args": "console=ttyS0"},
		"machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
		"drives": [{"drive_id": "scratch", "path_on_host": %q, "is_root_device": false}]%s}`, k, img, extra))
}

func waitCode(t *testing.T, code chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("flint did not exit")
	}
	return -1
}

func socketGone(t *testing.T, sock, when string) {
	t.Helper()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("%s: the API socket is still there (%v)", when, err)
	}
}

// TestFirecrackerFlagErrors: every bad command line is one line on
// stderr and exit code 2, at once (a FIFO with no reader too).
func TestFirecrackerFlagErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fcConfig(t, "")
	// File names with a line break are quoted, not cut at it.
	nlFifo := filepath.Join(dir, "fi\nfo")
	if err := syscall.Mkfifo(nlFifo, 0o600); err != nil {
		t.Fatal(err)
	}
	nlConfig := filepath.Join(dir, "c\nfg.json")
	if err := os.WriteFile(nlConfig, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-path", nlFifo, "--api-sock", filepath.Join(dir, "s4")}, "--metrics-path: " + strconv.Quote(nlFifo) + ": a FIFO"},
		{[]string{"--log-path", nlFifo, "--api-sock", filepath.Join(dir, "s5")}, "--log-path: " + strconv.Quote(nlFifo) + ": a FIFO"},
		{[]string{"--config-file", nlConfig, "--api-sock", filepath.Join(dir, "s6")}, "--config-file " + strconv.Quote(nlConfig) + ": boot-source"},
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"--api-sock"}, "--api-sock needs a value"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--no-api"}, "--no-api needs --config-file"},
		{[]string{"--no-api", "--config-file", cfg, "--api-sock", "/x"}, "--api-sock and --no-api"},
		{[]string{"--id", "bad_id"}, `--id "bad_id": Invalid instance ID`},
		{[]string{"--id", strings.Repeat("a", 65)}, "Invalid instance ID"},
		{[]string{"--level", "Loud"}, `--level "Loud": want one of Error, Warning, Info, Debug, Trace, Off`},
		{[]string{"--start-time-us", "soon"}, "--start-time-us"},
		{[]string{"--http-api-max-payload-size", "0"}, "--http-api-max-payload-size 0"},
		{[]string{"--seccomp-filter", "f.bpf"}, "--seccomp-filter is not supported by flint yet"},
		{[]string{"--module", "api_server"}, "--module is not supported by flint yet"},
		{[]string{"--metadata", "m.json"}, "--metadata is not supported by flint yet"},
		{[]string{"--mmds-size-limit", "100"}, "--mmds-size-limit is not supported by flint yet"},
		{[]string{"--snapshot-version"}, "--snapshot-version is not supported by flint yet"},
		{[]string{"--describe-snapshot", "s"}, "--describe-snapshot is not supported by flint yet"},
		{[]string{"--metrics-path", fifo, "--api-sock", filepath.Join(dir, "s1")}, "--metrics-path: " + fifo},
		{[]string{"--log-path", fifo, "--api-sock", filepath.Join(dir, "s2")}, "--log-path: " + fifo},
		{[]string{"--config-file", filepath.Join(dir, "missing.json"), "--api-sock", filepath.Join(dir, "s3")}, "--config-file: " + dir},
	} {
		r := newFCRun()
		t0 := time.Now()
		code := r.run(append([]string{"flint", "firecracker"}, tc.args...)...)
		errs := r.stderr.String()
		if code != vmm.ExitUsage || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) || r.stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and one line containing %q", tc.args, code, errs, &r.stdout, tc.want)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("%q took %v", tc.args, d)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "s1")); !os.IsNotExist(err) {
		t.Error("a refused command line left an API socket")
	}
}

// TestFirecrackerLogPathAnyBytes: --log-path is a file name, which may
// hold a control byte or bytes that are not UTF-8; it is used as it is
// (it was written into JSON with Go's %q, which is not JSON, and refused
// as "--level \"\": want one of ...").
func TestFirecrackerLogPathAnyBytes(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a\x01b.log", "a\xffb.log", "tab\there.log"} {
		logf := filepath.Join(dir, name)
		r := newFCRun()
		if code := r.run("flint", "firecracker", "--no-api", "--config-file", fcConfig(t, ""), "--log-path", logf); code != 0 {
			t.Fatalf("--log-path %q: exit %d, stderr %q", logf, code, &r.stderr)
		}
		if _, err := os.Stat(logf); err != nil {
			t.Errorf("--log-path %q: %v", logf, err)
		}
	}
}

// TestFirecrackerAsArgv0: run under the name firecracker (a symbolic
// link), the binary is flint firecracker; other names are not.
func TestFirecrackerAsArgv0(t *testing.T) {
	r := newFCRun()
	if code := r.run("/usr/local/bin/firecracker", "--bogus"); code != vmm.ExitUsage || r.stderr.String() != "flint: firecracker: unknown flag --bogus (try: flint help firecracker)\n" {
		t.Fatalf("exit %d, stderr %q", code, &r.stderr)
	}
	r = newFCRun()
	if code := r.run("firecracker", "--version"); code != 0 || !strings.HasPrefix(r.stdout.String(), "Flint v") {
		t.Fatalf("--version: exit %d, %q %q", code, &r.stdout, &r.stderr)
	}
	for _, args := range [][]string{{"flint", "run"}, {"/bin/firecracker-v1", "x"}, {"firecracker.sh"}, nil} {
		if got := firecrackerArgs(args); fmt.Sprint(got) != fmt.Sprint(args) {
			t.Errorf("%q became %q", args, got)
		}
	}
	if got := firecrackerArgs([]string{"./firecracker", "--no-api"}); fmt.Sprint(got) != "[./firecracker firecracker --no-api]" {
		t.Errorf("got %q", got)
	}
}

// TestFirecrackerDefaults: the API socket is Firecracker's path unless
// given, the instance id Firecracker's.
func TestFirecrackerDefaults(t *testing.T) {
	cmd := firecrackerCommand(newFCRun().a, nil)
	defaults := map[string]string{}
	for _, f := range cmd.Flags {
		if v, ok := f.(interface{ GetValue() string }); ok {
			defaults[f.Names()[0]] = v.GetValue()
		}
	}
	if defaults["api-sock"] != "/run/firecracker.socket" || defaults["id"] != "anonymous-instance" ||
		defaults["http-api-max-payload-size"] != "51200" {
		t.Fatalf("defaults %v", defaults)
	}
}

// TestFirecrackerNoAPI: --no-api boots the config file through the
// launcher with the flags mapped onto it.
func TestFirecrackerNoAPI(t *testing.T) {
	dir := t.TempDir()
	cfg, logf, metrics := fcConfig(t, ""), filepath.Join(dir, "fc.log"), filepath.Join(dir, "metrics.json")
	r := newFCRun()
	r.onLaunch = func(c vmm.Config) { c.Log.Debug("from the VM's logger") }
	code := r.run("flint", "firecracker", "--no-api", "--config-file", cfg, "--boot-timer", "--level", "debug",
		"--log-path", logf, "--show-level", "--metrics-path", metrics, "--start-time-us", "12")
	c := r.launched
	if code != 0 || c == nil {
		t.Fatalf("exit %d, stderr %q", code, &r.stderr)
	}
	if c.CPUs != 2 || c.MemoryMiB != 256 || !c.Timing || c.MetricsPath != metrics || !c.Keyboard || len(c.Drives) != 1 ||
		c.Cmdline != "console=ttyS0" || c.Console != "stdio" || c.BeforeRun == nil {
		t.Fatalf("launched %+v", c)
	}
	if err := c.BeforeRun(c.SeccompOptions()); err != nil || len(r.filters) != 1 || r.filters[0] != seccomp.Kill {
		t.Fatalf("the seccomp filter: %v %v", err, r.filters)
	}
	if b, _ := os.ReadFile(logf); !strings.Contains(string(b), "level=DEBUG") || !strings.Contains(string(b), "from the VM's logger") {
		t.Fatalf("log file %q", b)
	}
	for _, f := range []string{logf, metrics} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v (created at start, 0600)", f, fi, err)
		}
	}
	if c.Drives[0].Transport != "mmio" {
		t.Fatalf("drive transport %q: Firecracker's devices are virtio-mmio without --enable-pci", c.Drives[0].Transport)
	}
	r = newFCRun()
	if code := r.run("flint", "firecracker", "--no-api", "--config-file", cfg, "--no-seccomp", "--enable-pci"); code != 0 ||
		r.launched.BeforeRun != nil || r.launched.Drives[0].Transport != "pci" {
		t.Fatalf("--no-seccomp --enable-pci: exit %d, %+v %s", code, r.launched, &r.stderr)
	}
}

// TestWithDefaultTransport: devices the "flint" section gives a
// transport keep it, the others get the default; the input's maps are
// not changed.
func TestWithDefaultTransport(t *testing.T) {
	p := fcConfig(t, `, "network-interfaces": [{"iface_id": "a", "host_dev_name": "tap0"}, {"iface_id": "b", "host_dev_name": "tap1"}],
		"flint": {"network-interfaces": {"a": {"transport": "pci", "tso": false}}}`)
	fc, err := loadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got := withDefaultTransport(*fc, "mmio")
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	nets, err := got.NetInterfaces()
	if err != nil || nets[0].Transport != "pci" || nets[0].TSO || nets[1].Transport != "mmio" || got.DriveTransport("scratch") != "mmio" {
		t.Fatalf("%+v %v, drive %s", nets, err, got.DriveTransport("scratch"))
	}
	if len(fc.Flint.NetworkInterfaces) != 1 || fc.Flint.Drives != nil {
		t.Fatalf("the input changed: %+v", fc.Flint)
	}
	if same := withDefaultTransport(*fc, ""); same.Flint != fc.Flint {
		t.Fatal("no default transport changed the config")
	}
}

// TestFirecrackerAPI: the API as Firecracker's clients use it, behind
// flint firecracker: the id, a version number, --metrics-path then
// PUT /metrics refused, a VM built for PATCH, PATCH reaching the VM,
// FlushMetrics without a metrics file, and the socket gone after the
// guest's end.
func TestFirecrackerAPI(t *testing.T) {
	dir := t.TempDir()
	sock, metrics := filepath.Join(dir, "fc.sock"), filepath.Join(dir, "m.json")
	r := newFCRun()
	code := r.start(t, sock, "firecracker", "--api-sock", sock, "--id", "vm-7", "--metrics-path", metrics, "--no-seccomp")
	c := api.Client(sock)
	if st, out := call(t, c, "GET", "/", ""); st != 200 || !strings.Contains(out, `"id":"vm-7"`) {
		t.Fatalf("GET /: %d %s", st, out)
	}
	st, out := call(t, c, "GET", "/version", "")
	if v := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(out), `{"firecracker_version":"`), `"}`); st != 200 || !semverShape.MatchString(v) || strings.HasPrefix(v, "v") {
		t.Fatalf("GET /version: %d %s", st, out)
	}
	if st, out := call(t, c, "PUT", "/metrics", fmt.Sprintf(`{"metrics_path": %q}`, filepath.Join(dir, "m2"))); st != 400 ||
		!strings.Contains(out, "Reinitialization of metrics not allowed.") {
		t.Fatalf("PUT /metrics after --metrics-path: %d %s", st, out)
	}
	k := writeFile(t, "vmlinux", vmmtest.BzImage(vmmtest.Spin))
	img := writeFile(t, "d.img", make([]byte, 4096))
	for _, q := range [][3]string{
		{"PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path": %q}`, k)},
		{"PUT", "/drives/scratch", fmt.Sprintf(`{"drive_id": "scratch", "path_on_host": %q, "is_root_device": false}`, img)},
		{"PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0"}`},
		{"PUT", "/actions", `{"action_type": "InstanceStart"}`},
		{"PATCH", "/drives/scratch", fmt.Sprintf(`{"drive_id": "scratch", "path_on_host": %q}`, img)},
		{"PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0", "tx_rate_limiter": {"ops": {"size": 1, "refill_time": 10}}}`},
		{"PUT", "/actions", `{"action_type": "FlushMetrics"}`},
	} {
		if st, out := call(t, c, q[0], q[1], q[2]); st != 204 {
			t.Fatalf("%s %s: %d %s", q[0], q[1], st, out)
		}
	}
	built := <-r.built
	if !built.PatchableLimiters || !built.Keyboard || built.MetricsPath != metrics || built.BeforeRun != nil ||
		built.Drives[0].Transport != "mmio" || built.Net[0].Transport != "mmio" {
		t.Fatalf("built %+v", built)
	}
	if fmt.Sprint(r.vm.updates) != fmt.Sprintf(`[drive scratch %q false net eth0 false true]`, img) {
		t.Fatalf("updates %q", r.vm.updates)
	}
	call(t, c, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
	if got := waitCode(t, code); got != 0 || !r.vm.closed {
		t.Fatalf("exit %d, closed %v: %s", got, r.vm.closed, &r.stderr)
	}
	socketGone(t, sock, "guest reset")
}

// TestPatchDriveUnderSeccomp: with the filter on (the default), a PATCH
// that needs to open a file is refused (the filter allows no open once
// the VM runs), a rate limiter alone is applied.
func TestPatchDriveUnderSeccomp(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fc.sock")
	r := newFCRun()
	code := r.start(t, sock, "firecracker", "--api-sock", sock, "--config-file", fcConfig(t, ""))
	c := api.Client(sock)
	img := writeFile(t, "d.img", make([]byte, 4096))
	if st, out := call(t, c, "PATCH", "/drives/scratch", fmt.Sprintf(`{"drive_id": "scratch", "path_on_host": %q}`, img)); st != 400 ||
		!strings.Contains(out, "--no-seccomp") {
		t.Fatalf("PATCH path under seccomp: %d %s", st, out)
	}
	if st, out := call(t, c, "PATCH", "/drives/scratch", `{"drive_id": "scratch", "rate_limiter": {"ops": {"size": 1, "refill_time": 10}}}`); st != 204 {
		t.Fatalf("PATCH rate_limiter: %d %s", st, out)
	}
	call(t, c, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
	waitCode(t, code)
	if fmt.Sprint(r.vm.updates) != "[drive scratch \"\" true]" {
		t.Fatalf("updates %q", r.vm.updates)
	}
	socketGone(t, sock, "guest reset")
}

// TestAPISocketRemovedOnEveryExit: the socket is gone after a failed
// start (a config booted at once, or InstanceStart's), a signal while
// waiting for InstanceStart, and the end of the wait (a.apiStop), for
// flint firecracker and flint run --api-sock alike.
func TestAPISocketRemovedOnEveryExit(t *testing.T) {
	for _, cmd := range [][]string{{"flint", "firecracker", "--api-sock"}, {"flint", "run", "--api-sock"}} {
		cfgFlag := "--config-file"
		if cmd[1] == "run" {
			cfgFlag = "--config"
		}
		// The VM booted from the config cannot be built.
		sock := filepath.Join(t.TempDir(), "s")
		r := newFCRun()
		r.vmErr = fmt.Errorf("no /dev/kvm")
		if code := r.run(append(cmd, sock, cfgFlag, fcConfig(t, ""))...); code != vmm.ExitVMMErr || !strings.Contains(r.stderr.String(), "no /dev/kvm") {
			t.Errorf("%s: failed start: exit %d, %s", cmd[1], code, &r.stderr)
		}
		socketGone(t, sock, cmd[1]+": failed start")

		// A signal while waiting for InstanceStart (the test process
		// catches SIGHUP too, so a miss cannot end it).
		sock = filepath.Join(t.TempDir(), "s")
		r = newFCRun()
		code := r.start(t, sock, append(cmd, sock)...)
		// InstanceStart that fails keeps the API waiting.
		r.vmErr = fmt.Errorf("no /dev/kvm")
		k := writeFile(t, "vmlinux", vmmtest.BzImage(vmmtest.Spin))
		c := api.Client(sock)
		call(t, c, "PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path": %q}`, k))
		if st, out := call(t, c, "PUT", "/actions", `{"action_type": "InstanceStart"}`); st != 400 || !strings.Contains(out, "no /dev/kvm") {
			t.Fatalf("%s: InstanceStart: %d %s", cmd[1], st, out)
		}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		got := waitCode(t, code)
		signal.Stop(hup)
		if got != 128+int(syscall.SIGHUP) {
			t.Errorf("%s: exit %d after SIGHUP, want %d", cmd[1], got, 128+int(syscall.SIGHUP))
		}
		socketGone(t, sock, cmd[1]+": signal")

		// The wait ends (a.apiStop).
		sock = filepath.Join(t.TempDir(), "s")
		r = newFCRun()
		stop := make(chan struct{})
		r.a.apiStop = stop
		code = r.start(t, sock, append(cmd, sock)...)
		close(stop)
		if got := waitCode(t, code); got != 0 {
			t.Errorf("%s: exit %d", cmd[1], got)
		}
		socketGone(t, sock, cmd[1]+": end of the wait")
	}
}

func TestSemver(t *testing.T) {
	bi := func(main string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: main}, Settings: settings}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "7c17dd9abcdef0123456789"}
	for _, tc := range []struct {
		version string
		bi      *debug.BuildInfo
		want    string
	}{
		{"v1.2.3", nil, "1.2.3"},
		{"0.4.0-rc.1+build.5", nil, "0.4.0-rc.1+build.5"},
		{"dev", bi("v0.0.0-20261206083000-7c17dd9abcde+dirty"), "0.0.0-20261206083000-7c17dd9abcde+dirty"},
		{"", bi("(devel)", rev), "0.0.0-dev+7c17dd9abcde"},
		{"", bi("(devel)"), "0.0.0-dev"},
		{"1.2", nil, "0.0.0-dev+1.2"},
		{"985ba56-dirty", bi("(devel)", rev), "0.0.0-dev+985ba56-dirty"}, // the Makefile's git describe
		{"v1.2.3-4-g985ba56-dirty", nil, "1.2.3-4-g985ba56-dirty"},
		{"a b/c", nil, "0.0.0-dev+a.b.c"},
		{"", nil, "0.0.0-dev"},
	} {
		got := semver(tc.version, tc.bi)
		if got != tc.want || !semverShape.MatchString(got) {
			t.Errorf("semver(%q, %v) = %q, want %q", tc.version, tc.bi, got, tc.want)
		}
	}
}
