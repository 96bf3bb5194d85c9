package virtio

import (
	"fmt"
	"strings"
)

// Status is the device status field (virtio 1.2 §2.1). The driver sets
// bits as it initializes the device; the device sets DEVICE_NEEDS_RESET.
type Status uint8

// Device status bits.
const (
	// StatusAcknowledge: the guest found the device.
	StatusAcknowledge Status = 1
	// StatusDriver: the guest knows how to drive the device.
	StatusDriver Status = 2
	// StatusDriverOK: the driver is set up and ready to drive the device.
	StatusDriverOK Status = 4
	// StatusFeaturesOK: the driver acknowledged the features it
	// understands; feature negotiation is complete.
	StatusFeaturesOK Status = 8
	// StatusDeviceNeedsReset: the device hit an error it cannot recover
	// from; set by the device (through its transport), never the driver.
	StatusDeviceNeedsReset Status = 64
	// StatusFailed: the driver gave up on the device.
	StatusFailed Status = 128
)

// Has reports whether all of bits are set in s.
func (s Status) Has(bits Status) bool { return s&bits == bits }

var statusNames = []struct {
	bit  Status
	name string
}{
	{StatusAcknowledge, "ACKNOWLEDGE"},
	{StatusDriver, "DRIVER"},
	{StatusFeaturesOK, "FEATURES_OK"},
	{StatusDriverOK, "DRIVER_OK"},
	{StatusDeviceNeedsReset, "DEVICE_NEEDS_RESET"},
	{StatusFailed, "FAILED"},
}

// String lists the set bits, e.g. "ACKNOWLEDGE|DRIVER".
func (s Status) String() string {
	if s == 0 {
		return "0"
	}
	var parts []string
	rest := s
	for _, n := range statusNames {
		if s&n.bit != 0 {
			parts = append(parts, n.name)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint8(rest)))
	}
	return strings.Join(parts, "|")
}

// StatusStep is what a transport must do for a driver's status write.
type StatusStep int

// Status steps, in the order of the initialization sequence.
const (
	// StepNone: store the new status; nothing else to do.
	StepNone StatusStep = iota
	// StepReset: the driver wrote 0. Call Device.Reset, reset the queues
	// and the transport's registers (status reads 0 once that is done).
	StepReset
	// StepFeaturesOK: the driver set FEATURES_OK. Negotiate the driver's
	// features and call Device.AckFeatures; on error store the status
	// without FEATURES_OK.
	StepFeaturesOK
	// StepDriverOK: the driver set DRIVER_OK. Validate the enabled queues
	// and call Device.Activate; on error set DEVICE_NEEDS_RESET.
	StepDriverOK
	// StepFailed: the driver set FAILED. Store the status without the
	// FEATURES_OK and DRIVER_OK bits this write adds (FailedStatus): a
	// driver that gave up negotiates nothing and activates nothing. The
	// device may be stopped; a reset follows before any reuse.
	StepFailed
)

// NextStatus checks a driver's write of status new over current status
// old and says what the transport must do. A driver may only add bits
// (writing 0 resets), must follow the order ACKNOWLEDGE, DRIVER,
// FEATURES_OK, DRIVER_OK (§3.1.1), and cannot set DEVICE_NEEDS_RESET
// (it may echo it back while it is set). One write that sets several
// bits follows the same rules as several writes: FEATURES_OK and
// DRIVER_OK cannot come in one write (negotiation comes first), and a
// write that sets FAILED negotiates and activates nothing (StepFailed;
// see FailedStatus). Once FAILED is set only a reset brings FEATURES_OK
// or DRIVER_OK. A write that is not a legal step returns an error; the
// transport should then ignore the write, or treat the driver as failed.
func NextStatus(old, new Status) (StatusStep, error) {
	if new == 0 {
		return StepReset, nil
	}
	if cleared := old &^ new &^ StatusDeviceNeedsReset; cleared != 0 {
		return StepNone, fmt.Errorf("virtio status %v -> %v clears %v without a reset", old, new, cleared)
	}
	added := new &^ old
	if added&StatusDeviceNeedsReset != 0 {
		return StepNone, fmt.Errorf("virtio status %v -> %v: the driver cannot set DEVICE_NEEDS_RESET", old, new)
	}
	order := []Status{StatusAcknowledge, StatusDriver, StatusFeaturesOK, StatusDriverOK}
	for i, bit := range order[1:] {
		if new&bit != 0 && new&order[i] == 0 {
			return StepNone, fmt.Errorf("virtio status %v: %v set before %v", new, bit, order[i])
		}
	}
	switch {
	case added&StatusFailed != 0:
		return StepFailed, nil
	case old&StatusFailed != 0 && added&(StatusFeaturesOK|StatusDriverOK) != 0:
		return StepNone, fmt.Errorf("virtio status %v -> %v after FAILED: the driver must reset the device first", old, new)
	case added&StatusFeaturesOK != 0 && added&StatusDriverOK != 0:
		return StepNone, fmt.Errorf("virtio status %v -> %v sets FEATURES_OK and DRIVER_OK at once", old, new)
	case added&StatusFeaturesOK != 0:
		return StepFeaturesOK, nil
	case added&StatusDriverOK != 0:
		return StepDriverOK, nil
	}
	return StepNone, nil
}

// FailedStatus is the status a transport stores for a write of new over
// old that NextStatus answered StepFailed: new without the FEATURES_OK
// and DRIVER_OK bits the write adds, since those steps did not happen.
func FailedStatus(old, new Status) Status {
	return new &^ (new &^ old & (StatusFeaturesOK | StatusDriverOK))
}
