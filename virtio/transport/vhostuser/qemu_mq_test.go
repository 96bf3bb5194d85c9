package vhostuser_test

import (
	"strings"
	"testing"

	"github.com/flintvm/flint/virtio/netdev"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestQEMUMultiqueue plays QEMU's vhost-net with two queue pairs: MQ
// without CTRL_VQ in SET_FEATURES (QEMU serves the control queue), the
// rings of both pairs started (kick fds set) but only pair 1's enabled,
// as for a guest that uses one pair. A started but disabled ring must
// not keep the device from running on the enabled ones; enabling pair
// 2 (ethtool -L eth0 combined 2) restarts the device on both pairs,
// disabling it again on pair 1 alone, each time without losing the
// running rings' place (a frame each way still passes on each pair in
// use, with the ring indices counting on).
func TestQEMUMultiqueue(t *testing.T) {
	q := newMQWith(t, false)
	rings := make([]*vut.Ring, 4)
	for i := range rings {
		rings[i] = q.startDisabled(i)
	}
	enable := func(on uint32, idx ...uint32) {
		t.Helper()
		for _, i := range idx {
			q.must(q.f.SetState(vut.SetVringEnable, i, on))
		}
	}
	enable(1, 0, 1)
	sent := []int{0, 0}
	traffic := func(pairs int) {
		t.Helper()
		if got := q.dev.ActivePairs(); got != pairs {
			t.Fatalf("%d pairs in use, want %d; log:\n%s", got, pairs, q.log.String())
		}
		for k := range pairs {
			q.pairTraffic(k, rings[2*k], rings[2*k+1], sent)
		}
	}
	traffic(1)
	enable(1, 2, 3)
	traffic(2)
	// QEMU's vhost_dev of each pair repeats SET_FEATURES, and every
	// change of the pair count repeats SET_VRING_ENABLE for the pairs
	// kept: the running device does not restart for them.
	starts := strings.Count(q.log.String(), "vhost-user device started")
	q.must(q.f.SetU64(vut.SetFeatures, guestFeatures|netdev.FeatureMQ.Mask()|vut.ProtocolFeatures))
	enable(1, 0, 1, 2, 3)
	if n := strings.Count(q.log.String(), "vhost-user device started"); n != starts {
		t.Fatalf("repeated SET_FEATURES and SET_VRING_ENABLE restarted the device (%d starts, %d before)", n, starts)
	}
	traffic(2)
	enable(0, 2, 3)
	traffic(1)
	enable(1, 2, 3)
	traffic(2)
}
