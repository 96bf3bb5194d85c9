package netdev

import (
	"fmt"

	"github.com/flintvm/flint/virtio"
)

// Virtio-net feature bits (virtio 1.2 §5.1.3). They are virtio.Feature
// values, so f.Mask() gives the bit in a feature word.
const (
	// FeatureCsum: the device handles packets with a partial checksum
	// (the driver may send VIRTIO_NET_HDR_F_NEEDS_CSUM).
	FeatureCsum virtio.Feature = 0
	// FeatureGuestCsum: the driver handles packets with a partial
	// checksum (the device may deliver NEEDS_CSUM and DATA_VALID).
	FeatureGuestCsum virtio.Feature = 1
	// FeatureMTU: the device reports its maximum MTU in the config space.
	FeatureMTU virtio.Feature = 3
	// FeatureMAC: the device has a MAC address in the config space.
	FeatureMAC virtio.Feature = 5
	// FeatureGuestTSO4: the driver can receive TCPv4 GSO packets.
	FeatureGuestTSO4 virtio.Feature = 7
	// FeatureGuestTSO6: the driver can receive TCPv6 GSO packets.
	FeatureGuestTSO6 virtio.Feature = 8
	// FeatureGuestECN: the driver can receive TSO packets with ECN.
	FeatureGuestECN virtio.Feature = 9
	// FeatureGuestUFO: the driver can receive UFO packets.
	FeatureGuestUFO virtio.Feature = 10
	// FeatureHostTSO4: the device can take TCPv4 GSO packets.
	FeatureHostTSO4 virtio.Feature = 11
	// FeatureHostTSO6: the device can take TCPv6 GSO packets.
	FeatureHostTSO6 virtio.Feature = 12
	// FeatureHostECN: the device can take TSO packets with ECN.
	FeatureHostECN virtio.Feature = 13
	// FeatureHostUFO: the device can take UFO packets.
	FeatureHostUFO virtio.Feature = 14
	// FeatureMrgRxbuf: the driver posts receive buffers that the device
	// merges (num_buffers in the header says how many a packet used).
	FeatureMrgRxbuf virtio.Feature = 15
	// FeatureStatus: the config space has a link status field.
	FeatureStatus virtio.Feature = 16
	// FeatureCtrlVQ: there is a control virtqueue (queue 2).
	FeatureCtrlVQ virtio.Feature = 17
	// FeatureCtrlRx: the control queue takes RX mode commands
	// (promiscuous, all-multicast). Needs FeatureCtrlVQ.
	FeatureCtrlRx virtio.Feature = 18
	// FeatureMQ: the device has more than one receive/transmit queue
	// pair (max_virtqueue_pairs in the config space) and takes the
	// control queue's VQ_PAIRS_SET. Needs FeatureCtrlVQ. New offers it
	// when Options.Queues > 1.
	FeatureMQ virtio.Feature = 22
)

// SupportedFeatures are the features this device can offer: the common
// ring features, the packed ring (offered only when asked: see
// DefaultFeatures) and the net features above.
const SupportedFeatures = virtio.CommonFeatures | 1<<virtio.FeatureRingPacked |
	1<<FeatureCsum | 1<<FeatureGuestCsum | 1<<FeatureMTU | 1<<FeatureMAC |
	1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6 | 1<<FeatureGuestECN | 1<<FeatureGuestUFO |
	1<<FeatureHostTSO4 | 1<<FeatureHostTSO6 | 1<<FeatureHostECN | 1<<FeatureHostUFO |
	1<<FeatureMrgRxbuf | 1<<FeatureStatus | 1<<FeatureCtrlVQ | 1<<FeatureCtrlRx | 1<<FeatureMQ

// DefaultFeatures are offered when Options.Features is zero: everything
// in SupportedFeatures except the control queue (a driver that sees
// CTRL_VQ sends commands and waits for their answers; Flint has nothing
// to configure through it with one queue pair), MQ (New adds MQ and
// CTRL_VQ when Options.Queues > 1) and RING_PACKED (Linux negotiates it
// whenever offered; --net packed=on adds it).
const DefaultFeatures = SupportedFeatures &^ (1<<FeatureCtrlVQ | 1<<FeatureCtrlRx | 1<<FeatureMQ | 1<<virtio.FeatureRingPacked)

// guestGSO are the features that let the device hand the driver
// unsegmented (GSO) packets; any of them without MRG_RXBUF selects the
// "big packets" receive mode.
const guestGSO = 1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6 | 1<<FeatureGuestUFO

// featureDeps lists, per feature, the features of which at least one must
// accompany it (virtio 1.2 §5.1.3.1).
var featureDeps = []struct {
	f     virtio.Feature
	anyOf uint64
}{
	{FeatureGuestTSO4, 1 << FeatureGuestCsum},
	{FeatureGuestTSO6, 1 << FeatureGuestCsum},
	{FeatureGuestUFO, 1 << FeatureGuestCsum},
	{FeatureGuestECN, 1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6},
	{FeatureHostTSO4, 1 << FeatureCsum},
	{FeatureHostTSO6, 1 << FeatureCsum},
	{FeatureHostUFO, 1 << FeatureCsum},
	{FeatureHostECN, 1<<FeatureHostTSO4 | 1<<FeatureHostTSO6},
	{FeatureCtrlRx, 1 << FeatureCtrlVQ},
	{FeatureMQ, 1 << FeatureCtrlVQ},
}

// checkDeps returns an error naming the first feature in features whose
// dependencies are missing. GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6,
// which need GUEST_CSUM, so the chain is checked transitively.
func checkDeps(features uint64) error {
	for _, d := range featureDeps {
		if virtio.Has(features, d.f) && features&d.anyOf == 0 {
			return fmt.Errorf("virtio-net: feature %s needs %s", featureName(d.f), maskNames(d.anyOf))
		}
	}
	return nil
}

var featureNames = map[virtio.Feature]string{
	FeatureCsum: "CSUM", FeatureGuestCsum: "GUEST_CSUM", FeatureMTU: "MTU", FeatureMAC: "MAC",
	FeatureGuestTSO4: "GUEST_TSO4", FeatureGuestTSO6: "GUEST_TSO6", FeatureGuestECN: "GUEST_ECN",
	FeatureGuestUFO: "GUEST_UFO", FeatureHostTSO4: "HOST_TSO4", FeatureHostTSO6: "HOST_TSO6",
	FeatureHostECN: "HOST_ECN", FeatureHostUFO: "HOST_UFO", FeatureMrgRxbuf: "MRG_RXBUF",
	FeatureStatus: "STATUS", FeatureCtrlVQ: "CTRL_VQ", FeatureCtrlRx: "CTRL_RX",
	FeatureMQ:                      "MQ",
	virtio.FeatureRingIndirectDesc: "RING_INDIRECT_DESC", virtio.FeatureRingEventIdx: "RING_EVENT_IDX", virtio.FeatureRingPacked: "RING_PACKED",
	virtio.FeatureVersion1: "VERSION_1",
}

func featureName(f virtio.Feature) string {
	if n, ok := featureNames[f]; ok {
		return n
	}
	return fmt.Sprintf("bit %d", uint(f))
}

// maskNames lists the features in mask, joined by " or ".
func maskNames(mask uint64) string {
	s := ""
	for f := virtio.Feature(0); f < 64; f++ {
		if virtio.Has(mask, f) {
			if s != "" {
				s += " or "
			}
			s += featureName(f)
		}
	}
	return s
}
