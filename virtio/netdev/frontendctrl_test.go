package netdev

import (
	"slices"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestFrontendControlQueue: QEMU, as a vhost-user frontend, serves the
// control queue itself and acks MQ without CTRL_VQ. A device that allows
// it (AllowFrontendControlQueue: vmm's vhost-user backend) runs every
// pair whose queues are enabled, with no control queue, steers the
// backends to all of them at once (no VQ_PAIRS_SET will come), and runs
// on pair 1 alone when only its queues are enabled. A device that does
// not (Flint's own PCI and MMIO transports) refuses that feature set.
func TestFrontendControlQueue(t *testing.T) {
	acked := FeatureMQ.Mask() // without CTRL_VQ
	own, _ := newMQ(t, 2)
	if _, err := virtiotest.Activate(own, acked|fCommon, virtiotest.Options{Enabled: []bool{true, true, true, true}}); err == nil {
		t.Fatal("MQ without CTRL_VQ accepted by a device of Flint's own transports")
	}
	own.Reset()

	d, bes := newMQ(t, 2)
	d.AllowFrontendControlQueue()
	// Both pairs enabled, the control queue (4) not: the frontend has it.
	h := activate(t, d, acked, virtiotest.Options{Enabled: []bool{true, true, true, true, false}})
	if d.ActivePairs() != 2 || !bes[0].attached() || !bes[1].attached() {
		t.Fatalf("%d pairs in use, attached %v %v; want both", d.ActivePairs(), bes[0].attached(), bes[1].attached())
	}
	rx2, tx2 := RxQueueOf(1), TxQueueOf(1)
	postOn(t, h, RxQueue, 8)
	postOn(t, h, rx2, 8)
	on2 := 0
	for i := range 8 {
		if tapSwitch(bes, i, frame(i, 60, 0, 0)) == 1 {
			on2++
		}
	}
	got := append(receiveOn(t, h, RxQueue, 8-on2), receiveOn(t, h, rx2, on2)...)
	if slices.Sort(got); on2 != 4 || !slices.Equal(got, []uint32{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("received %v (%d on pair 2)", got, on2)
	}
	if _, err := h.Drivers[tx2].Add(qt.R(frame(100, 60, 0, 0))); err != nil {
		t.Fatal(err)
	}
	h.Kick(tx2)
	bes[1].WaitSent(t, 1)

	// Pair 2 disabled (ethtool -L eth0 combined 1): pair 1 alone.
	h.Close()
	d.Reset()
	h = activate(t, d, acked, virtiotest.Options{Enabled: []bool{true, true, false, false, false}})
	if d.ActivePairs() != 1 || !bes[0].attached() || bes[1].attached() {
		t.Fatalf("one pair enabled: %d pairs in use, attached %v %v", d.ActivePairs(), bes[0].attached(), bes[1].attached())
	}
	postOn(t, h, RxQueue, 4)
	for i := range 4 {
		if k := tapSwitch(bes, i, frame(i, 60, 0, 0)); k != 0 {
			t.Fatalf("frame %d steered to pair %d", i, k+1)
		}
	}
	receiveOn(t, h, RxQueue, 4)
}
