package vmm

import (
	"testing"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/netdev"
)

// TestNetLimitsAgree: the configuration's bounds are the device's
// (configs imports no device package, so it spells them again): a value
// configs accepts is one netdev.NewMulti accepts.
func TestNetLimitsAgree(t *testing.T) {
	if configs.MaxIRQGap != netdev.MaxIRQGap {
		t.Errorf("configs.MaxIRQGap %v, netdev.MaxIRQGap %v", configs.MaxIRQGap, netdev.MaxIRQGap)
	}
	if configs.MaxPoll != virtio.MaxPoll {
		t.Errorf("configs.MaxPoll %v, virtio.MaxPoll %v", configs.MaxPoll, virtio.MaxPoll)
	}
	if configs.MaxNetQueues != netdev.MaxQueuePairs {
		t.Errorf("configs.MaxNetQueues %d, netdev.MaxQueuePairs %d", configs.MaxNetQueues, netdev.MaxQueuePairs)
	}
}
