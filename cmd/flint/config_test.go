package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// fakeMachine stands in for a VM in --api-sock mode: Run blocks until
// Ctrl-Alt-Del is pressed (or returns at once when block is nil), then
// reports a guest reset.
type fakeMachine struct {
	mu         sync.Mutex
	ctrlAltDel int
	flushes    int
	block      chan struct{} // nil: Run returns at once
	once       sync.Once
	closed     bool
}

// guestReset is a Result whose exit code is 0 (stopReset).
var guestReset = vmm.Result{Reason: vmm.StopReason(1)}

func (f *fakeMachine) Run() vmm.Result {
	if f.block != nil {
		<-f.block
	}
	return guestReset
}

func (f *fakeMachine) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeMachine) SendCtrlAltDel() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrlAltDel++
	if f.block != nil {
		f.once.Do(func() { close(f.block) })
	}
	return nil
}

func (f *fakeMachine) FlushMetrics() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
	return nil
}

func TestGuestResetIsExitZero(t *testing.T) {
	if code := guestReset.ExitCode(); code != vmm.ExitOK || guestReset.Reason.String() != "guest reset" {
		t.Fatalf("fake result: code %d reason %s", code, guestReset.Reason)
	}
}

// TestBucketLimitsAgree: configs checks rate limiters, drive ids and
// partuuids with its own copies of ratelimit's, virtio/blk's and vmm's
// limits (configs imports nothing); they must not drift.
func TestBucketLimitsAgree(t *testing.T) {
	if configs.MaxBucketSize != ratelimit.MaxSize || configs.MaxRefillTime != ratelimit.MaxRefillTime {
		t.Fatalf("configs limits %d/%d, ratelimit %d/%d", configs.MaxBucketSize, configs.MaxRefillTime,
			uint64(ratelimit.MaxSize), uint64(ratelimit.MaxRefillTime))
	}
	root := func(partuuid string) error {
		return vmm.DriveConfig{ID: "r", Path: "/r", Root: true, PartUUID: partuuid}.Validate()
	}
	if long := strings.Repeat("a", configs.MaxPartUUID); root(long) != nil || root(long+"a") == nil {
		t.Fatalf("vmm's partuuid bound is not configs.MaxPartUUID (%d)", configs.MaxPartUUID)
	}
}

// vmFiles writes a tiny kernel and an initrd and returns their paths.
func vmFiles(t *testing.T) (kernel, initrd string) {
	return writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin)), writeFile(t, "initrd", []byte("initrd bytes"))
}

func configFile(t *testing.T, doc string) string { return writeFile(t, "vm.json", []byte(doc)) }

func fullDoc(kernel, initrd, metrics string) string {
	return fmt.Sprintf(`{
	  "boot-source": {"kernel_image_path": %q, "initrd_path": %q, "boot_args": "console=ttyS0 from-file"},
	  "machine-config": {"vcpu_count": 2, "mem_size_mib": 512},
	  "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "52:54:00:00:00:07", "mtu": 9000}],
	  "metrics": {"metrics_path": %q},
	  "flint": {"console": "none", "timeout": "90s", "exit_marker": "DONE",
	            "network-interfaces": {"eth0": {"transport": "mmio", "tso": false, "ufo": false}}}
	}`, kernel, initrd, metrics)
}

func TestConfigFile(t *testing.T) {
	k, i := vmFiles(t)
	p := configFile(t, fullDoc(k, i, "/tmp/m.json"))
	code, _, stderr, cfg := runArgs(t, "run", "--config", p)
	if code != 0 || cfg == nil {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if cfg.CPUs != 2 || cfg.MemoryMiB != 512 || cfg.Cmdline != "console=ttyS0 from-file" || string(cfg.Initrd) != "initrd bytes" ||
		cfg.Console != "none" || cfg.Timeout != 90*time.Second || cfg.ExitMarker != "DONE" || cfg.MetricsPath != "/tmp/m.json" {
		t.Fatalf("config %+v", cfg)
	}
	n := cfg.Net[0]
	if len(cfg.Net) != 1 || n.ID != "eth0" || n.TAP != "tap0" || n.MAC.String() != "52:54:00:00:00:07" || n.MTU != 9000 ||
		n.Transport != configs.TransportMMIO || n.TSO || n.UFO || !n.Csum || cfg.Keyboard {
		t.Fatalf("net %+v", cfg.Net)
	}
}

// TestConfigDrives: drives map to vmm's with their flint transport and rate
// limiter.
func TestConfigDrives(t *testing.T) {
	k, _ := vmFiles(t)
	r, d := writeFile(t, "r.ext4", nil), writeFile(t, "d.img", nil)
	p := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q},
	  "drives": [{"drive_id": "rootfs", "path_on_host": %q, "is_root_device": true, "cache_type": "Writeback",
	              "rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}},
	             {"drive_id": "data", "path_on_host": %q, "is_root_device": false, "is_read_only": true}],
	  "flint": {"drives": {"data": {"transport": "mmio"}}}}`, k, r, d))
	code, _, stderr, cfg := runArgs(t, "run", "--config", p)
	if code != 0 || cfg == nil {
		t.Fatalf("code %d: %s", code, stderr)
	}
	want := []vmm.DriveConfig{
		{ID: "rootfs", Path: r, Root: true, CacheType: "Writeback", Transport: "pci",
			RateLimit: &ratelimit.Config{Bandwidth: ratelimit.BucketConfig{Size: 1000, RefillTime: 100}}},
		{ID: "data", Path: d, ReadOnly: true, CacheType: "Unsafe", Transport: "mmio"},
	}
	if len(cfg.Drives) != 2 || fmt.Sprint(cfg.Drives[1]) != fmt.Sprint(want[1]) || *cfg.Drives[0].RateLimit != *want[0].RateLimit ||
		cfg.Drives[0].Transport != "pci" || !cfg.Drives[0].Root || cfg.Drives[0].CacheType != "Writeback" {
		t.Fatalf("drives %+v", cfg.Drives)
	}
}

// TestConfigPartUUIDOnDataDrive: Firecracker takes partuuid into account
// only for the root device and ignores it on another drive, so a
// Firecracker config with one there boots (it was exit 2: "partuuid: only
// meaningful with is_root_device"); the root device keeps its own.
func TestConfigPartUUIDOnDataDrive(t *testing.T) {
	k, _ := vmFiles(t)
	r, d := writeFile(t, "r.ext4", nil), writeFile(t, "d.img", nil)
	p := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q},
	  "drives": [{"drive_id": "rootfs", "path_on_host": %q, "is_root_device": true, "partuuid": "0eaa91a0-01"},
	             {"drive_id": "data", "path_on_host": %q, "is_root_device": false, "partuuid": "1234-02"}]}`, k, r, d))
	code, _, stderr, cfg := runArgs(t, "run", "--config", p)
	if code != 0 || cfg == nil {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if len(cfg.Drives) != 2 || cfg.Drives[0].PartUUID != "0eaa91a0-01" || cfg.Drives[1].PartUUID != "" {
		t.Fatalf("drives %+v", cfg.Drives)
	}
}

// TestDuplicateMACs: two interfaces with one MAC are refused whether both
// come from --net or one from the config file (the guest's NICs would
// share an address; only a config's own interfaces were checked).
func TestDuplicateMACs(t *testing.T) {
	k, _ := vmFiles(t)
	wantUsageError(t, []string{"run", "--kernel", k, "--net", "tap=ta,mac=52:54:00:00:00:01", "--net", "tap=tb,mac=52:54:00:00:00:01"},
		"--net tap=tb: mac 52:54:00:00:00:01 is --net tap=ta's too")
	p := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q},
	  "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "ta", "guest_mac": "52:54:00:00:00:02"}]}`, k))
	wantUsageError(t, []string{"run", "--config", p, "--net", "tap=tb,mac=52-54-00-00-00-02"}, `interface "eth0"'s too`)
	if code, _, stderr, _ := runArgs(t, "run", "--kernel", k, "--net", "tap=ta", "--net", "tap=tb"); code != 0 {
		t.Fatalf("two TAPs with derived MACs: exit %d, %s", code, stderr)
	}
}

// TestConfigFlagsOverride: every flag given on the command line wins over
// the file; --net adds interfaces.
func TestConfigFlagsOverride(t *testing.T) {
	k, i := vmFiles(t)
	k2 := writeFile(t, "other", vmmtest.BzImage(vmmtest.Spin))
	p := configFile(t, fullDoc(k, i, "/tmp/m.json"))
	code, _, stderr, cfg := runArgs(t, "run", "--config", p, "--kernel", k2, "--cmdline", "flag-cmdline", "--cpus", "40",
		"--memory", "64", "--console", "file:/tmp/c.log", "--exit-marker", "FLAG", "--timeout", "5s", "--net", "tap=tap9")
	if code != 0 || cfg == nil {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if cfg.CPUs != 40 || cfg.MemoryMiB != 64 || cfg.Cmdline != "flag-cmdline" || cfg.Console != "file:/tmp/c.log" ||
		cfg.ExitMarker != "FLAG" || cfg.Timeout != 5*time.Second || string(cfg.Initrd) != "initrd bytes" ||
		len(cfg.Net) != 2 || cfg.Net[0].TAP != "tap0" || cfg.Net[1].TAP != "tap9" {
		t.Fatalf("config %+v", cfg)
	}
	// Defaults when the file says nothing: Firecracker's machine, Flint's
	// command line.
	p = configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}}`, k))
	_, _, stderr, cfg = runArgs(t, "run", "--config", p)
	if cfg == nil || cfg.CPUs != 1 || cfg.MemoryMiB != 128 || cfg.Cmdline != defaultCmdline || cfg.Console != "stdio" || cfg.Initrd != nil {
		t.Fatalf("defaults %+v (%s)", cfg, stderr)
	}
}

// TestConfigNetRateLimiters: an interface's limiters reach the VM config.
func TestConfigNetRateLimiters(t *testing.T) {
	k, _ := vmFiles(t)
	p := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
		"rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}},
		"tx_rate_limiter": {"ops": {"size": 10, "one_time_burst": 5, "refill_time": 1000}}}]}`, k))
	code, _, stderr, cfg := runArgs(t, "run", "--config", p)
	if code != 0 || cfg == nil || len(cfg.Net) != 1 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	rx, tx := vmm.RateLimitConfig(cfg.Net[0].RxRateLimiter), vmm.RateLimitConfig(cfg.Net[0].TxRateLimiter)
	if rx == nil || rx.Bandwidth.Size != 1000 || rx.Bandwidth.RefillTime != 100 || !rx.Ops.Unlimited() {
		t.Errorf("rx limiter %+v", rx)
	}
	if tx == nil || tx.Ops.Size != 10 || tx.Ops.OneTimeBurst != 5 || tx.Ops.RefillTime != 1000 || !tx.Bandwidth.Unlimited() {
		t.Errorf("tx limiter %+v", tx)
	}
}

func TestConfigErrors(t *testing.T) {
	k, _ := vmFiles(t)
	boot := fmt.Sprintf(`"boot-source": {"kernel_image_path": %q}`, k)
	cases := []struct{ name, doc, want string }{
		{"unknown key", `{` + boot + `, "machine-config": {"vcpu_count": 1, "mem_size": 1}}`, `unknown key "mem_size" at machine-config`},
		{"range", `{` + boot + `, "machine-config": {"vcpu_count": 99, "mem_size_mib": 128}}`, "machine-config.vcpu_count 99 is out of range [1, 32]"},
		{"unsupported", `{` + boot + `, "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "2M"}}`, `machine-config.huge_pages "2M" is not supported by flint yet`},
		{"vsock", `{` + boot + `, "vsock": {}}`, "vsock.guest_cid is required"},
		{"vsock cid", `{` + boot + `, "vsock": {"guest_cid": 2, "uds_path": "v"}}`, "vsock.guest_cid 2 is out of range"},
		{"missing kernel file", `{"boot-source": {"kernel_image_path": "/nonexistent/k"}}`, "boot-source.kernel_image_path: /nonexistent/k"},
		{"missing initrd file", `{` + boot[:len(boot)-1] + `, "initrd_path": "/nonexistent/i"}}`, "boot-source.initrd_path: /nonexistent/i"},
		{"missing drive file", `{` + boot + `, "drives": [{"drive_id": "rootfs", "path_on_host": "/nonexistent/r", "is_root_device": true}]}`, "drives[0].path_on_host: /nonexistent/r: No such file or directory (os error 2)"},
		{"Firecracker's null sections, missing drive", `{` + boot + `, "drives": [{"drive_id": "rootfs", "path_on_host": "/nonexistent/r", "is_root_device": true, "socket": null, "partuuid": null}], "balloon": null, "vsock": null, "pmem": []}`, "drives[0].path_on_host: /nonexistent/r"},
		{"bad console", `{` + boot + `, "flint": {"console": "tty"}}`, "flint.console"},
		{"net rate limiter without refill time", `{` + boot + `, "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 0}}}]}`,
			"network-interfaces[0].rx_rate_limiter.bandwidth.refill_time"},
		{"flint switches", `{` + boot + `, "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}], "flint": {"network-interfaces": {"eth0": {"csum": false}}}}`, "tso=on needs csum=on"},
		{"bad log path", `{` + boot + `, "logger": {"log_path": "/nonexistent/dir/log"}}`, "logger.log_path"},
		{"not JSON", `{` + boot, "invalid JSON"},
		{"40 drives", `{` + boot + `, "drives": [` + manyDrives(40) + `]}`,
			"is virtio device 32 on the pci transport: at most 31 fit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := configFile(t, tc.doc)
			code, _, stderr, cfg := runArgs(t, "run", "--config", p)
			if code != vmm.ExitUsage || cfg != nil {
				t.Fatalf("code %d, launched %v: %s", code, cfg != nil, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("stderr %q: want one line containing %q", stderr, tc.want)
			}
		})
	}
	for _, args := range [][]string{{"run", "--config", "/nonexistent/vm.json"}, {"run"}, {"run", "--config", t.TempDir()}} {
		if code, _, stderr, _ := runArgs(t, args...); code != vmm.ExitUsage || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("%v: code %d stderr %q", args, code, stderr)
		}
	}
}

// TestLoggerFromConfig: logger.log_path gets the log at logger.level, and
// --log-level overrides the level.
func TestLoggerFromConfig(t *testing.T) {
	log := filepath.Join(t.TempDir(), "flint.log")
	l, lf, err := newLogger(&configs.Logger{LogPath: log, Level: "info"}, "", "--config x")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hello")
	l.Debug("hidden")
	lf.Close()
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "hello") || strings.Contains(string(b), "hidden") || strings.Contains(string(b), "level=") {
		t.Fatalf("log %q", b)
	}
	l, lf, err = newLogger(&configs.Logger{LogPath: log, Level: "Off", ShowLevel: true}, "debug", "--config x")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("shown")
	lf.Close()
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "level=DEBUG msg=shown") {
		t.Fatalf("log %q", b)
	}
	// A logger without a level logs at Info, Firecracker's default
	// (it was Warn: Info lines were lost); `flint firecracker
	// --log-path` without --level logs its requests at Info too (they
	// were Off).
	other := filepath.Join(t.TempDir(), "other.log")
	l, lf, err = newLogger(&configs.Logger{LogPath: other}, "", "--config x")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("info line")
	l.Debug("debug line")
	lf.Close()
	if b, _ := os.ReadFile(other); !strings.Contains(string(b), "info line") || strings.Contains(string(b), "debug line") {
		t.Fatalf("log without a level %q", b)
	}
	if lv := (&configs.Logger{}).SlogLevel(); lv != slog.LevelInfo {
		t.Fatalf("SlogLevel of no level = %v, want INFO", lv)
	}
	if lv := (&configs.Logger{Level: "Warn"}).SlogLevel(); lv != slog.LevelWarn { // Firecracker's GET /vm/config spelling
		t.Fatalf("SlogLevel of \"Warn\" = %v, want WARN", lv)
	}
}

func call(t *testing.T, c *http.Client, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// apiApp runs `flint run --api-sock` with args in the background, building
// fake machines; it returns the socket, a channel with the exit code, and
// the configs of the machines built.
func apiApp(t *testing.T, args ...string) (sock string, code chan int, built chan vmm.Config, fake *fakeMachine, stderr *bytes.Buffer) {
	sock = filepath.Join(t.TempDir(), "api.sock")
	stderr = &bytes.Buffer{}
	a := newApp(io.Discard, stderr, func(vmm.Config, io.Writer) int { t.Error("launcher used in --api-sock mode"); return 1 })
	a.installFilter = recordFilter
	fake = &fakeMachine{block: make(chan struct{})}
	built = make(chan vmm.Config, 1)
	a.newVM = func(cfg vmm.Config) (machine, error) {
		built <- cfg
		return fake, nil
	}
	code = make(chan int, 1)
	go func() { code <- a.run(append([]string{"flint", "run", "--api-sock", sock}, args...)) }()
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if i == 500 {
			t.Fatalf("no API socket: %s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sock, code, built, fake, stderr
}

func TestAPIDrivenLaunch(t *testing.T) {
	k, _ := vmFiles(t)
	sock, code, built, fake, stderr := apiApp(t, "--console", "none")
	c := api.Client(sock)
	if st, out := call(t, c, "GET", "/", ""); st != 200 || !strings.Contains(out, `"state":"Not started"`) {
		t.Fatalf("GET /: %d %s", st, out)
	}
	// A kernel that does not exist: 400 at PUT time naming the key, as
	// Firecracker answers, and flint waits on.
	if st, out := call(t, c, "PUT", "/boot-source", `{"kernel_image_path": "/nonexistent/k"}`); st != 400 ||
		!strings.Contains(out, "boot-source.kernel_image_path: /nonexistent/k: The kernel file cannot be opened: No such file or directory (os error 2)") {
		t.Fatalf("PUT a missing kernel: %d %s", st, out)
	}
	// One that disappears after its PUT: InstanceStart answers 400.
	gone := writeFile(t, "gone", nil)
	call(t, c, "PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path": %q}`, gone))
	os.Remove(gone)
	if st, out := call(t, c, "PUT", "/actions", `{"action_type": "InstanceStart"}`); st != 400 || !strings.Contains(out, "boot-source.kernel_image_path: "+gone) {
		t.Fatalf("start with a missing kernel: %d %s", st, out)
	}
	for _, r := range [][3]string{
		{"PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path": %q, "boot_args": "console=ttyS0 api"}`, k)},
		{"PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 64}`},
		{"PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0"}`},
		{"PUT", "/actions", `{"action_type": "InstanceStart"}`},
		{"PUT", "/actions", `{"action_type": "FlushMetrics"}`},
	} {
		if st, out := call(t, c, r[0], r[1], r[2]); st != 204 {
			t.Fatalf("%s %s: %d %s", r[0], r[1], st, out)
		}
	}
	cfg := <-built
	if cfg.CPUs != 2 || cfg.MemoryMiB != 64 || cfg.Cmdline != "console=ttyS0 api" || cfg.Console != "none" ||
		len(cfg.Net) != 1 || cfg.Net[0].ID != "eth0" || !cfg.Keyboard {
		t.Fatalf("built %+v", cfg)
	}
	if st, out := call(t, c, "GET", "/", ""); !strings.Contains(out, `"state":"Running"`) {
		t.Fatalf("GET / after start: %d %s", st, out)
	}
	if st, _ := call(t, c, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`); st != 204 {
		t.Fatalf("SendCtrlAltDel: %d", st)
	}
	select {
	case got := <-code:
		if got != 0 || fake.flushes != 1 || !fake.closed {
			t.Fatalf("exit code %d, flushes %d, closed %v: %s", got, fake.flushes, fake.closed, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flint did not exit after the guest reset")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// TestAPIWithConfig: --config with --api-sock boots at once; the API then
// reports the VM running and refuses pre-boot calls.
func TestAPIWithConfig(t *testing.T) {
	k, i := vmFiles(t)
	p := configFile(t, fullDoc(k, i, filepath.Join(t.TempDir(), "m.json")))
	sock, code, built, _, _ := apiApp(t, "--config", p)
	cfg := <-built
	if cfg.CPUs != 2 || !cfg.Keyboard {
		t.Fatalf("built %+v", cfg)
	}
	c := api.Client(sock)
	if _, out := call(t, c, "GET", "/vm/config", ""); !strings.Contains(out, `"vcpu_count":2`) {
		t.Fatalf("vm config %s", out)
	}
	if st, out := call(t, c, "PUT", "/machine-config", `{"vcpu_count": 1, "mem_size_mib": 128}`); st != 400 || !strings.Contains(out, "pre-boot only") {
		t.Fatalf("PUT after boot: %d %s", st, out)
	}
	call(t, c, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
	if got := <-code; got != 0 {
		t.Fatalf("exit code %d", got)
	}
}

// TestAPISocketErrors: a socket path that cannot be used is exit code 2
// before anything runs.
func TestAPISocketErrors(t *testing.T) {
	file := writeFile(t, "file", nil)
	code, _, stderr, cfg := runArgs(t, "run", "--api-sock", file)
	if code != vmm.ExitUsage || cfg != nil || !strings.Contains(stderr, "--api-sock") || !strings.Contains(stderr, "not a socket") {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
}

// TestVsockEntropyMapping: the config's vsock and entropy sections reach
// vmm.Config with their transports (pci unless the "flint" section says
// otherwise) and the entropy rate limiter.
func TestVsockEntropyMapping(t *testing.T) {
	fc, err := configs.DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"},
		"vsock": {"guest_cid": 7, "uds_path": "/run/v.sock"},
		"entropy": {"rate_limiter": {"ops": {"size": 5, "refill_time": 100}}},
		"flint": {"entropy": {"transport": "mmio"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, e := vsockEntropy(&fc)
	if v == nil || *v != (vmm.VsockConfig{GuestCID: 7, UDSPath: "/run/v.sock", Transport: "pci"}) {
		t.Errorf("vsock %+v", v)
	}
	if e == nil || e.Transport != "mmio" || e.RateLimit == nil || e.RateLimit.Ops.Size != 5 || e.RateLimit.Ops.RefillTime != 100 {
		t.Errorf("entropy %+v", e)
	}
	fc.Vsock, fc.Entropy = nil, nil
	if v, e := vsockEntropy(&fc); v != nil || e != nil {
		t.Errorf("absent sections mapped to %+v, %+v", v, e)
	}
}

// manyDrives is a "drives" array's elements: n drives d0, d1...
func manyDrives(n int) string {
	d := make([]string, n)
	for i := range d {
		d[i] = fmt.Sprintf(`{"drive_id": "d%d", "path_on_host": "/r", "is_root_device": false}`, i)
	}
	return strings.Join(d, ", ")
}

// TestFirecrackerIDs: a Firecracker config whose drive_id and iface_id
// the API's path rule refuses ("root-fs", "eth-0", longer than the
// disk serial's 20 bytes) is taken, as Firecracker boots it, and the ids
// reach vmm whole (vmm gives the guest the drive_id's first 20 bytes as
// the serial); they were refused with exit 2.
func TestFirecrackerIDs(t *testing.T) {
	id := "root-fs-of-the-web-server"
	k, _ := vmFiles(t)
	disk := writeFile(t, "rootfs.ext4", make([]byte, 4096))
	p := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q},
		"network-interfaces": [{"iface_id": "eth-0", "host_dev_name": "tap0"}],
		"drives": [{"drive_id": %q, "path_on_host": %q, "is_root_device": true}],
		"flint": {"drives": {%q: {"transport": "mmio"}}}}`, k, id, disk, id))
	code, _, stderr, cfg := runArgs(t, "run", "--config", p)
	if code != 0 || cfg == nil {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if len(cfg.Drives) != 1 || cfg.Drives[0].ID != id || cfg.Drives[0].Transport != "mmio" || len(cfg.Net) != 1 || cfg.Net[0].ID != "eth-0" {
		t.Fatalf("drives %+v, net %+v", cfg.Drives, cfg.Net)
	}
}
