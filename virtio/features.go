package virtio

import "fmt"

// Feature is a feature bit number as the spec numbers them: feature f is
// offered when bit f of the 64-bit feature word is set. Bits 0-23 and
// 50-127 are device-specific (virtio/netdev defines its own); 24-40 are the
// common "reserved" bits below (virtio 1.2 §6).
type Feature uint

// Common feature bits.
const (
	// FeatureNotifyOnEmpty (legacy only): interrupt when the ring runs empty.
	FeatureNotifyOnEmpty Feature = 24
	// FeatureAnyLayout (legacy only): any descriptor layout is accepted.
	FeatureAnyLayout Feature = 27
	// FeatureRingIndirectDesc: the driver may use indirect descriptor
	// tables (VIRTQ_DESC_F_INDIRECT).
	FeatureRingIndirectDesc Feature = 28
	// FeatureRingEventIdx: the used_event and avail_event fields suppress
	// notifications instead of the flags.
	FeatureRingEventIdx Feature = 29
	// FeatureVersion1: a modern (virtio 1.x) device. Flint devices are
	// modern only; Negotiate insists on it.
	FeatureVersion1 Feature = 32
	// FeatureAccessPlatform: the device's memory accesses go through a
	// platform IOMMU or similar translation. Flint does not offer it.
	FeatureAccessPlatform Feature = 33
	// FeatureRingPacked: the packed virtqueue layout (virtio/queue
	// implements it). Not in CommonFeatures: Linux negotiates it whenever
	// it is offered, so a device offers it only when its options ask
	// (WithRingPacked).
	FeatureRingPacked Feature = 34
	// FeatureInOrder: the device uses buffers in the order they were made
	// available.
	FeatureInOrder Feature = 35
	// FeatureOrderPlatform: memory accesses need platform ordering (real
	// hardware devices); not for software devices.
	FeatureOrderPlatform Feature = 36
	// FeatureSRIOV: single root I/O virtualization (PCI).
	FeatureSRIOV Feature = 37
	// FeatureNotificationData: the driver passes extra data in its
	// notifications.
	FeatureNotificationData Feature = 38
	// FeatureNotifConfigData: the driver uses a device-provided value in
	// its notifications.
	FeatureNotifConfigData Feature = 39
	// FeatureRingReset: the driver can reset queues individually.
	FeatureRingReset Feature = 40
)

// Mask is the feature's bit in a 64-bit feature word.
func (f Feature) Mask() uint64 { return 1 << f }

// Has reports whether f is set in features.
func Has(features uint64, f Feature) bool { return features&f.Mask() != 0 }

// CommonFeatures are the common features every Flint device offers,
// because the queue implementation (virtio/queue) supports them for any
// device: VERSION_1, RING_INDIRECT_DESC and RING_EVENT_IDX. A device's
// Features is CommonFeatures plus its device-specific bits.
const CommonFeatures uint64 = 1<<FeatureVersion1 | 1<<FeatureRingIndirectDesc | 1<<FeatureRingEventIdx

// WithRingPacked returns features with FeatureRingPacked added when on:
// how a device's options (packed=on) offer the packed ring.
func WithRingPacked(features uint64, on bool) uint64 {
	if on {
		return features | FeatureRingPacked.Mask()
	}
	return features
}

// FeatureWord returns 32-bit window sel of features, as the driver reads
// it through MMIO DeviceFeaturesSel/DeviceFeatures or PCI
// device_feature_select/device_feature. Windows past 1 read 0.
func FeatureWord(features uint64, sel uint32) uint32 {
	if sel > 1 {
		return 0
	}
	return uint32(features >> (32 * sel))
}

// SetFeatureWord returns features with 32-bit window sel replaced by v, as
// the driver writes DriverFeaturesSel/DriverFeatures. Writes to windows
// past 1 are ignored.
func SetFeatureWord(features uint64, sel, v uint32) uint64 {
	if sel > 1 {
		return features
	}
	shift := 32 * sel
	return features&^(0xffffffff<<shift) | uint64(v)<<shift
}

// Negotiate checks the features a driver acknowledged against those the
// device offered, at FEATURES_OK: the driver may only accept offered
// features, and must accept VERSION_1 (Flint has no legacy interface).
// It returns the negotiated set (== acked) to pass to Device.AckFeatures
// and queue.Queue.SetFeatures.
func Negotiate(offered, acked uint64) (uint64, error) {
	if extra := acked &^ offered; extra != 0 {
		return 0, fmt.Errorf("virtio: driver accepted features %#x the device did not offer", extra)
	}
	if !Has(acked, FeatureVersion1) {
		return 0, fmt.Errorf("virtio: driver did not accept VERSION_1 (legacy drivers are not supported)")
	}
	return acked, nil
}

// DeviceID is a virtio device type (virtio 1.2 §5). Transports expose it
// (MMIO DeviceID, PCI device ID 0x1040+id, vhost-user by contract).
type DeviceID uint32

// Device IDs.
const (
	DeviceNet     DeviceID = 1
	DeviceBlock   DeviceID = 2
	DeviceConsole DeviceID = 3
	DeviceEntropy DeviceID = 4
	DeviceBalloon DeviceID = 5
	DeviceSCSI    DeviceID = 8
	Device9P      DeviceID = 9
	DeviceGPU     DeviceID = 16
	DeviceInput   DeviceID = 18
	DeviceVsock   DeviceID = 19
	DeviceFS      DeviceID = 26
	DevicePMEM    DeviceID = 27
)

// String names well-known device types.
func (id DeviceID) String() string {
	switch id {
	case DeviceNet:
		return "net"
	case DeviceBlock:
		return "block"
	case DeviceConsole:
		return "console"
	case DeviceEntropy:
		return "entropy"
	case DeviceBalloon:
		return "balloon"
	case DeviceSCSI:
		return "scsi"
	case Device9P:
		return "9p"
	case DeviceGPU:
		return "gpu"
	case DeviceInput:
		return "input"
	case DeviceVsock:
		return "vsock"
	case DeviceFS:
		return "fs"
	case DevicePMEM:
		return "pmem"
	}
	return fmt.Sprintf("device-%d", uint32(id))
}
