package vhostuser

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestStalledMessage: a frontend that stops halfway through a message is
// dropped after msgTimeout; one that is silent between messages is not.
func TestStalledMessage(t *testing.T) {
	old := msgTimeout
	msgTimeout = 100 * time.Millisecond
	defer func() { msgTimeout = old }()
	srv, err := New(Config{Device: newTestDevice(t), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f, c, err := vut.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), c) }()
	time.Sleep(300 * time.Millisecond) // idle between messages: fine
	if _, err := f.GetU64(vut.GetFeatures); err != nil {
		t.Fatal(err)
	}
	f.SendRaw(vut.Message(vut.SetFeatures, 0, make([]byte, 8))[:14])
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("ServeConn: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled message was not dropped")
	}
}

// TestPageMisalignedRegion: a region whose mmap offset is not page
// aligned is mapped from the page below and sliced.
func TestPageMisalignedRegion(t *testing.T) {
	m, err := vut.NewMemory(64<<10, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	copy(m.Host[0x1234:], "hello")
	tab, err := mapMemTable([]memRegionDesc{{GuestAddr: 0x10000, Size: 0x2000, UserAddr: 0x7000_0000, MmapOffset: 0x1234}}, []int{m.FD})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.close()
	b, err := tab.m.Slice(0x10000, 5)
	if err != nil || string(b) != "hello" {
		t.Fatalf("%q %v", b, err)
	}
	for _, tc := range []struct {
		ua, n uint64
		ok    bool
		gpa   uint64
	}{
		{0x7000_0000, 0x2000, true, 0x10000},
		{0x7000_1000, 0x1000, true, 0x11000},
		{0x7000_1000, 0x1001, false, 0},
		{0x6fff_ffff, 1, false, 0},
		{0x7000_2000, 1, false, 0},
		{^uint64(0), 2, false, 0},
	} {
		gpa, ok := tab.userToGuest(tc.ua, tc.n)
		if ok != tc.ok || gpa != tc.gpa {
			t.Errorf("userToGuest(%#x, %#x) = %#x, %v", tc.ua, tc.n, gpa, ok)
		}
	}
}

// TestActivateRetried: a device that refuses the rings it got (a required
// queue missing) is activated once more rings start.
func TestActivateRetried(t *testing.T) {
	dev := newTestDevice(t)
	s, err := newSession(dev, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.end()
	m, err := vut.NewMemory(1<<20, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	run := handler(t, s)
	run(vut.SetFeatures, 0, le64(1<<32))
	run(vut.SetMemTable, 0, vut.MemTable(1, m.Region()), m.FD)
	var rings []*vut.Ring
	for i := range 2 {
		r, err := vut.NewRing(m, 256, false, false)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rings = append(rings, r)
		d, u, a := r.UserAddrs()
		run(vut.SetVringAddr, 0, vut.VringAddr(uint32(i), 0, d, u, a, 0))
	}
	dev.activateErr = errTest
	run(vut.SetVringKick, 0, le64(0), int(rings[0].Kick.Fd()))
	if dev.activations != 0 || s.act != nil {
		t.Fatal("activated with a ring not started")
	}
	dev.activateErr = nil
	run(vut.SetVringKick, 0, le64(1), int(rings[1].Kick.Fd()))
	if dev.activations != 1 || len(dev.queues) != 2 || dev.queues[1].Ring == nil || s.act == nil {
		t.Fatalf("activations %d queues %v", dev.activations, dev.queues)
	}
	// GET_VRING_BASE stops the device and the ring, until a new kick.
	run(vut.GetVringBase, 0, make([]byte, 8))
	if dev.active || s.act != nil || s.rings[0].kick != nil {
		t.Fatal("GET_VRING_BASE did not stop the device and ring 0")
	}
}
