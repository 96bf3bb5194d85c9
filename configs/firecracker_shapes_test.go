package configs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Configs in the shapes Firecracker writes: its test configs
// (tests/framework/vm_config*.json: every section present, off ones as
// null or []), its GET /vm/config output, and every key of its 1.x
// FullVmConfiguration schema. Written here from those keys.
const (
	fcBoot    = `"boot-source": {"kernel_image_path": "vmlinux.bin", "boot_args": "console=ttyS0 reboot=k panic=1", "initrd_path": null}`
	fcDrive   = `{"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe", "is_read_only": false, "path_on_host": "rootfs.ext4", "io_engine": "Sync", "rate_limiter": null, "socket": null}`
	fcMachine = `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false, "huge_pages": "None"}`
	fcNulls   = `"cpu-config": null, "balloon": null, "vsock": null, "logger": null, "metrics": null, "mmds-config": null, "entropy": null, "pmem": [], "memory-hotplug": null, "serial": null`
	fcNet     = `{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:c0:a8:00:02", "rx_rate_limiter": null, "tx_rate_limiter": null}`
)

func fcDoc(parts ...string) string { return "{" + strings.Join(parts, ",\n") + "}" }

func TestFirecrackerShapes(t *testing.T) {
	accept := []struct{ name, doc string }{
		{"vm_config with every off section null or []", fcDoc(fcBoot, `"drives": [`+fcDrive+`]`, fcMachine, fcNulls, `"network-interfaces": []`)},
		{"without the null sections", fcDoc(fcBoot, `"drives": [`+fcDrive+`]`, fcMachine)},
		{"with a network interface", fcDoc(fcBoot, `"drives": [`+fcDrive+`]`, fcMachine, fcNulls, `"network-interfaces": [`+fcNet+`]`)},
		{"no drives, drives null", fcDoc(fcBoot, fcMachine, `"drives": null, "network-interfaces": null`)},
		{"empty lists with white space", fcDoc(fcBoot, `"drives": [ ], "pmem": [ 
 ]`)},
		{"logger and metrics", fcDoc(fcBoot, fcMachine, `"logger": {"log_path": "fc.log", "level": "Info", "show_level": false, "show_log_origin": false, "module": null}`,
			`"metrics": {"metrics_path": "fc.metrics", "emit_id": false, "properties": {}}`)},
		{"metrics properties null", fcDoc(fcBoot, `"metrics": {"metrics_path": "m", "properties": null}`)},
		{"minimal machine-config, cpu_template None", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "None"}`)},
		{"cpu_template null", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": null}`)},
		{"boot_args and initrd null", fcDoc(`"boot-source": {"kernel_image_path": "k", "boot_args": null, "initrd_path": null}`)},
		{"drive with Writeback and a rate limiter", fcDoc(fcBoot, `"drives": [{"drive_id": "d", "is_root_device": false, "path_on_host": "d.img", "cache_type": "Writeback",
			"rate_limiter": {"bandwidth": {"size": 1048576, "one_time_burst": null, "refill_time": 1000}, "ops": null}}]`)},
		{"vsock", fcDoc(fcBoot, `"vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"}`)},
		{"vsock with its (deprecated) id", fcDoc(fcBoot, `"vsock": {"vsock_id": "vsock0", "guest_cid": 52, "uds_path": "v.sock"}`)},
		{"entropy without a limiter", fcDoc(fcBoot, `"entropy": {"rate_limiter": null}`)},
		{"entropy with a limiter", fcDoc(fcBoot, `"entropy": {"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}, "ops": null}}`)},
		{"entropy empty", fcDoc(fcBoot, `"entropy": {}`)},
		{"interface with mtu and rate limiters", fcDoc(fcBoot, `"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": null, "mtu": 1500,
			"rx_rate_limiter": {"bandwidth": null, "ops": {"size": 100, "refill_time": 1000}}, "tx_rate_limiter": null}]`)},
	}
	for _, tc := range accept {
		if _, err := DecodeVMConfig([]byte(tc.doc)); err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
	}
	// Each value asks for something Flint lacks: one line that names the
	// key and says Flint does not support it yet.
	refuse := []struct{ name, doc, path string }{
		{"mmds v2 config", fcDoc(fcBoot, `"network-interfaces": [`+fcNet+`]`, `"mmds-config": {"network_interfaces": ["eth0"], "ipv4_address": "169.254.169.250", "version": "V2", "imds_compat": true}`), "mmds-config"},
		{"mmds v1 config", fcDoc(fcBoot, `"mmds-config": {"network_interfaces": ["eth0"], "version": "V1"}`), "mmds-config"},
		{"C3 template", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "cpu_template": "C3"}`), "machine-config.cpu_template"},
		{"T2S template", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "cpu_template": "T2S"}`), "machine-config.cpu_template"},
		{"smt", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": true}`), "machine-config.smt"},
		{"dirty page tracking", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "track_dirty_pages": true}`), "machine-config.track_dirty_pages"},
		{"transparent huge pages", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "huge_pages": "Transparent"}`), "machine-config.huge_pages"},
		{"metrics properties", fcDoc(fcBoot, `"metrics": {"metrics_path": "m", "properties": {"team": "a"}}`), "metrics.properties"},
		{"2M huge pages", fcDoc(fcBoot, `"machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "huge_pages": "2M"}`), "machine-config.huge_pages"},
		{"balloon", fcDoc(fcBoot, `"balloon": {"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 0}`), "balloon"},
		{"cpu-config", fcDoc(fcBoot, `"cpu-config": {"cpuid_modifiers": []}`), "cpu-config"},
		{"pmem", fcDoc(fcBoot, `"pmem": [{"id": "p0", "path_on_host": "p.img", "root_device": false, "read_only": true}]`), "pmem"},
		{"memory hotplug", fcDoc(fcBoot, `"memory-hotplug": {"total_size_mib": 1024}`), "memory-hotplug"},
		{"serial", fcDoc(fcBoot, `"serial": {"serial_out_path": "s.log"}`), "serial"},
		{"vhost-user drive", fcDoc(fcBoot, `"drives": [{"drive_id": "d", "is_root_device": false, "socket": "/run/vhu.sock"}]`), "drives[0].socket"},
		{"async io engine", fcDoc(fcBoot, `"drives": [{"drive_id": "d", "is_root_device": false, "path_on_host": "d", "io_engine": "Async"}]`), "drives[0].io_engine"},
		{"logger module", fcDoc(fcBoot, `"logger": {"level": "Info", "module": "api_server::request"}`), "logger.module"},
		{"metrics emit_id", fcDoc(fcBoot, `"metrics": {"metrics_path": "m", "emit_id": true}`), "metrics.emit_id"},
	}
	for _, tc := range refuse {
		_, err := DecodeVMConfig([]byte(tc.doc))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != tc.path || !strings.Contains(err.Error(), "not supported by flint yet") ||
			!strings.HasPrefix(err.Error(), tc.path+" ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line naming %s as not supported yet", tc.name, err, tc.path)
		}
	}
}

// TestVMConfigRoundTrip: what GET /vm/config writes (Flint's encoding of a
// VMConfig, and Firecracker's shape with its null keys) loads back as a
// config file unchanged.
func TestVMConfigRoundTrip(t *testing.T) {
	docs := []string{
		fcDoc(fcBoot, `"drives": [`+fcDrive+`]`, fcMachine, fcNulls, `"network-interfaces": [`+fcNet+`]`),
		fcDoc(fcBoot, `"drives": [{"drive_id": "d", "is_root_device": true, "path_on_host": "d.img", "is_read_only": true, "partuuid": "ab-01", "cache_type": "Writeback",
			"rate_limiter": {"bandwidth": {"size": 1048576, "one_time_burst": 4096, "refill_time": 1000}}}]`,
			`"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:c0:a8:00:02", "mtu": 9000, "tx_rate_limiter": {"ops": {"size": 10, "refill_time": 100}}}]`,
			`"logger": {"log_path": "l", "level": "Debug", "show_level": true, "show_log_origin": true}`, `"metrics": {"metrics_path": "m"}`,
			`"flint": {"console": "none", "timeout": "90s", "exit_marker": "OK", "timing": true, "drives": {"d": {"transport": "mmio"}}}`),
		fcDoc(fcBoot, `"vsock": {"vsock_id": "v", "guest_cid": 4294967294, "uds_path": "/run/v.sock"}`,
			`"entropy": {"rate_limiter": {"ops": {"size": 10, "refill_time": 100}}}`,
			`"flint": {"vsock": {"transport": "mmio"}, "entropy": {"transport": "pci"}}`),
		fcDoc(fcBoot, `"vsock": {"guest_cid": 3, "uds_path": "v"}`, `"entropy": {}`),
	}
	for i, doc := range docs {
		c, err := DecodeVMConfig([]byte(doc))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeVMConfig(out)
		if err != nil {
			t.Fatalf("doc %d: GET /vm/config output refused: %v\n%s", i, err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("doc %d: changed by a round trip:\n%+v\n%+v\n%s", i, c, back, out)
		}
	}
}
