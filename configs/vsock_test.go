package configs

import (
	"reflect"
	"testing"
)

func TestDecodeVsockAndEntropyBodies(t *testing.T) {
	v, err := DecodeVsock([]byte(`{"guest_cid": 3, "uds_path": "/run/v.sock", "vsock_id": "root"}`))
	if err != nil || v != (Vsock{VsockID: "root", GuestCID: 3, UDSPath: "/run/v.sock"}) {
		t.Errorf("PUT /vsock body: %+v, %v", v, err)
	}
	if _, err := DecodeVsock([]byte(`{"guest_cid": 1, "uds_path": "v"}`)); err == nil {
		t.Error("guest_cid 1 accepted")
	}
	e, err := DecodeEntropy([]byte(`{"rate_limiter": {"bandwidth": {"size": 100, "refill_time": 10}}}`))
	want := Entropy{RateLimiter: &RateLimiter{Bandwidth: &TokenBucket{Size: 100, RefillTime: 10}}}
	if err != nil || !reflect.DeepEqual(e, want) {
		t.Errorf("PUT /entropy body: %+v, %v", e, err)
	}
	if _, err := DecodeEntropy([]byte(`[]`)); err == nil {
		t.Error("an array accepted as the entropy body")
	}
}

func TestVsockAndEntropyTransports(t *testing.T) {
	c, err := DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"}, "vsock": {"guest_cid": 3, "uds_path": "v"}, "entropy": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.VsockTransport() != TransportPCI || c.EntropyTransport() != TransportPCI {
		t.Errorf("default transports %q, %q; want pci", c.VsockTransport(), c.EntropyTransport())
	}
	c, err = DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"}, "vsock": {"guest_cid": 3, "uds_path": "v"}, "entropy": {},
		"flint": {"vsock": {"transport": "mmio"}, "entropy": {"transport": "mmio"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.VsockTransport() != TransportMMIO || c.EntropyTransport() != TransportMMIO {
		t.Errorf("transports %q, %q; want mmio", c.VsockTransport(), c.EntropyTransport())
	}
}
