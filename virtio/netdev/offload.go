package netdev

import (
	"github.com/flintvm/flint/internal/vnethdr"
	"github.com/flintvm/flint/virtio"
)

// offloads is what a virtio-net header may ask of its receiver under the
// negotiated features, in one direction: the guest's receive side
// (GUEST_CSUM, GUEST_TSO4/6, GUEST_UFO, GUEST_ECN) or the device's, for
// what the guest transmits (CSUM, HOST_TSO4/6, HOST_UFO, HOST_ECN).
type offloads struct {
	csum     bool  // NEEDS_CSUM may be set
	ecn      bool  // the GSO ECN flag may be set
	gsoTypes uint8 // bit t set: gso_type t may be set (GSONone always)
}

// offloadFeatures names the feature bits of one direction.
type offloadFeatures struct{ csum, ecn, tso4, tso6, ufo virtio.Feature }

var (
	guestOffloads = offloadFeatures{FeatureGuestCsum, FeatureGuestECN, FeatureGuestTSO4, FeatureGuestTSO6, FeatureGuestUFO}
	hostOffloads  = offloadFeatures{FeatureCsum, FeatureHostECN, FeatureHostTSO4, FeatureHostTSO6, FeatureHostUFO}
)

// newOffloads is what acked allows in the direction f names.
func newOffloads(acked uint64, f offloadFeatures) offloads {
	o := offloads{csum: virtio.Has(acked, f.csum), ecn: virtio.Has(acked, f.ecn), gsoTypes: 1 << vnethdr.GSONone}
	for _, g := range []struct {
		f virtio.Feature
		t uint8
	}{{f.tso4, vnethdr.GSOTCPv4}, {f.tso6, vnethdr.GSOTCPv6}, {f.ufo, vnethdr.GSOUDP}} {
		if virtio.Has(acked, g.f) {
			o.gsoTypes |= 1 << g.t
		}
	}
	return o
}

// allows reports whether a header's flags and gso_type ask only for
// offloads o allows. Flag bits other than NEEDS_CSUM are not judged.
func (o *offloads) allows(flags, gso uint8) bool {
	if flags&vnethdr.FNeedsCsum != 0 && !o.csum {
		return false
	}
	if gso&vnethdr.GSOECN != 0 && !o.ecn {
		return false
	}
	t := gso &^ vnethdr.GSOECN
	return t < 8 && o.gsoTypes&(1<<t) != 0
}
