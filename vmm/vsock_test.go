package vmm

import (
	"strings"
	"testing"

	"github.com/flintvm/flint/ratelimit"
)

func TestVsockEntropyValidate(t *testing.T) {
	good := VsockConfig{GuestCID: 3, UDSPath: "/run/v.sock"}
	if err := good.Validate(); err != nil {
		t.Errorf("%+v: %v", good, err)
	}
	for _, c := range []struct {
		v    VsockConfig
		want string
	}{
		{VsockConfig{GuestCID: 2, UDSPath: "v"}, "guest_cid 2"},
		{VsockConfig{GuestCID: 1 << 32, UDSPath: "v"}, "guest_cid"},
		{VsockConfig{GuestCID: 3}, "uds_path"},
		{VsockConfig{GuestCID: 3, UDSPath: strings.Repeat("x", 100)}, "uds_path"},
		{VsockConfig{GuestCID: 3, UDSPath: "v", Transport: "isa"}, `transport "isa"`},
	} {
		if err := c.v.Validate(); err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "vsock: ") {
			t.Errorf("%+v: %v, want an error naming %s", c.v, err, c.want)
		}
	}
	if err := (&EntropyConfig{Transport: "mmio"}).Validate(); err != nil {
		t.Error(err)
	}
	bad := EntropyConfig{RateLimit: &ratelimit.Config{Ops: ratelimit.BucketConfig{Size: 1}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "entropy: rate_limiter.ops.refill_time") {
		t.Errorf("a bucket without a refill time: %v", err)
	}
}
