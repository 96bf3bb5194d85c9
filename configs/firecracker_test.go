package configs

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimalDoc = `{"boot-source": {"kernel_image_path": "vmlinuz"}}`

func TestDecodeMinimalDefaults(t *testing.T) {
	c, err := DecodeVMConfig([]byte(minimalDoc))
	if err != nil {
		t.Fatal(err)
	}
	if c.BootSource.KernelImagePath != "vmlinuz" || c.MachineConfig != DefaultMachineConfig() ||
		len(c.NetworkInterfaces) != 0 || len(c.Drives) != 0 || c.Logger != nil || c.Metrics != nil || c.Flint != nil {
		t.Fatalf("got %+v", c)
	}
}

func TestDecodeFull(t *testing.T) {
	doc := `{
	  "boot-source": {"kernel_image_path": "k", "initrd_path": "i", "boot_args": "console=ttyS0"},
	  "machine-config": {"vcpu_count": 4, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false, "huge_pages": "None", "cpu_template": "None"},
	  "network-interfaces": [
	    {"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "52:54:00:00:00:01", "mtu": 9000,
	     "rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}},
	     "tx_rate_limiter": {"ops": {"size": 10, "one_time_burst": 5, "refill_time": 1000}}},
	    {"iface_id": "eth1", "host_dev_name": "tap1", "rx_rate_limiter": null}
	  ],
	  "drives": [{"drive_id": "root", "path_on_host": "r.ext4", "is_root_device": true, "partuuid": "abcd-01",
	              "rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1}}},
	             {"drive_id": "data", "path_on_host": "d.img", "is_root_device": false, "is_read_only": true, "cache_type": "Writeback", "io_engine": "Sync"}],
	  "logger": {"log_path": "l", "level": "debug", "show_level": true, "show_log_origin": true},
	  "metrics": {"metrics_path": "m"},
	  "flint": {"console": "none", "timeout": "90s", "exit_marker": "OK", "timing": true,
	            "network-interfaces": {"eth1": {"transport": "mmio", "tso": false, "ufo": false, "csum": false, "mrg_rxbuf": false, "indirect": false, "event_idx": false, "packed": true}},
	            "drives": {"data": {"transport": "mmio", "packed": true}}}
	}`
	c, err := DecodeVMConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.MachineConfig.VCPUCount != 4 || c.MachineConfig.MemSizeMiB != 1024 || c.BootSource.BootArgs != "console=ttyS0" {
		t.Fatalf("machine %+v boot %+v", c.MachineConfig, c.BootSource)
	}
	d := c.Drives[1]
	if !c.Drives[0].IsRootDevice || c.Drives[0].CacheType != CacheUnsafe || c.Drives[0].RateLimiter.Bandwidth.Size != 1 ||
		!d.IsReadOnly || d.CacheType != CacheWriteback || c.DriveTransport("data") != TransportMMIO || c.DriveTransport("root") != TransportPCI ||
		!c.DrivePacked("data") || c.DrivePacked("root") {
		t.Fatalf("drives %+v", c.Drives)
	}
	if c.Flint.Timeout != Duration(90*time.Second) || c.Flint.Console != "none" || !c.Flint.Timing || c.Logger.Level != "debug" {
		t.Fatalf("flint %+v logger %+v", c.Flint, c.Logger)
	}
	nets, err := c.NetInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	n0, n1 := nets[0], nets[1]
	if n0.ID != "eth0" || n0.TAP != "tap0" || n0.MAC.String() != "52:54:00:00:00:01" || n0.MTU != 9000 ||
		n0.Transport != TransportPCI || !n0.TSO || n0.RxRateLimiter.Bandwidth.Size != 1000 || n0.TxRateLimiter.Ops.OneTimeBurst != 5 {
		t.Fatalf("eth0 %+v", n0)
	}
	if n1.Transport != TransportMMIO || n1.TSO || n1.UFO || n1.Csum || n1.MrgRxbuf || n1.Indirect || n1.EventIdx || !n1.Packed || n0.Packed ||
		n1.MTU != DefaultMTU || n1.MAC != nil || n1.RxRateLimiter != nil {
		t.Fatalf("eth1 %+v", n1)
	}
	// GET /vm/config writes the same shape back: it must decode to the same.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := DecodeVMConfig(b)
	if err != nil {
		t.Fatalf("round trip of %s: %v", b, err)
	}
	b2, _ := json.Marshal(c2)
	if string(b) != string(b2) {
		t.Fatalf("round trip changed:\n%s\n%s", b, b2)
	}
}

// TestInvalidFiles checks, for each invalid document, the exact field the
// error names and a piece of its message.
func TestInvalidFiles(t *testing.T) {
	boot := `"boot-source": {"kernel_image_path": "k"}`
	net := func(extra string) string {
		return `{` + boot + `, "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"` + extra + `}]}`
	}
	drive := func(extra string) string {
		return `{` + boot + `, "drives": [{"drive_id": "root", "path_on_host": "r", "is_root_device": true` + extra + `}]}`
	}
	machine := func(body string) string { return `{` + boot + `, "machine-config": ` + body + `}` }
	cases := []struct {
		name, doc, path, want string
	}{
		{"not JSON", `{"boot-source": `, "", "invalid JSON"},
		{"syntax error line", "{\n\"boot-source\": {,}}", "", "line 2"},
		{"not an object", `[1]`, "", "want an object at the top level"},
		{"trailing data", minimalDoc + ` {}`, "", "invalid JSON"},
		{"unknown top key", `{` + boot + `, "machines": {}}`, "machines", `unknown key "machines" at the top level`},
		{"vsock empty", `{` + boot + `, "vsock": {}}`, "vsock.guest_cid", "is required"},
		{"vsock no path", `{` + boot + `, "vsock": {"guest_cid": 3}}`, "vsock.uds_path", "is required"},
		{"vsock host cid", `{` + boot + `, "vsock": {"guest_cid": 2, "uds_path": "v"}}`, "vsock.guest_cid", "2 is out of range [3, 4294967294]"},
		{"vsock cid too big", `{` + boot + `, "vsock": {"guest_cid": 4294967295, "uds_path": "v"}}`, "vsock.guest_cid", "out of range"},
		{"vsock empty path", `{` + boot + `, "vsock": {"guest_cid": 3, "uds_path": ""}}`, "vsock.uds_path", "must not be empty"},
		{"vsock long path", `{` + boot + `, "vsock": {"guest_cid": 3, "uds_path": "` + strings.Repeat("d/", 50) + `"}}`, "vsock.uds_path", "at most 96"},
		{"vsock unknown key", `{` + boot + `, "vsock": {"guest_cid": 3, "uds_path": "v", "cid": 3}}`, "vsock.cid", "unknown key"},
		{"entropy unknown key", `{` + boot + `, "entropy": {"rate": 1}}`, "entropy.rate", "unknown key"},
		{"entropy bad limiter", `{` + boot + `, "entropy": {"rate_limiter": {"ops": {"size": 5, "refill_time": 0}}}}`, "entropy.rate_limiter.ops.refill_time", "out of range"},
		{"flint vsock without vsock", `{` + boot + `, "flint": {"vsock": {"transport": "mmio"}}}`, "flint.vsock", "no vsock section"},
		{"flint entropy transport", `{` + boot + `, "entropy": {}, "flint": {"entropy": {"transport": "usb"}}}`, "flint.entropy.transport", `want one of "pci", "mmio"`},
		{"balloon", `{` + boot + `, "balloon": {}}`, "balloon", "not supported"},
		{"mmds", `{` + boot + `, "mmds-config": {}}`, "mmds-config", "not supported"},
		{"no boot source", `{}`, "boot-source", "is required"},
		{"boot source null", `{"boot-source": null}`, "boot-source", "is required"},
		{"no kernel", `{"boot-source": {"initrd_path": "i"}}`, "boot-source.kernel_image_path", "is required"},
		{"empty kernel", `{"boot-source": {"kernel_image_path": ""}}`, "boot-source.kernel_image_path", "must not be empty"},
		{"kernel not a string", `{"boot-source": {"kernel_image_path": 7}}`, "boot-source.kernel_image_path", "must be a string, got a number"},
		{"boot args NUL", `{"boot-source": {"kernel_image_path": "k", "boot_args": "a\u0000b"}}`, "boot-source.boot_args", "NUL"},
		{"unknown boot key", `{"boot-source": {"kernel_image_path": "k", "kernel": "x"}}`, "boot-source.kernel", `unknown key "kernel" at boot-source`},
		{"machine unknown key", machine(`{"vcpu_count": 1, "mem_size": 128}`), "machine-config.mem_size", `unknown key "mem_size" at machine-config`},
		{"machine no vcpus", machine(`{"mem_size_mib": 128}`), "machine-config.vcpu_count", "is required"},
		{"vcpus 0", machine(`{"vcpu_count": 0, "mem_size_mib": 128}`), "machine-config.vcpu_count", "0 is out of range [1, 32]"},
		{"vcpus 33", machine(`{"vcpu_count": 33, "mem_size_mib": 128}`), "machine-config.vcpu_count", "out of range [1, 32]"},
		{"vcpus huge", machine(`{"vcpu_count": 99999999999999999999, "mem_size_mib": 128}`), "machine-config.vcpu_count", "out of range"},
		{"vcpus fraction", machine(`{"vcpu_count": 1.5, "mem_size_mib": 128}`), "machine-config.vcpu_count", "want an integer"},
		{"vcpus string", machine(`{"vcpu_count": "2", "mem_size_mib": 128}`), "machine-config.vcpu_count", "must be an integer, got a string"},
		{"memory small", machine(`{"vcpu_count": 1, "mem_size_mib": 8}`), "machine-config.mem_size_mib", "out of range [16, 1048576]"},
		{"memory negative", machine(`{"vcpu_count": 1, "mem_size_mib": -1}`), "machine-config.mem_size_mib", "out of range"},
		{"smt", machine(`{"vcpu_count": 2, "mem_size_mib": 128, "smt": true}`), "machine-config.smt", "true is not supported by flint yet"},
		{"smt type", machine(`{"vcpu_count": 2, "mem_size_mib": 128, "smt": 1}`), "machine-config.smt", "must be true or false"},
		{"dirty pages", machine(`{"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": true}`), "machine-config.track_dirty_pages", "not supported by flint yet"},
		{"huge pages 2M", machine(`{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "2M"}`), "machine-config.huge_pages", `"2M" is not supported by flint yet`},
		{"huge pages bad", machine(`{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "1G"}`), "machine-config.huge_pages", `want one of "None", "Transparent", "2M"`},
		{"cpu template", machine(`{"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"}`), "machine-config.cpu_template", "not supported"},
		{"machine not object", machine(`[]`), "machine-config", "must be an object, got an array"},
		{"interfaces not array", `{` + boot + `, "network-interfaces": {}}`, "network-interfaces", "must be an array"},
		{"iface unknown key", net(`, "mac": "x"`), "network-interfaces[0].mac", `unknown key "mac" at network-interfaces[0]`},
		{"iface no tap", `{` + boot + `, "network-interfaces": [{"iface_id": "eth0"}]}`, "network-interfaces[0].host_dev_name", "is required"},
		{"iface long tap", `{` + boot + `, "network-interfaces": [{"iface_id": "e", "host_dev_name": "abcdefghijklmnopq"}]}`, "network-interfaces[0].host_dev_name", "not a valid interface name"},
		{"iface bad mac", net(`, "guest_mac": "zz"`), "network-interfaces[0].guest_mac", "want a MAC"},
		{"iface multicast mac", net(`, "guest_mac": "01:00:5e:00:00:01"`), "network-interfaces[0].guest_mac", "multicast"},
		{"iface mtu", net(`, "mtu": 70000`), "network-interfaces[0].mtu", "out of range [68, 65535]"},
		{"limiter unknown", net(`, "rx_rate_limiter": {"bandwith": {}}`), "network-interfaces[0].rx_rate_limiter.bandwith", "unknown key"},
		{"bucket no size", net(`, "tx_rate_limiter": {"ops": {"refill_time": 10}}`), "network-interfaces[0].tx_rate_limiter.ops.size", "is required"},
		{"bucket negative", net(`, "tx_rate_limiter": {"bandwidth": {"size": -1, "refill_time": 10}}`), "network-interfaces[0].tx_rate_limiter.bandwidth.size", "-1 is out of range [0, "},
		{"bucket too big", net(`, "tx_rate_limiter": {"bandwidth": {"size": 18446744073709551616, "refill_time": 10}}`), "network-interfaces[0].tx_rate_limiter.bandwidth.size", "is out of range [0, 18446744073709551615]"},
		{"bucket size limit", net(`, "tx_rate_limiter": {"bandwidth": {"size": 4611686018427387905, "refill_time": 10}}`), "network-interfaces[0].tx_rate_limiter.bandwidth.size", "out of range [0, 4611686018427387904]"},
		{"bucket burst limit", drive(`, "rate_limiter": {"ops": {"size": 1, "one_time_burst": 4611686018427387905, "refill_time": 10}}`), "drives[0].rate_limiter.ops.one_time_burst", "out of range"},
		{"bucket no refill", net(`, "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 0}}`), "network-interfaces[0].rx_rate_limiter.ops.refill_time", "0 ms is out of range [1, 4294967296]"},
		{"bucket long refill", net(`, "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 4294967297}}`), "network-interfaces[0].rx_rate_limiter.ops.refill_time", "out of range"},
		{"bucket fraction", net(`, "tx_rate_limiter": {"bandwidth": {"size": 1.5, "refill_time": 10}}`), "network-interfaces[0].tx_rate_limiter.bandwidth.size", "want an integer"},
		{"bucket burst type", net(`, "rx_rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1, "one_time_burst": "x"}}`), "network-interfaces[0].rx_rate_limiter.bandwidth.one_time_burst", "got a string"},
		{"iface twice", `{` + boot + `, "network-interfaces": [{"iface_id": "a", "host_dev_name": "t0"}, {"iface_id": "a", "host_dev_name": "t1"}]}`, "network-interfaces[1].iface_id", `"a" is used twice`},
		{"tap twice", `{` + boot + `, "network-interfaces": [{"iface_id": "a", "host_dev_name": "t0"}, {"iface_id": "b", "host_dev_name": "t0"}]}`, "network-interfaces[1].host_dev_name", "used twice"},
		{"mac twice", `{` + boot + `, "network-interfaces": [{"iface_id": "a", "host_dev_name": "t0", "guest_mac": "52:54:00:00:00:01"}, {"iface_id": "b", "host_dev_name": "t1", "guest_mac": "52:54:00:00:00:01"}]}`, "network-interfaces[1].guest_mac", "used twice"},
		{"drive unknown key", drive(`, "read_only": true`), "drives[0].read_only", `unknown key "read_only" at drives[0]`},
		{"drive no root flag", `{` + boot + `, "drives": [{"drive_id": "d", "path_on_host": "p"}]}`, "drives[0].is_root_device", "is required"},
		{"drive no path", `{` + boot + `, "drives": [{"drive_id": "d", "is_root_device": false}]}`, "drives[0].path_on_host", "is required"},
		{"drive vhost-user", drive(`, "socket": "/s"`), "drives[0].socket", "not supported"},
		{"drive async", drive(`, "io_engine": "Async"`), "drives[0].io_engine", `"Async" is not supported by flint yet`},
		{"drive io engine bad", drive(`, "io_engine": "sync"`), "drives[0].io_engine", `want one of "Sync", "Async"`},
		{"drive cache bad", drive(`, "cache_type": "None"`), "drives[0].cache_type", `want one of "Unsafe", "Writeback"`},
		{"drive read only type", drive(`, "is_read_only": "yes"`), "drives[0].is_read_only", "must be true or false"},
		{"drive partuuid", drive(`, "partuuid": "a b"`), "drives[0].partuuid", "spaces"},
		{"drive limiter", drive(`, "rate_limiter": {"ops": {"size": 1}}`), "drives[0].rate_limiter.ops.refill_time", "is required"},
		{"two roots", `{` + boot + `, "drives": [{"drive_id": "a", "path_on_host": "p", "is_root_device": true}, {"drive_id": "b", "path_on_host": "q", "is_root_device": true}]}`, "drives[1].is_root_device", "already the root device"},
		{"drive twice", `{` + boot + `, "drives": [{"drive_id": "a", "path_on_host": "p", "is_root_device": false}, {"drive_id": "a", "path_on_host": "q", "is_root_device": false}]}`, "drives[1].drive_id", "used twice"},
		{"logger level", `{` + boot + `, "logger": {"level": "Loud"}}`, "logger.level", `want one of "Error", "Warning"`},
		{"logger module", `{` + boot + `, "logger": {"module": "api"}}`, "logger.module", "not supported"},
		{"metrics no path", `{` + boot + `, "metrics": {}}`, "metrics.metrics_path", "is required"},
		{"flint unknown", `{` + boot + `, "flint": {"consol": "none"}}`, "flint.consol", `unknown key "consol" at flint`},
		{"flint timeout", `{` + boot + `, "flint": {"timeout": "soon"}}`, "flint.timeout", "duration"},
		{"flint timeout negative", `{` + boot + `, "flint": {"timeout": "-1s"}}`, "flint.timeout", "non-negative"},
		{"flint iface missing", `{` + boot + `, "flint": {"network-interfaces": {"eth9": {}}}}`, "flint.network-interfaces.eth9", `no iface_id "eth9"`},
		{"flint drive missing", `{` + boot + `, "flint": {"drives": {"d": {"transport": "pci"}}}}`, "flint.drives.d", `no drive_id "d"`},
		{"flint iface key", `{` + boot + `, "flint": {"network-interfaces": {"eth0": {"tso": "on"}}}}`, "flint.network-interfaces.eth0.tso", "must be true or false"},
		{"flint iface unknown", `{` + boot + `, "flint": {"network-interfaces": {"eth0": {"mtu": 9000}}}}`, "flint.network-interfaces.eth0.mtu", "unknown key"},
		{"flint transport", `{` + boot + `, "flint": {"drives": {"d": {"transport": "isa"}}}}`, "flint.drives.d.transport", `want one of "pci", "mmio"`},
		{"flint map type", `{` + boot + `, "flint": {"drives": []}}`, "flint.drives", "must be an object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeVMConfig([]byte(tc.doc))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *FieldError", err, err)
			}
			if fe.Path != tc.path || !strings.Contains(fe.Msg, tc.want) {
				t.Fatalf("error at %q: %q; want at %q containing %q", fe.Path, fe.Msg, tc.path, tc.want)
			}
			if tc.path != "" && !strings.Contains(fe.Msg, tc.path) && !strings.Contains(fe.Msg, "unknown key") {
				t.Fatalf("message %q does not name %q", fe.Msg, tc.path)
			}
			if strings.Contains(fe.Msg, "\n") {
				t.Fatalf("message %q is more than one line", fe.Msg)
			}
		})
	}
}

// TestFlintSwitchesChecked: switches from the flint section go through the
// same checks as --net (tso needs csum).
func TestFlintSwitchesChecked(t *testing.T) {
	doc := `{"boot-source": {"kernel_image_path": "k"}, "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}],
		"flint": {"network-interfaces": {"eth0": {"csum": false}}}}`
	c, err := DecodeVMConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.NetInterfaces()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "flint.network-interfaces.eth0" || !strings.Contains(fe.Msg, "tso=on needs csum=on") {
		t.Fatalf("got %v", err)
	}
}

func TestPatchMachineConfig(t *testing.T) {
	cur := MachineConfig{VCPUCount: 2, MemSizeMiB: 512, HugePages: "None"}
	m, err := PatchMachineConfig(cur, []byte(`{"mem_size_mib": 1024}`))
	if err != nil || m.VCPUCount != 2 || m.MemSizeMiB != 1024 {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := PatchMachineConfig(cur, []byte(`{"vcpu_count": 64}`)); err == nil {
		t.Fatal("vcpu_count 64 accepted")
	}
	if _, err := DecodeMachineConfig([]byte(`{"mem_size_mib": 1024}`)); err == nil {
		t.Fatal("PUT without vcpu_count accepted")
	}
}

func TestDecodeAction(t *testing.T) {
	for _, a := range []Action{ActionInstanceStart, ActionSendCtrlAltDel, ActionFlushMetrics} {
		got, err := DecodeAction([]byte(`{"action_type": "` + string(a) + `"}`))
		if err != nil || got != a {
			t.Fatalf("%s: %v %v", a, got, err)
		}
	}
	for _, doc := range []string{`{}`, `{"action_type": "Reboot"}`, `{"action_type": "InstanceStart", "x": 1}`, `null`, ``} {
		if _, err := DecodeAction([]byte(doc)); err == nil {
			t.Fatalf("%q accepted", doc)
		}
	}
}

// TestExamples parses every file in examples/.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*.json")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeVMConfig(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := c.NetInterfaces(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// FuzzDecodeVMConfig: arbitrary documents never panic; an accepted one
// validates, resolves, and survives a round trip through GET /vm/config's
// encoding.
func FuzzDecodeVMConfig(f *testing.F) {
	f.Add([]byte(minimalDoc))
	for _, name := range []string{"minimal", "net", "disk", "ratelimit"} {
		if b, err := os.ReadFile("examples/" + name + ".json"); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"boot-source": {"kernel_image_path": "k"}, "machine-config": {"vcpu_count": 1e3, "mem_size_mib": 1}}`))
	// Firecracker's shapes: null and [] sections, a null drive socket.
	f.Add([]byte(fcDoc(fcBoot, `"drives": [`+fcDrive+`]`, fcMachine, fcNulls, `"network-interfaces": [`+fcNet+`]`)))
	f.Add([]byte(fcDoc(fcBoot, `"pmem": [ ]`, `"metrics": {"metrics_path": "m", "emit_id": false}`, `"logger": {"module": null}`)))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := DecodeVMConfig(doc)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Msg == "" {
				t.Fatalf("error %v (%T) is not a FieldError", err, err)
			}
			if strings.ContainsAny(fe.Msg, "\r\n") {
				t.Fatalf("error %q is not one line", fe.Msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeVMConfig(b); err != nil {
			t.Fatalf("re-encoded config %s rejected: %v", b, err)
		}
	})
}
