package virtio

// The device kit: the glue every device on the engine needs around its
// per-chain work, written once. A device embeds a FeatureSet (Features,
// AckFeatures, Negotiated), keeps an Engines (its queues' engines,
// started at Activate and stopped at Reset, and their dump states) and a
// Tally (its counters), checks its options with QueueSize and answers
// ReadConfig with CopyConfig. Handlers whose work comes only with chains
// embed ChainsOnly. See virtio/rng for the smallest device built this way.

import (
	"fmt"
	"sync/atomic"

	"github.com/flintvm/flint/virtio/queue"
)

// FeatureSet is a device's feature negotiation: the features it offers
// and the set the driver last acknowledged. A device embeds it for
// Device.Features and Device.AckFeatures (a device with dependencies
// between its bits defines its own AckFeatures, calling CheckOffered and
// then the FeatureSet's), and calls ClearFeatures in Reset. Its methods
// are safe from any goroutine; the negotiated set is one atomic word.
type FeatureSet struct {
	device  string // error prefix: "virtio-blk"
	offered uint64
	acked   atomic.Uint64
}

// OfferFeatures sets what the device offers and the name its errors
// start with ("virtio-blk"). Call it once, in the device's constructor.
func (f *FeatureSet) OfferFeatures(device string, offered uint64) {
	f.device, f.offered = device, offered
}

// Features are the offered features.
func (f *FeatureSet) Features() uint64 { return f.offered }

// CheckOffered returns an error naming the device and the bits of
// negotiated it did not offer, nil if there are none.
func (f *FeatureSet) CheckOffered(negotiated uint64) error {
	if extra := negotiated &^ f.offered; extra != 0 {
		return fmt.Errorf("%s: features %#x were not offered", f.device, extra)
	}
	return nil
}

// AckFeatures accepts any subset of the offered features; it refuses a
// set with a bit the device did not offer (and keeps the previous one).
func (f *FeatureSet) AckFeatures(negotiated uint64) error {
	if err := f.CheckOffered(negotiated); err != nil {
		return err
	}
	f.acked.Store(negotiated)
	return nil
}

// Negotiated returns the features last accepted (0 after ClearFeatures).
func (f *FeatureSet) Negotiated() uint64 { return f.acked.Load() }

// ClearFeatures forgets the negotiated features (Device.Reset).
func (f *FeatureSet) ClearFeatures() { f.acked.Store(0) }

// QueueSize returns a device's queue size option: def when qs is 0, else
// qs if it is a power of two in [4, queue.MaxSize], else an error that
// starts with device ("virtio-rng").
func QueueSize(device string, qs, def uint16) (uint16, error) {
	if qs == 0 {
		qs = def
	}
	if qs < 4 || qs > queue.MaxSize || qs&(qs-1) != 0 {
		return 0, fmt.Errorf("%s: queue size %d is not a power of two in [4, %d]", device, qs, queue.MaxSize)
	}
	return qs, nil
}

// CopyConfig answers Device.ReadConfig from space, the whole
// configuration space: p gets the bytes at offset, zeros past its end.
func CopyConfig(p []byte, offset uint64, space []byte) {
	clear(p)
	if offset < uint64(len(space)) {
		copy(p, space[offset:])
	}
}

// ChainsOnly completes a Handler whose work comes only with chains (no
// backend to read or wait for): Next always pops, Wait is never called.
// Embed it and write Chain and Event.
type ChainsOnly struct{}

// Next always pops.
func (ChainsOnly) Next() Result { return Result{} }

// Wait is never called (Next never asks to wait); it reports true.
func (ChainsOnly) Wait(Activity) bool { return true }
