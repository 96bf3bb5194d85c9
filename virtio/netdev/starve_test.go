package netdev

import (
	"testing"

	"github.com/flintvm/flint/internal/vnethdr"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestRxStarvedMergeable: a mergeable device with GUEST_TSO (the largest
// frame 64 KiB) on a ring too small for that, which the driver refills
// only after it received into more than half of it (Linux refills when
// more than min(64, size)/2 buffers are free), delivers the frames that
// fit the buffers it holds, and a frame larger than those waits for more
// buffers instead of being lost. Before, once a frame had used one of
// the full ring's buffers, the device held the rest (too few for 64 KiB)
// and waited for a kick the driver had no reason to send: nothing more
// was delivered (TestNetStress's mergeable runs on rings of 5 to 64
// entries stalled so).
func TestRxStarvedMergeable(t *testing.T) {
	for _, park := range []bool{false, true} {
		t.Run(map[bool]string{false: "tryreadv", true: "readv-or-park"}[park], func(t *testing.T) {
			acked, opt := fMrg|fGSO, virtiotest.Options{Sizes: []uint16{8, 8}}
			var h *virtiotest.Harness
			var be *fakeBackend
			if park {
				var pb *parkBackend
				_, pb, h = newParkDeviceOpt(t, acked, opt)
				be = pb.fakeBackend
			} else {
				var d *Device
				d, be = newDevice(t, Options{})
				h = activate(t, d, acked, opt)
			}
			postRx(t, h, 8, 2048) // the whole ring: 16 KiB
			small := [][]byte{frame(1, 100, 0, 0), frame(2, 1400, 0, 0)}
			be.Inject(small...)
			checkPackets(t, receive(t, h, 2, true), small, 2048, true)

			// 6 buffers left (12 KiB) and 2 free slots, which Linux
			// leaves free: a 14000-byte frame waits for them.
			big := frame(3, 14000, 0, vnethdr.GSONone)
			be.Inject(big)
			settle()
			if got := h.Drivers[RxQueue].AllUsed(); len(got) != 0 {
				t.Fatalf("%d buffers used for a frame that does not fit them", len(got))
			}
			postRx(t, h, 2, 2048)
			checkPackets(t, receive(t, h, 1, true), [][]byte{big}, 2048, true)
		})
	}
}
