package vmm

import (
	"testing"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/virtio"
)

// TestNetFeaturesPacked: --net packed=on adds RING_PACKED to the offer;
// the default interface does not offer it.
func TestNetFeaturesPacked(t *testing.T) {
	n := configs.DefaultNetInterface("tap0")
	if virtio.Has(netFeatures(n), virtio.FeatureRingPacked) {
		t.Fatal("RING_PACKED offered by default")
	}
	n.Packed = true
	if f := netFeatures(n); !virtio.Has(f, virtio.FeatureRingPacked) || !virtio.Has(f, virtio.FeatureRingEventIdx) {
		t.Fatalf("packed=on: features %#x", f)
	}
}
