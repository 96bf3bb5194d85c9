package api

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/flintvm/flint/configs"
)

// TestVsockAndEntropy: PUT /vsock and PUT /entropy before the start set
// the devices (a second PUT replaces), bad bodies are 400 naming the
// field, GET /vm/config shows them and loads back as a config file,
// InstanceStart hands them to the controller, and after the start both
// are refused.
func TestVsockAndEntropy(t *testing.T) {
	vm := &fakeVM{}
	_, c, _ := serve(t, Options{Controller: vm})
	c.fault("PUT", "/vsock", `{"guest_cid": 2, "uds_path": "/run/v.sock"}`, "vsock.guest_cid 2 is out of range")
	c.fault("PUT", "/vsock", `{"guest_cid": 3}`, "vsock.uds_path is required")
	c.fault("PUT", "/entropy", `{"rate_limiter": {"ops": {"size": 1}}}`, "entropy.rate_limiter.ops.refill_time is required")
	c.ok(204, "PUT", "/vsock", `{"guest_cid": 3, "uds_path": "/run/a.sock"}`)
	c.ok(204, "PUT", "/vsock", `{"vsock_id": "v", "guest_cid": 9, "uds_path": "/run/v.sock"}`)
	c.ok(204, "PUT", "/entropy", `{"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}`)
	out := c.ok(200, "GET", "/vm/config", "")
	var got struct {
		Vsock   configs.Vsock   `json:"vsock"`
		Entropy configs.Entropy `json:"entropy"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Vsock != (configs.Vsock{VsockID: "v", GuestCID: 9, UDSPath: "/run/v.sock"}) ||
		got.Entropy.RateLimiter == nil || got.Entropy.RateLimiter.Bandwidth.Size != 1000 {
		t.Fatalf("GET /vm/config: %s (%v)", out, err)
	}
	c.ok(204, "PUT", "/boot-source", bootBody)
	doc := c.ok(200, "GET", "/vm/config", "")
	back, err := configs.DecodeVMConfig([]byte(doc))
	if err != nil || back.Vsock == nil || back.Vsock.GuestCID != 9 || back.Entropy == nil {
		t.Fatalf("GET /vm/config does not load back: %v\n%s", err, doc)
	}
	c.ok(204, "PUT", "/actions", `{"action_type": "InstanceStart"}`)
	vm.mu.Lock()
	started := vm.started
	vm.mu.Unlock()
	if len(started) != 1 || started[0].Vsock == nil || started[0].Vsock.UDSPath != "/run/v.sock" || started[0].Entropy == nil {
		t.Fatalf("the controller got %+v", started)
	}
	c.fault("PUT", "/vsock", `{"guest_cid": 3, "uds_path": "/run/b.sock"}`, notAfterStart)
	c.fault("PUT", "/entropy", `{}`, notAfterStart)
}

// TestTooManyDrives: the drive that would be virtio device 32 on the pci
// transport is refused at PUT time (400 naming the limit), not at
// InstanceStart by a failed attach.
func TestTooManyDrives(t *testing.T) {
	_, c, _ := serve(t, Options{Controller: &fakeVM{}, ID: "vm1", Version: "v9"})
	for i := range configs.MaxPCIDevices {
		c.ok(204, "PUT", fmt.Sprintf("/drives/d%d", i), fmt.Sprintf(`{"drive_id": "d%d", "path_on_host": "r.ext4", "is_root_device": false}`, i))
	}
	c.fault("PUT", "/drives/last", `{"drive_id": "last", "path_on_host": "r.ext4", "is_root_device": false}`, "virtio device 32 on the pci transport: at most 31")
	// Replacing one that is there is still fine.
	c.ok(204, "PUT", "/drives/d0", `{"drive_id": "d0", "path_on_host": "r.ext4", "is_root_device": true}`)
}
