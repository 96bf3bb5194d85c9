package netdev

import (
	"bytes"
	"testing"

	"github.com/flintvm/flint/internal/vnethdr"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestTxHeaderNeedsNegotiatedOffload (issue 13 finding 8): a transmit
// header that asks for an offload the driver did not negotiate (NEEDS_CSUM
// without CSUM, a GSO type without its HOST_TSO4/TSO6/UFO, the ECN flag
// without HOST_ECN, a GSO type Flint never offers) never reaches the
// backend: the frame is dropped and counted (tx_drops.bad_header), and
// the chain completed. With the features negotiated the same headers pass
// through as they are.
func TestTxHeaderNeedsNegotiatedOffload(t *testing.T) {
	for _, tc := range []struct {
		name       string
		acked      uint64
		flags, gso byte
		pass       bool
	}{
		{"plain", 0, 0, vnethdr.GSONone, true},
		{"csum-without-CSUM", 0, vnethdr.FNeedsCsum, vnethdr.GSONone, false},
		{"csum-with-CSUM", fHostCsum, vnethdr.FNeedsCsum, vnethdr.GSONone, true},
		{"tso4-without-HOST_TSO4", fHostCsum, vnethdr.FNeedsCsum, vnethdr.GSOTCPv4, false},
		{"tso4-with-HOST_TSO4", fHostCsum | FeatureHostTSO4.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOTCPv4, true},
		{"tso6-with-only-TSO4", fHostCsum | FeatureHostTSO4.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOTCPv6, false},
		{"tso6-with-HOST_TSO6", fHostCsum | FeatureHostTSO6.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOTCPv6, true},
		{"ufo-without-HOST_UFO", fHostCsum | FeatureHostTSO4.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOUDP, false},
		{"ufo-with-HOST_UFO", fHostCsum | FeatureHostUFO.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOUDP, true},
		{"ecn-without-HOST_ECN", fHostCsum | FeatureHostTSO4.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOTCPv4 | vnethdr.GSOECN, false},
		{"ecn-with-HOST_ECN", fHostCsum | FeatureHostTSO4.Mask() | FeatureHostECN.Mask(), vnethdr.FNeedsCsum, vnethdr.GSOTCPv4 | vnethdr.GSOECN, true},
		{"uso-never-offered", fHostGSO, vnethdr.FNeedsCsum, vnethdr.GSOUDPL4, false},
		{"gso-type-out-of-range", fHostGSO, vnethdr.FNeedsCsum, 0x7f, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, be := newDevice(t, Options{})
			h := activate(t, d, tc.acked, virtiotest.Options{})
			f := frame(1, 1000, tc.flags, tc.gso)
			sendTx(t, h, f, []int{1, 3}, false) // the header split across descriptors
			h.Kick(TxQueue)
			txd := h.Drivers[TxQueue]
			waitUntil(t, "completion", func() bool { txd.AllUsed(); return txd.InFlight() == 0 })
			waitUntil(t, "counters", func() bool { s := stats(d); return s.TxPackets+s.TxDropHeader == 1 })
			got := be.Sent()
			if !tc.pass {
				if len(got) != 0 || stats(d).TxDropHeader != 1 {
					t.Fatalf("header flags %#x gso %#x reached the backend (%d frames, stats %+v)", tc.flags, tc.gso, len(got), stats(d))
				}
				return
			}
			if len(got) != 1 || !bytes.Equal(got[0], f) {
				t.Fatalf("frame not passed through as is (%d frames)", len(got))
			}
		})
	}
}

// TestTxHeaderClearsUnknownFlags: flag bits the device does not act on
// when transmitting (DATA_VALID, RSC_INFO, undefined bits) are ignored
// as virtio 1.2 §5.1.6.2.2 says: the backend gets the frame with them
// cleared in a copy of the header, and the guest's buffer is not written.
func TestTxHeaderClearsUnknownFlags(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fHostCsum, virtiotest.Options{})
	f := frame(2, 300, vnethdr.FNeedsCsum|vnethdr.FDataValid|0x80, vnethdr.GSONone)
	for _, layout := range [][]int{nil, {HdrLen}, {5, 9}} {
		sendTx(t, h, f, layout, false)
	}
	h.Kick(TxQueue)
	waitUntil(t, "frames", func() bool { return len(be.Sent()) == 3 })
	want := bytes.Clone(f)
	want[0] = vnethdr.FNeedsCsum
	for i, g := range be.Sent() {
		if !bytes.Equal(g, want) {
			t.Fatalf("frame %d: header % x, want % x (len %d/%d)", i, g[:HdrLen], want[:HdrLen], len(g), len(want))
		}
	}
	if f[0] != vnethdr.FNeedsCsum|vnethdr.FDataValid|0x80 {
		t.Fatal("test frame changed")
	}
	txd := h.Drivers[TxQueue]
	for _, u := range txd.AllUsed() {
		if u.Len != 0 {
			t.Fatalf("used length %d", u.Len)
		}
	}
}
