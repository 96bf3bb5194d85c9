package vhostuser

import (
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// packedDevice offers the packed ring on top of testDevice's features.
type packedDevice struct{ *testDevice }

func (d packedDevice) Features() uint64 { return virtio.WithRingPacked(d.testDevice.Features(), true) }

var packedFeatures = virtio.CommonFeatures | virtio.FeatureRingPacked.Mask()

func setFeaturesMsg(v uint64) *message {
	p := le64(v)
	return &message{hdr: header{Request: Request(vut.SetFeatures), Flags: FlagVersion, Size: uint32(len(p))}, payload: p}
}

// TestPackedNegotiation: a device that offers RING_PACKED has it in
// GET_FEATURES and accepts a frontend that acknowledges it; a device that
// does not offer it (net-backend's default) refuses such a frontend.
func TestPackedNegotiation(t *testing.T) {
	s, err := newSession(packedDevice{newTestDevice(t)}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.end()
	if !virtio.Has(s.offered(), virtio.FeatureRingPacked) || !virtio.Has(s.offered(), virtio.FeatureVersion1) {
		t.Fatalf("offered %#x", s.offered())
	}
	if err := s.handle(setFeaturesMsg(packedFeatures)); err != nil || !s.packed() {
		t.Fatalf("SET_FEATURES with RING_PACKED: %v (packed %v)", err, s.packed())
	}

	split, err := newSession(newTestDevice(t), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer split.end()
	if virtio.Has(split.offered(), virtio.FeatureRingPacked) {
		t.Fatalf("offered %#x without the device offering RING_PACKED", split.offered())
	}
	if err := split.handle(setFeaturesMsg(packedFeatures)); err == nil || !strings.Contains(err.Error(), "were not offered") {
		t.Fatalf("SET_FEATURES with RING_PACKED not offered: %v", err)
	}
}

// packedSession is a session on a one-ring packed test device (ring size
// 8) with packed rings negotiated, its memory table set and the ring's
// areas programmed at the very end of memory: the device area is the
// last 4 bytes, where a split used ring would not fit.
func packedSession(t *testing.T, features uint64) (*testDevice, *session, func(req, flags uint32, p []byte, fds ...int), int) {
	t.Helper()
	dev := &testDevice{sizes: []uint16{8}}
	s, err := newSession(packedDevice{dev}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.end)
	m, err := vut.NewMemory(1<<16, 0x100000, 0x7f0000000000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	run := handler(t, s)
	run(vut.SetFeatures, 0, le64(features))
	run(vut.SetMemTable, 0, vut.MemTable(1, m.Region()), m.FD)
	run(vut.SetVringNum, 0, enableMsg(0, 8))
	end := m.GuestBase + m.Size()
	desc, drv, devArea := end-8*16-16, end-8, end-queue.PackedEventBytes
	run(vut.SetVringAddr, 0, vut.VringAddr(0, 0, m.User(desc), m.User(devArea), m.User(drv), 0))
	kick, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(kick) })
	return dev, s, run, kick
}

// TestPackedBase: SET_VRING_BASE carries both packed positions (avail in
// bits 0-15, used in bits 16-31, each slot | wrap<<15), the ring starts
// there, and GET_VRING_BASE gives both back; a base of the avail half
// only (DPDK style) starts used at the avail position. A split session
// refuses a base above 0xffff.
func TestPackedBase(t *testing.T) {
	for _, c := range []struct {
		name             string
		base             uint32
		wantAvail, wantU uint16
	}{
		{"qemu-fresh", 0x80008000, 0x8000, 0x8000},
		{"both", 0x00018003, 0x8003, 0x0001}, // avail slot 3 wrap 1, used slot 1 wrap 0
		{"dpdk", 0x00000005, 0x0005, 0x0005}, // avail half only: used = avail
	} {
		t.Run(c.name, func(t *testing.T) {
			dev, s, run, kick := packedSession(t, packedFeatures)
			run(vut.SetVringBase, 0, enableMsg(0, c.base))
			run(vut.SetVringKick, 0, le64(0), kick)
			if !dev.active {
				t.Fatal("device not started on the packed ring")
			}
			q := dev.queues[0].Ring
			if !q.Packed() || q.Size() != 8 || q.NextAvail() != c.wantAvail || q.NextUsed() != c.wantU {
				t.Fatalf("queue packed %v size %d, positions %#x/%#x, want %#x/%#x", q.Packed(), q.Size(), q.NextAvail(), q.NextUsed(), c.wantAvail, c.wantU)
			}
			handler(t, s)(vut.GetVringBase, 0, enableMsg(0, 0))
			want := uint32(c.wantAvail) | uint32(c.wantU)<<16
			if got := s.vringBase(&s.rings[0]); got != want || dev.active {
				t.Fatalf("GET_VRING_BASE %#x, want %#x (device active %v)", got, want, dev.active)
			}
		})
	}
	t.Run("split-refuses", func(t *testing.T) {
		_, s, _, _ := packedSession(t, virtio.CommonFeatures)
		p := enableMsg(0, 0x10000)
		err := s.handle(&message{hdr: header{Request: Request(vut.SetVringBase), Flags: FlagVersion, Size: uint32(len(p))}, payload: p})
		if err == nil || !strings.Contains(err.Error(), "does not fit a split ring index") {
			t.Fatalf("split SET_VRING_BASE 0x10000: %v", err)
		}
	})
}
