package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/flintvm/flint/configs"
)

// started serves a VM configured with drive "scratch" (on i) and
// interface "eth0" with an rx limiter, then started.
func startedVM(t *testing.T) (*fakeVM, *client) {
	t.Helper()
	vm := &fakeVM{}
	_, c, _ := serve(t, Options{Controller: vm, ID: "vm1", Version: "v9"})
	c.ok(204, "PUT", "/boot-source", bootBody)
	c.ok(204, "PUT", "/drives/scratch", `{"drive_id": "scratch", "path_on_host": "i", "is_root_device": false,
		"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}`)
	c.ok(204, "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0",
		"rx_rate_limiter": {"ops": {"size": 10, "refill_time": 100}}}`)
	// Before InstanceStart a PATCH is refused in Firecracker's words.
	c.fault("PATCH", "/drives/scratch", `{"drive_id": "scratch", "path_on_host": "r.ext4"}`, notBeforeStart)
	c.fault("PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0"}`, notBeforeStart)
	c.ok(204, "PUT", "/actions", `{"action_type": "InstanceStart"}`)
	return vm, c
}

func vmConfig(t *testing.T, c *client) configs.VMConfig {
	t.Helper()
	cfg, err := configs.DecodeVMConfig([]byte(c.ok(200, "GET", "/vm/config", "")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPatchDrive: after InstanceStart, PATCH /drives/{id} hands the new
// file and the merged rate limiter to the controller and then shows them
// in GET /vm/config; refused patches reach neither.
func TestPatchDrive(t *testing.T) {
	vm, c := startedVM(t)
	c.ok(204, "PATCH", "/drives/scratch", `{"drive_id": "scratch", "path_on_host": "r.ext4"}`)
	c.ok(204, "PATCH", "/drives/scratch", `{"drive_id": "scratch", "rate_limiter": {"ops": {"size": 5, "refill_time": 10}}}`)
	if len(vm.updates) != 2 || vm.updates[0] != (update{id: "scratch", path: "r.ext4"}) ||
		vm.updates[1].path != "" || vm.updates[1].rl.Bandwidth.Size != 1000 || vm.updates[1].rl.Ops.Size != 5 {
		t.Fatalf("updates %+v", vm.updates)
	}
	d := vmConfig(t, c).Drives[0]
	if d.PathOnHost != "r.ext4" || d.RateLimiter.Bandwidth.Size != 1000 || d.RateLimiter.Ops.Size != 5 {
		t.Fatalf("drive after the patches %+v %+v", d, d.RateLimiter)
	}
	for _, tc := range []struct{ body, want string }{
		// Firecracker's phrases, which its tests match.
		{`{"drive_id": "scratch", "path_on_host": "foo.bar"}`, "Error manipulating the backing file: No such file or directory (os error 2) foo.bar"},
		{`{"drive_id": "scratch", "path_on_host": "foo.bar", "rate_limiter": {"ops": {"size": 1, "refill_time": 1}}}`, "No such file or directory"},
		{`{"drive_id": "scratch"}`, "Running method expected different backend."},
		{`{"drive_id": "scratch", "path_on_host": "i", "is_read_only": true}`, "unknown field `is_read_only`"},
		{`{"drive_id": "scratch", "path_on_host": "i", "io_engine": "Sync"}`, "unknown field `io_engine`"},
		{`{"drive_id": "other", "path_on_host": "i"}`, `The id from the path does not match the id from the body! (the body's drive_id "other", the path's "scratch")`},
	} {
		c.fault("PATCH", "/drives/scratch", tc.body, tc.want)
	}
	c.fault("PATCH", "/drives/nope", `{"drive_id": "nope", "path_on_host": "i"}`, `drive "nope" not found`)
	vm.updateErr = errors.New("the new file is 512 bytes, the drive's 1024")
	c.fault("PATCH", "/drives/scratch", `{"drive_id": "scratch", "path_on_host": "i"}`, "Unable to patch the block device \"scratch\": the new file is 512 bytes")
	if len(vm.updates) != 2 {
		t.Fatalf("refused patches reached the controller: %+v", vm.updates)
	}
	if d := vmConfig(t, c).Drives[0]; d.PathOnHost != "r.ext4" {
		t.Fatalf("a failed patch changed the configuration: %+v", d)
	}
}

// TestPatchNetworkInterface: rx/tx limiters change bucket by bucket, and
// only after the controller applied them.
func TestPatchNetworkInterface(t *testing.T) {
	vm, c := startedVM(t)
	c.ok(204, "PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0"}`) // nothing to change
	c.ok(204, "PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0",
		"rx_rate_limiter": {"bandwidth": {"size": 2000, "refill_time": 10}},
		"tx_rate_limiter": {"ops": {"size": 7, "refill_time": 10}}}`)
	if len(vm.updates) != 1 || vm.updates[0].rx.Ops.Size != 10 || vm.updates[0].rx.Bandwidth.Size != 2000 ||
		vm.updates[0].tx.Ops.Size != 7 || vm.updates[0].tx.Bandwidth != nil {
		t.Fatalf("updates %+v", vm.updates)
	}
	n := vmConfig(t, c).NetworkInterfaces[0]
	if n.RxRateLimiter.Bandwidth.Size != 2000 || n.RxRateLimiter.Ops.Size != 10 || n.TxRateLimiter.Ops.Size != 7 {
		t.Fatalf("interface after the patch %+v", n)
	}
	c.fault("PATCH", "/network-interfaces/eth1", `{"iface_id": "eth1", "rx_rate_limiter": {}}`, `network interface "eth1" not found`)
	c.fault("PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap1"}`, "unknown field `host_dev_name`")
	vm.updateErr = errors.New("boom")
	c.fault("PATCH", "/network-interfaces/eth0", `{"iface_id": "eth0", "tx_rate_limiter": {}}`, `Unable to update the net device "eth0": boom`)
	if n := vmConfig(t, c).NetworkInterfaces[0]; n.TxRateLimiter.Ops.Size != 7 {
		t.Fatalf("a failed patch changed the configuration: %+v", n.TxRateLimiter)
	}
}

// noUpdates is a controller that cannot change running devices.
type noUpdates struct{ Controller }

// TestPatchWithoutUpdater: a controller without Updater answers that
// changing devices is not supported, instead of failing otherwise.
func TestPatchWithoutUpdater(t *testing.T) {
	cfg, err := configs.DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"}, "drives": [{"drive_id": "d", "path_on_host": "i", "is_root_device": false}]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, c, _ := serve(t, Options{Controller: noUpdates{&fakeVM{}}, Config: &cfg, Started: true})
	c.fault("PATCH", "/drives/d", `{"drive_id": "d", "path_on_host": "r.ext4"}`, "not supported by flint's controller yet")
}

// TestMetricsOnce: the metrics file is set once (Firecracker's
// "Reinitialization of metrics not allowed."): a second PUT before
// boot, or a PUT when the configuration already has one (--metrics-path
// or a config file), is refused.
func TestMetricsOnce(t *testing.T) {
	_, c, _ := serve(t, Options{Controller: &fakeVM{}})
	c.ok(204, "PUT", "/metrics", `{"metrics_path": "m1"}`)
	c.fault("PUT", "/metrics", `{"metrics_path": "m2"}`, "Reinitialization of metrics not allowed.")
	cfg := configs.VMConfig{MachineConfig: configs.DefaultMachineConfig(), Metrics: &configs.Metrics{MetricsPath: "m0"}}
	_, c, _ = serve(t, Options{Controller: &fakeVM{}, Config: &cfg})
	c.fault("PUT", "/metrics", `{"metrics_path": "m2"}`, "Reinitialization of metrics not allowed.")
	var got struct {
		Metrics configs.Metrics `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(c.ok(200, "GET", "/vm/config", "")), &got); err != nil || got.Metrics.MetricsPath != "m0" {
		t.Fatalf("metrics after the refused PUT: %+v %v", got, err)
	}
}

// firecrackerPaths are Firecracker's API endpoints (its swagger
// definition, 1.x), each with a method it defines for it.
var firecrackerPaths = [][2]string{
	{"GET", "/"}, {"PUT", "/actions"}, {"GET", "/balloon"}, {"PUT", "/balloon"}, {"PATCH", "/balloon"},
	{"GET", "/balloon/statistics"}, {"PATCH", "/balloon/statistics"}, {"PATCH", "/balloon/hinting/start"},
	{"GET", "/balloon/hinting/status"}, {"PATCH", "/balloon/hinting/stop"}, {"PUT", "/boot-source"},
	{"PUT", "/cpu-config"}, {"PUT", "/drives/d1"}, {"PATCH", "/drives/d1"}, {"PUT", "/pmem/p1"}, {"PATCH", "/pmem/p1"},
	{"PUT", "/logger"}, {"GET", "/machine-config"}, {"PUT", "/machine-config"}, {"PATCH", "/machine-config"},
	{"PUT", "/metrics"}, {"PUT", "/mmds"}, {"PATCH", "/mmds"}, {"GET", "/mmds"}, {"PUT", "/mmds/config"},
	{"PUT", "/entropy"}, {"PUT", "/serial"}, {"PUT", "/hotplug/memory"}, {"PATCH", "/hotplug/memory"},
	{"GET", "/hotplug/memory"}, {"PUT", "/network-interfaces/n1"}, {"PATCH", "/network-interfaces/n1"},
	{"PUT", "/snapshot/create"}, {"PUT", "/snapshot/load"}, {"GET", "/version"}, {"PATCH", "/vm"},
	{"GET", "/vm/config"}, {"PUT", "/vsock"},
}

// TestEveryFirecrackerPath: each of Firecracker's endpoints is served or
// answers that Flint does not support it yet, before and after boot;
// never "Invalid request method and/or path", which is for paths and
// methods Firecracker does not have either.
func TestEveryFirecrackerPath(t *testing.T) {
	for _, started := range []bool{false, true} {
		cfg := configs.VMConfig{MachineConfig: configs.DefaultMachineConfig(), BootSource: &configs.BootSource{KernelImagePath: "k"}}
		_, c, _ := serve(t, Options{Controller: &fakeVM{}, Config: &cfg, Started: started})
		for _, r := range firecrackerPaths {
			code, out := c.do(r[0], r[1], "{}")
			if strings.Contains(out, "Invalid request method") || code >= 500 {
				t.Errorf("started %v: %s %s: %d %s", started, r[0], r[1], code, out)
			}
		}
	}
}

// TestOutputPathsCheckedAtPut: a log or metrics path that cannot become
// a file is a 400 at PUT time, as in Firecracker, not an InstanceStart
// failure; a refused PUT /metrics does not count as the one allowed.
func TestOutputPathsCheckedAtPut(t *testing.T) {
	_, c, _ := serve(t, Options{Controller: &fakeVM{}})
	c.fault("PUT", "/metrics", `{"metrics_path": "nodir/m.json"}`, "metrics.metrics_path: nodir/m.json: No such file or directory (os error 2)")
	c.fault("PUT", "/logger", `{"log_path": "."}`, "logger.log_path: .: is a directory")
	c.ok(204, "PUT", "/metrics", `{"metrics_path": "m.json"}`)
	c.ok(204, "PUT", "/logger", `{"log_path": "fc.log", "level": "Info"}`)
}
