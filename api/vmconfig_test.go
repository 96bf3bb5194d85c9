package api

import (
	"reflect"
	"testing"

	"github.com/flintvm/flint/configs"
)

// TestVMConfigLoadsBack: what GET /vm/config answers for a VM configured
// through the API loads back unchanged as a config file (issue 14 item 1).
func TestVMConfigLoadsBack(t *testing.T) {
	srv, c, _ := serve(t, Options{Controller: &fakeVM{}, ID: "vm1", Version: "v9"})
	c.ok(204, "PUT", "/boot-source", `{"kernel_image_path": "k", "initrd_path": "i", "boot_args": "console=ttyS0"}`)
	c.ok(204, "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "cpu_template": null}`)
	c.ok(204, "PUT", "/drives/rootfs", `{"drive_id": "rootfs", "path_on_host": "r.ext4", "is_root_device": true, "partuuid": null, "socket": null,
		"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}`)
	c.ok(204, "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:c0:a8:00:02", "rx_rate_limiter": null}`)
	c.ok(204, "PUT", "/metrics", `{"metrics_path": "m", "emit_id": false}`)
	out := c.ok(200, "GET", "/vm/config", "")
	back, err := configs.DecodeVMConfig([]byte(out))
	if err != nil {
		t.Fatalf("GET /vm/config output %s does not load as a config file: %v", out, err)
	}
	if want := srv.Config(); !reflect.DeepEqual(back, want) {
		t.Fatalf("GET /vm/config %s loads back as\n%+v\nnot the server's\n%+v", out, back, want)
	}
	if back.BootSource == nil || back.BootSource.KernelImagePath != "k" || back.MachineConfig.VCPUCount != 2 || len(back.Drives) != 1 ||
		back.Drives[0].RateLimiter == nil || back.Drives[0].RateLimiter.Bandwidth.Size != 1000 || len(back.NetworkInterfaces) != 1 ||
		back.Metrics == nil || back.Metrics.MetricsPath != "m" {
		t.Fatalf("loaded back as %+v from %s", back, out)
	}
}
