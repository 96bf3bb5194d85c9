package virtio_test

import (
	"testing"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

func TestNextStatus(t *testing.T) {
	const (
		A  = virtio.StatusAcknowledge
		D  = virtio.StatusDriver
		F  = virtio.StatusFeaturesOK
		OK = virtio.StatusDriverOK
		NR = virtio.StatusDeviceNeedsReset
		X  = virtio.StatusFailed
	)
	for _, tc := range []struct {
		old, new virtio.Status
		step     virtio.StatusStep
		bad      bool
	}{
		{0, 0, virtio.StepReset, false},
		{A | D | F | OK, 0, virtio.StepReset, false},
		{0, A, virtio.StepNone, false},
		{A, A | D, virtio.StepNone, false},
		{A | D, A | D | F, virtio.StepFeaturesOK, false},
		{A | D | F, A | D | F | OK, virtio.StepDriverOK, false},
		{A | D | F | OK, A | D | F | OK, virtio.StepNone, false},
		{A | D, A | D | X, virtio.StepFailed, false},
		{0, X, virtio.StepFailed, false},
		{0, A | D | F | X, virtio.StepFailed, false}, // issue 13 finding 9: FAILED negotiates nothing
		{A | D | F | X, A | D | F | OK | X, 0, true}, // no DRIVER_OK after FAILED
		{A | D | X, A | D | F | X, 0, true},          // nor FEATURES_OK
		{A | D | F | OK | X, A | D | F | OK | X, virtio.StepNone, false},
		{0, A | D | F | OK | X, virtio.StepFailed, false},                  // stored as A|D|X
		{0, A | OK, 0, true},                                               // DRIVER_OK without FEATURES_OK
		{A | D | F | OK | NR, A | D | F | OK | NR, virtio.StepNone, false}, // echo of NEEDS_RESET
		{0, D, 0, true},                                // DRIVER before ACKNOWLEDGE
		{A, A | F, 0, true},                            // FEATURES_OK before DRIVER
		{A | D, A | D | OK, 0, true},                   // DRIVER_OK before FEATURES_OK
		{A | D, A | D | F | OK, 0, true},               // both at once
		{A | D | F, A | D, 0, true},                    // clearing a bit
		{A | D | F | OK, A | D | F | OK | NR, 0, true}, // driver sets NEEDS_RESET
	} {
		step, err := virtio.NextStatus(tc.old, tc.new)
		if (err != nil) != tc.bad || (!tc.bad && step != tc.step) {
			t.Errorf("NextStatus(%v, %v) = %v, %v", tc.old, tc.new, step, err)
		}
	}
	for _, tc := range []struct{ old, new, want virtio.Status }{
		{0, A | D | F | X, A | D | X},
		{A | D | F, A | D | F | X, A | D | F | X},
		{A | D | F, A | D | F | OK | X, A | D | F | X},
		{A | D | F | OK, A | D | F | OK | X, A | D | F | OK | X},
	} {
		if got := virtio.FailedStatus(tc.old, tc.new); got != tc.want {
			t.Errorf("FailedStatus(%v, %v) = %v, want %v", tc.old, tc.new, got, tc.want)
		}
	}
	if s := (A | D | 0x10).String(); s != "ACKNOWLEDGE|DRIVER|0x10" {
		t.Errorf("String = %q", s)
	}
	if !(A | D).Has(D) || (A | D).Has(D|F) {
		t.Error("Has")
	}
}

func TestFeatureWordsAndNegotiate(t *testing.T) {
	f := virtio.CommonFeatures | 1<<5
	if virtio.FeatureWord(f, 0) != 1<<28|1<<29|1<<5 || virtio.FeatureWord(f, 1) != 1 || virtio.FeatureWord(f, 2) != 0 {
		t.Fatal("FeatureWord")
	}
	var acked uint64
	acked = virtio.SetFeatureWord(acked, 1, 1)
	acked = virtio.SetFeatureWord(acked, 0, 1<<29|1<<5)
	acked = virtio.SetFeatureWord(acked, 7, 0xffffffff)
	if acked != 1<<32|1<<29|1<<5 {
		t.Fatalf("SetFeatureWord = %#x", acked)
	}
	if n, err := virtio.Negotiate(f, acked); err != nil || n != acked {
		t.Fatalf("Negotiate = %#x, %v", n, err)
	}
	if _, err := virtio.Negotiate(f, acked|1<<6); err == nil {
		t.Fatal("accepted an unoffered feature")
	}
	if _, err := virtio.Negotiate(f, 1<<5); err == nil {
		t.Fatal("accepted a legacy driver")
	}
	if !virtio.Has(f, virtio.FeatureRingEventIdx) || virtio.Has(f, virtio.FeatureRingPacked) {
		t.Fatal("Has")
	}
	if virtio.DeviceNet.String() != "net" || virtio.DeviceID(99).String() != "device-99" {
		t.Fatal("DeviceID.String")
	}
}

// TestQueueAgreesOnRingFeatureBits: queue repeats the ring feature bit
// numbers (it cannot import virtio); they must stay equal.
func TestQueueAgreesOnRingFeatureBits(t *testing.T) {
	q, _ := queue.New(8)
	if err := q.SetFeatures(virtio.FeatureRingEventIdx.Mask()); err != nil || !q.EventIdx() || q.IndirectDesc() {
		t.Fatal("EVENT_IDX bit disagrees")
	}
	if err := q.SetFeatures(virtio.FeatureRingIndirectDesc.Mask()); err != nil || q.EventIdx() || !q.IndirectDesc() {
		t.Fatal("INDIRECT_DESC bit disagrees")
	}
	if err := q.SetFeatures(virtio.FeatureRingPacked.Mask()); err != nil || !q.Packed() {
		t.Fatal("RING_PACKED bit disagrees")
	}
}
