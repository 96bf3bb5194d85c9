package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
)

// fakeVM records what the server asks of the running side.
type fakeVM struct {
	mu                 sync.Mutex
	started            []configs.VMConfig
	ctrlAltDel, flush  int
	startErr, flushErr error
	updates            []update
	updateErr          error
}

// update is one Updater call.
type update struct {
	id, path   string
	rl, rx, tx *configs.RateLimiter
}

func (f *fakeVM) Start(cfg configs.VMConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return f.startErr
	}
	f.started = append(f.started, cfg)
	return nil
}

func (f *fakeVM) SendCtrlAltDel() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrlAltDel++
	return nil
}

func (f *fakeVM) UpdateDrive(id, path string, rl *configs.RateLimiter) error {
	return f.record(update{id: id, path: path, rl: rl})
}

func (f *fakeVM) UpdateNetworkInterface(id string, rx, tx *configs.RateLimiter) error {
	return f.record(update{id: id, rx: rx, tx: tx})
}

// record keeps an Updater call, or fails it with updateErr.
func (f *fakeVM) record(u update) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updateErr != nil {
		return f.updateErr
	}
	f.updates = append(f.updates, u)
	return nil
}

func (f *fakeVM) FlushMetrics() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flush++
	return f.flushErr
}

// client talks HTTP over the server's unix socket, as curl --unix-socket.
type client struct {
	t    testing.TB
	http *http.Client
}

// serve starts a server for opts on a socket in a temporary directory.
func serve(t testing.TB, opts Options) (*Server, *client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := New(opts)
	s.open, s.stderr = openConfined, io.Discard
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c := &client{t: t, http: Client(sock)}
	return s, c, sock
}

// openConfined opens the output files PUT /logger and PUT /metrics
// name only in the tests' directory (TestMain's) or under the temporary
// directory: a test or a fuzz input naming another file gets an error.
func openConfined(name string) (*os.File, error) {
	if strings.Contains(name, "/") && !strings.HasPrefix(name, os.TempDir()+"/") || strings.Contains(name, "..") {
		return nil, errors.New("outside the tests' directories")
	}
	return hostfile.OpenOutput(name)
}

// do sends a request and returns the status and body.
func (c *client) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// ok sends a request that must answer want.
func (c *client) ok(want int, method, path, body string) string {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, out, want)
	}
	return out
}

// fault sends a request that must fail with 400 and a fault_message
// containing want; it returns the message.
func (c *client) fault(method, path, body, want string) string {
	c.t.Helper()
	code, out := c.do(method, path, body)
	var f struct {
		FaultMessage string `json:"fault_message"`
	}
	if code != http.StatusBadRequest || json.Unmarshal([]byte(out), &f) != nil || !strings.Contains(f.FaultMessage, want) {
		c.t.Fatalf("%s %s %s: %d %s; want 400 with a fault_message containing %q", method, path, body, code, out, want)
	}
	return f.FaultMessage
}

func state(t *testing.T, c *client) string {
	var info InstanceInfo
	if err := json.Unmarshal([]byte(c.ok(200, "GET", "/", "")), &info); err != nil {
		t.Fatal(err)
	}
	if info.ID != "vm1" || info.AppName != "Flint" || info.VMMVersion != "v9" {
		t.Fatalf("info %+v", info)
	}
	return info.State
}

const (
	// The files the bodies name exist in the tests' working directory
	// (TestMain): PUT checks them.
	bootBody = `{"kernel_image_path": "k", "boot_args": "console=ttyS0"}`
	netBody  = `{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "52:54:00:00:00:01"}`
)

func TestConfigureAndStart(t *testing.T) {
	vm := &fakeVM{}
	_, c, _ := serve(t, Options{Controller: vm, ID: "vm1", Version: "v9"})
	if s := state(t, c); s != StateNotStarted {
		t.Fatalf("state %q", s)
	}
	if got := c.ok(200, "GET", "/machine-config", ""); !strings.Contains(got, `"vcpu_count":1`) || !strings.Contains(got, `"mem_size_mib":128`) {
		t.Fatalf("default machine config %s", got)
	}
	c.ok(204, "PUT", "/boot-source", bootBody)
	c.ok(204, "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 256}`)
	c.ok(204, "PATCH", "/machine-config", `{"mem_size_mib": 512}`)
	c.ok(204, "PUT", "/network-interfaces/eth0", netBody)
	c.ok(204, "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap9"}`) // replaces
	c.ok(204, "PUT", "/network-interfaces/eth1", `{"iface_id": "eth1", "host_dev_name": "tap1",
		"rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}`)
	c.ok(204, "PUT", "/drives/rootfs", `{"drive_id": "rootfs", "path_on_host": "r.ext4", "is_root_device": true}`)
	c.ok(204, "PUT", "/logger", `{"log_path": "start.log", "level": "Debug"}`) // in the tests' directory: opened now
	c.ok(204, "PUT", "/metrics", `{"metrics_path": "start.metrics"}`)
	if got := c.ok(200, "GET", "/version", ""); !strings.Contains(got, `"firecracker_version":"v9"`) {
		t.Fatalf("version %s", got)
	}

	// GET /vm/config is a config file: it decodes strictly.
	full, err := configs.DecodeVMConfig([]byte(c.ok(200, "GET", "/vm/config", "")))
	if err != nil {
		t.Fatal(err)
	}
	if full.MachineConfig.VCPUCount != 2 || full.MachineConfig.MemSizeMiB != 512 || len(full.NetworkInterfaces) != 2 ||
		full.NetworkInterfaces[0].HostDevName != "tap9" || full.NetworkInterfaces[1].RxRateLimiter.Bandwidth.Size != 1000 ||
		len(full.Drives) != 1 || full.Logger.Level != "Debug" || full.Metrics.MetricsPath != "start.metrics" {
		t.Fatalf("vm config %+v", full)
	}

	c.fault("PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`, notBeforeStart)
	c.fault("PUT", "/actions", `{"action_type": "FlushMetrics"}`, notBeforeStart)
	c.ok(204, "PUT", "/actions", `{"action_type": "InstanceStart"}`)
	if s := state(t, c); s != StateRunning {
		t.Fatalf("state %q", s)
	}
	if len(vm.started) != 1 || vm.started[0].BootSource.KernelImagePath != "k" || len(vm.started[0].Drives) != 1 {
		t.Fatalf("started with %+v", vm.started)
	}
	c.ok(204, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
	c.ok(204, "PUT", "/actions", `{"action_type": "FlushMetrics"}`)
	if vm.ctrlAltDel != 1 || vm.flush != 1 {
		t.Fatalf("ctrl-alt-del %d flush %d", vm.ctrlAltDel, vm.flush)
	}
	vm.flushErr = errors.New("disk full")
	c.fault("PUT", "/actions", `{"action_type": "FlushMetrics"}`, "disk full")

	// Every pre-boot call is refused now, and changes nothing.
	for _, r := range [][3]string{
		{"PUT", "/boot-source", bootBody},
		{"PUT", "/machine-config", `{"vcpu_count": 1, "mem_size_mib": 128}`},
		{"PATCH", "/machine-config", `{"vcpu_count": 1}`},
		{"PUT", "/network-interfaces/eth2", `{"iface_id": "eth2", "host_dev_name": "tap2"}`},
		{"PUT", "/drives/d", `{"drive_id": "d", "path_on_host": "/d", "is_root_device": false}`},
		{"PUT", "/logger", `{"level": "Info"}`},
		{"PUT", "/metrics", `{"metrics_path": "/m2"}`},
	} {
		c.fault(r[0], r[1], r[2], "The requested operation is not supported after starting the microVM")
	}
	c.fault("PUT", "/actions", `{"action_type": "InstanceStart"}`, "already running")
	// Firecracker's newer PUT of a drive or an interface after the start
	// hot-plugs it: Flint says it does not, after the phrase above.
	c.fault("PUT", "/drives/d", `{"drive_id": "d", "path_on_host": "r.ext4", "is_root_device": false}`, "hot-plugging a device into the running VM")
	c.fault("PUT", "/network-interfaces/eth2", `{"iface_id": "eth2", "host_dev_name": "tap2"}`, "is not supported by flint yet")
	if got := c.ok(200, "GET", "/machine-config", ""); !strings.Contains(got, `"mem_size_mib":512`) {
		t.Fatalf("machine config after refused calls: %s", got)
	}
}

func TestErrors(t *testing.T) {
	vm := &fakeVM{}
	_, c, _ := serve(t, Options{Controller: vm, ID: "vm1", Version: "v9"})
	c.ok(204, "PUT", "/network-interfaces/eth0", netBody)
	c.ok(204, "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "r.ext4", "is_root_device": true}`)
	c.ok(204, "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "i", "is_root_device": true}`) // replaces itself
	cases := []struct{ method, path, body, want string }{
		{"PUT", "/machine-config", `{"vcpu_count": 1, "mem_size_mib": 128, "mem_size": 1}`, `unknown key "mem_size" at machine-config`},
		{"PUT", "/machine-config", `{"vcpu_count": 64, "mem_size_mib": 128}`, "machine-config.vcpu_count 64 is out of range [1, 32]"},
		{"PUT", "/machine-config", `{"mem_size_mib": 128}`, "machine-config.vcpu_count is required"},
		{"PATCH", "/machine-config", `{"huge_pages": "2M"}`, `machine-config.huge_pages "2M" is not supported by flint yet`},
		{"PATCH", "/machine-config", `{"smt": "yes"}`, "machine-config.smt must be true or false"},
		{"PATCH", "/machine-config", `{}`, "Empty PATCH request."}, // Firecracker's words
		{"GET", "/machine-config", `{}`, "GET request cannot have a body."},
		{"PATCH", "/machine-config", `null`, "machine-config"},
		{"PUT", "/boot-source", `{"kernel_image_path": "/k", "initrd": "/i"}`, `unknown key "initrd" at boot-source`},
		{"PUT", "/boot-source", `{}`, "boot-source.kernel_image_path is required"},
		// Firecracker's words for a PUT or PATCH without a body.
		{"PUT", "/boot-source", ``, "Empty PUT request. PUT /boot-source needs a JSON body"},
		{"PUT", "/actions", ``, "Empty PUT request."},
		{"PATCH", "/machine-config", ``, "Empty PATCH request. PATCH /machine-config needs a JSON body"},
		{"PATCH", "/drives/a", ``, "Empty PATCH request."},
		{"PUT", "/boot-source", ` `, "boot-source must be an object, got nothing"}, // a body, of white space
		{"PUT", "/boot-source", `{"kernel_image_path": `, "invalid JSON"},
		{"PUT", "/network-interfaces/eth1", netBody, `The id from the path [eth1] does not match the id from the body [eth0]! (the body's iface_id "eth0", the path's "eth1")`},
		// Firecracker's phrases for a TAP, a MAC or a root drive taken.
		{"PUT", "/network-interfaces/eth1", `{"iface_id": "eth1", "host_dev_name": "tap0"}`, `Could not create the network device: the TAP tap0 is already interface "eth0"'s`},
		{"PUT", "/network-interfaces/eth1", `{"iface_id": "eth1", "host_dev_name": "tap1", "guest_mac": "52:54:00:00:00:01"}`, "The MAC address is already in use: 52:54:00:00:00:01"},
		{"PUT", "/drives/b", `{"drive_id": "b", "path_on_host": "i", "is_root_device": true}`, `A root block device already exists! Drive "a" is the root device`},
		{"PUT", "/network-interfaces/eth1", `{"iface_id": "eth1", "host_dev_name": "tap1", "mtu": 20}`, "mtu 20 is out of range"},
		{"PUT", "/drives/a", `{"drive_id": "b", "path_on_host": "/d", "is_root_device": false}`, `The id from the path does not match the id from the body! (the body's drive_id "b", the path's "a")`},
		{"PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "io_engine": "Async"}`, `drives.io_engine "Async" is not supported`},
		{"PUT", "/drives/a", `{"drive_id": "a", "socket": "/s"}`, "drives.socket is not supported by flint yet"},
		{"PUT", "/logger", `{"level": "Verbose"}`, "logger.level"},
		{"PUT", "/metrics", `{}`, "metrics.metrics_path is required"},
		{"PUT", "/actions", `{"action_type": "Pause"}`, "actions.action_type"},
		{"PUT", "/actions", `{"action_type": "InstanceStart"}`, "Cannot start microvm without kernel configuration. There is no boot source"},
		{"GET", "/nope", ``, "Invalid request method and/or path: GET /nope"},
		{"DELETE", "/machine-config", ``, "Invalid request method and/or path"},
		{"POST", "/actions", ``, "Invalid request method and/or path"},
		{"DELETE", "/drives/a", ``, "DELETE /drives/a is not supported by flint yet"},
		{"DELETE", "/network-interfaces/eth0", ``, "DELETE /network-interfaces/eth0 is not supported by flint yet"},
		{"PUT", "/drives/", `{}`, "Invalid request method and/or path"},
		{"PATCH", "/boot-source", `{}`, "Invalid request method"},
		{"PATCH", "/logger", `{}`, "Invalid request method"},
		{"PUT", "/vsock", `{}`, "vsock.guest_cid is required"},
		{"GET", "/vsock", ``, "Invalid request method and/or path"},
		{"PUT", "/snapshot/create", `{}`, "not supported by flint yet"},
		{"PATCH", "/drives/a", `{"drive_id": "a", "path_on_host": "r.ext4"}`, notBeforeStart},
		{"PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0"}`, notBeforeStart},
		{"PUT", "/metrics", `{"metrics_path": "` + strings.Repeat("x", MaxBodySize) + `"}`, "Request payload with size 51220 is larger than the limit of 51200 allowed by server."},
	}
	for _, tc := range cases {
		c.fault(tc.method, tc.path, tc.body, tc.want)
	}
	// A controller that cannot build the VM: 400, and still not started.
	c.ok(204, "PUT", "/boot-source", bootBody)
	vm.startErr = errors.New("--kernel /k: no such file")
	c.fault("PUT", "/actions", `{"action_type": "InstanceStart"}`, "InstanceStart: --kernel /k: no such file")
	if s := state(t, c); s != StateNotStarted {
		t.Fatalf("state %q after a failed start", s)
	}
	vm.startErr = nil
	c.ok(204, "PUT", "/actions", `{"action_type": "InstanceStart"}`)
}

// TestBootedFromConfig: with a VM started from --config, the API reports it
// running and accepts only post-boot calls.
func TestBootedFromConfig(t *testing.T) {
	cfg, err := configs.DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "/k"}, "machine-config": {"vcpu_count": 3, "mem_size_mib": 300}}`))
	if err != nil {
		t.Fatal(err)
	}
	vm := &fakeVM{}
	_, c, _ := serve(t, Options{Controller: vm, ID: "vm1", Version: "v9", Config: &cfg, Started: true})
	if s := state(t, c); s != StateRunning {
		t.Fatalf("state %q", s)
	}
	if got := c.ok(200, "GET", "/vm/config", ""); !strings.Contains(got, `"vcpu_count":3`) || !strings.Contains(got, `"drives":[]`) {
		t.Fatalf("vm config %s", got)
	}
	c.fault("PUT", "/boot-source", bootBody, "pre-boot only")
	c.ok(204, "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`)
}

// TestConcurrentRequests races configuration calls against InstanceStart:
// the controller sees one consistent configuration, calls after the start
// are refused, and every call before it is in what Start got.
func TestConcurrentRequests(t *testing.T) {
	vm := &fakeVM{}
	_, c, _ := serve(t, Options{Controller: vm, ID: "vm1", Version: "v9"})
	c.ok(204, "PUT", "/boot-source", bootBody)
	var wg sync.WaitGroup
	accepted := make(chan string, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("eth%d", i)
			body := fmt.Sprintf(`{"iface_id": %q, "host_dev_name": "tap%d"}`, id, i)
			if code, _ := c.do("PUT", "/network-interfaces/"+id, body); code == 204 {
				accepted <- id
			}
			c.do("PATCH", "/machine-config", fmt.Sprintf(`{"vcpu_count": %d}`, i%4+1))
			c.do("PUT", "/logger", fmt.Sprintf(`{"log_path": "race%d.log", "level": "Debug"}`, i%3)) // moves the request log
			c.do("GET", "/vm/config", "")
			c.do("GET", "/", "")
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.ok(204, "PUT", "/actions", `{"action_type": "InstanceStart"}`)
	}()
	wg.Wait()
	close(accepted)
	if len(vm.started) != 1 {
		t.Fatalf("%d starts", len(vm.started))
	}
	got := map[string]bool{}
	for _, n := range vm.started[0].NetworkInterfaces {
		got[n.IfaceID] = true
	}
	for id := range accepted {
		if !got[id] {
			t.Errorf("PUT %s answered 204 but Start did not get it (got %v)", id, got)
		}
	}
	if len(got) != len(vm.started[0].NetworkInterfaces) {
		t.Errorf("duplicate interfaces: %+v", vm.started[0].NetworkInterfaces)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	// A regular file is never replaced.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if _, err := Listen(""); err == nil {
		t.Fatal("empty path accepted")
	}
	// A stale socket (nobody listening) is replaced.
	sock := filepath.Join(dir, "s.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	// A live one is an error and is left alone.
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("live socket: %v", err)
	}
	// Shutdown removes the socket.
	s := New(Options{Controller: &fakeVM{}})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	time.Sleep(10 * time.Millisecond)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket still there after Shutdown: %v", err)
	}
}

// TestShutdownClosesSilentConnections: a client that connected but sent
// nothing (an HTTP client's spare connection) does not hold Shutdown up
// (net/http alone waits 5 s for it), and requests served before still
// count.
func TestShutdownClosesSilentConnections(t *testing.T) {
	s, c, sock := serve(t, Options{Controller: &fakeVM{}})
	c.ok(200, "GET", "/", "")
	silent := dial(t, sock)
	time.Sleep(50 * time.Millisecond) // let the server accept it
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a silent connection open: %v after %v", err, time.Since(t0))
	}
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Error("the silent connection is still open")
	}
}
