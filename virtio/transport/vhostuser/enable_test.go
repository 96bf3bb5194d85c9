package vhostuser

import (
	"log/slog"
	"testing"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// enableSession is a session with PROTOCOL_FEATURES negotiated on a
// three-ring test device, its memory table set and every ring's
// addresses programmed; run hands it messages.
func enableSession(t *testing.T) (*testDevice, *session, []*vut.Ring, func(req, flags uint32, p []byte, fds ...int)) {
	t.Helper()
	dev := &testDevice{sizes: []uint16{256, 256, 256}}
	s, err := newSession(dev, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.end)
	m, err := vut.NewMemory(1<<20, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	run := handler(t, s)
	run(vut.SetFeatures, 0, le64(1<<32|1<<FeatureProtocolFeatures))
	run(vut.SetMemTable, 0, vut.MemTable(1, m.Region()), m.FD)
	var rings []*vut.Ring
	for i := range dev.sizes {
		r, err := vut.NewRing(m, 256, false, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		rings = append(rings, r)
		d, u, a := r.UserAddrs()
		run(vut.SetVringAddr, 0, vut.VringAddr(uint32(i), 0, d, u, a, 0))
	}
	return dev, s, rings, run
}

func enableMsg(i, on uint32) []byte {
	b := make([]byte, stateSize)
	encodeState(b, vringState{Index: i, Num: on})
	return b
}

// TestDisableRunningRing: disabling a ring the device runs on stops the
// device even while another enabled ring waits for its kick (QEMU
// restores a pair's enable before it starts the pair's rings), so the
// device never goes on using a ring the frontend disabled.
func TestDisableRunningRing(t *testing.T) {
	dev, s, rings, run := enableSession(t)
	for i := range 2 {
		run(vut.SetVringKick, 0, le64(uint64(i)), int(rings[i].Kick.Fd()))
		run(vut.SetVringEnable, 0, enableMsg(uint32(i), 1))
	}
	if !dev.active || s.act == nil || dev.queues[1].Ring == nil {
		t.Fatal("not running on rings 0 and 1")
	}
	n := dev.activations
	run(vut.SetVringEnable, 0, enableMsg(2, 1)) // ring 2 not started: no change
	if !dev.active || dev.activations != n {
		t.Fatalf("enabling a ring not started: active %v, %d activations", dev.active, dev.activations)
	}
	run(vut.SetVringEnable, 0, enableMsg(0, 0))
	if dev.active || s.act != nil {
		t.Fatalf("the device runs on ring 0 after SET_VRING_ENABLE 0 (queues %v)", dev.queues)
	}
	// Ring 2 started: the device runs on rings 1 and 2, not 0.
	run(vut.SetVringKick, 0, le64(2), int(rings[2].Kick.Fd()))
	if !dev.active || dev.queues[0].Ring != nil || dev.queues[1].Ring == nil || dev.queues[2].Ring == nil {
		t.Fatalf("after ring 2's kick: active %v, queues %v", dev.active, dev.queues)
	}
}

// TestStopDisabledRing: stopping a started ring the device does not run
// on (GET_VRING_BASE, a new kick or new addresses for a ring the
// frontend disabled: pair 2 after ethtool -L combined 1) leaves the
// device running on the enabled rings, and GET_VRING_BASE answers the
// disabled ring's base, which nothing advanced.
func TestStopDisabledRing(t *testing.T) {
	dev, s, rings, run := enableSession(t)
	run(vut.SetVringBase, 0, enableMsg(2, 7))
	for i := range 3 {
		run(vut.SetVringKick, 0, le64(uint64(i)), int(rings[i].Kick.Fd()))
	}
	run(vut.SetVringEnable, 0, enableMsg(0, 1))
	run(vut.SetVringEnable, 0, enableMsg(1, 1))
	if !dev.active || dev.queues[1].Ring == nil || dev.queues[2].Ring != nil {
		t.Fatalf("not running on rings 0 and 1 alone: queues %v", dev.queues)
	}
	n := dev.activations
	run(vut.SetVringKick, 0, le64(2), int(rings[2].Kick.Fd()))
	if !dev.active || dev.activations != n {
		t.Fatalf("a new kick for disabled ring 2: active %v, activations %d, want %d", dev.active, dev.activations, n)
	}
	if base := getBase(t, s, 2); base != 7 || !dev.active || dev.activations != n || s.rings[2].kick != nil {
		t.Fatalf("GET_VRING_BASE 2: base %d (want 7), active %v, activations %d (want %d)", base, dev.active, dev.activations, n)
	}
	// The running ring 0 stops the device.
	getBase(t, s, 0)
	if dev.active || s.act != nil {
		t.Fatal("GET_VRING_BASE 0 left the device running")
	}
}

// getBase sends GET_VRING_BASE for ring i and returns the base it
// answers (the session has no connection to reply on).
func getBase(t *testing.T, s *session, i uint32) uint16 {
	t.Helper()
	handler(t, s)(vut.GetVringBase, 0, enableMsg(i, 0))
	return s.rings[i].base
}
