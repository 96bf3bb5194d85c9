package vhostuser

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/flintvm/flint/virtio"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// packedDevice offers the packed ring on top of testDevice's features.
type packedDevice struct{ *testDevice }

func (d packedDevice) Features() uint64 { return virtio.WithRingPacked(d.testDevice.Features(), true) }

// TestPackedRefused: vhost-user carries split rings only, so a device
// that offers RING_PACKED has it hidden from GET_FEATURES, and a
// frontend that acknowledges it anyway is refused with a message that
// says why.
func TestPackedRefused(t *testing.T) {
	s, err := newSession(packedDevice{newTestDevice(t)}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.end()
	if virtio.Has(s.offered(), virtio.FeatureRingPacked) || !virtio.Has(s.offered(), virtio.FeatureVersion1) {
		t.Fatalf("offered %#x", s.offered())
	}
	p := le64(virtio.CommonFeatures | virtio.FeatureRingPacked.Mask())
	msg := &message{hdr: header{Request: Request(vut.SetFeatures), Flags: FlagVersion, Size: uint32(len(p))}, payload: p}
	if err := s.handle(msg); err == nil || !strings.Contains(err.Error(), "RING_PACKED is not supported over vhost-user") {
		t.Fatalf("SET_FEATURES with RING_PACKED: %v", err)
	}
}
