package vhostuser_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/netdev"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestMemTableReplacedWhileRunning: a new memory table (QEMU sends one on
// memory hotplug) quiesces the device, remaps, and resumes the rings
// where they were.
func TestMemTableReplacedWhileRunning(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.postRx(4)
	g.send(1)
	h.be.inject(frame(2))
	g.recv()
	for range 3 {
		if err := g.f.Do(vut.SetMemTable, vut.MemTable(1, g.m.Region()), g.m.FD); err != nil {
			t.Fatal(err)
		}
	}
	g.send(3)
	h.be.inject(frame(4))
	if got := g.recv(); got[netdev.HdrLen+14] != 4 {
		t.Fatalf("received %x", got)
	}
	h.be.waitTx(t, 2)
	waitStats(t, h.dev, func(st netdev.Stats) bool { return st.RxPackets == 2 })
	// A table that no longer holds the rings ends the connection.
	other, err := vut.NewMemory(1<<20, 0x4000_0000, 0x4000_0000)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	g.f.Send(vut.SetMemTable, 0, vut.MemTable(1, other.Region()), other.FD)
	expectClosed(t, g.f)
	h.log.waitLog(t, "is not inside the memory table")
}

// TestUMLRebind: UML's driver unbind/rebind drops the rings without
// GET_VRING_BASE, then sends a new memory table and reprograms every ring
// from scratch (new addresses, base 0); the backend stops the old rings
// and serves the new ones.
func TestUMLRebind(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.postRx(2)
	g.send(1)
	f := g.f
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Do(vut.SetMemTable, vut.MemTable(2, g.m.Region()), g.m.FD))
	var rings []*vut.Ring
	for i := range 2 {
		r, err := vut.NewRing(g.m, 64, true, true)
		must(err)
		t.Cleanup(r.Close)
		must(f.SetVringFD(vut.SetVringCall, uint32(i), int(r.CallW.Fd())))
		r.CallW.Close()
		must(f.SetState(vut.SetVringNum, uint32(i), 64))
		must(f.SetState(vut.SetVringBase, uint32(i), 0))
		d, u, a := r.UserAddrs()
		must(f.Do(vut.SetVringAddr, vut.VringAddr(uint32(i), 0, d, u, a, ^uint64(0))))
		rings = append(rings, r)
	}
	h.log.waitLog(t, "ring reprogrammed while started")
	for i, r := range rings {
		must(f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())))
	}
	g.rx, g.tx = rings[0], rings[1]
	g.postRx(2)
	g.send(2)
	h.be.inject(frame(3))
	if got := g.recv(); got[netdev.HdrLen+14] != 3 {
		t.Fatalf("received %x", got)
	}
	h.be.waitTx(t, 2)
}

// TestResetOwner stops every ring; a new kick restarts them.
func TestResetOwner(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.send(1)
	if err := g.f.Do(vut.ResetOwner, nil); err != nil {
		t.Fatal(err)
	}
	h.log.waitLog(t, "vhost-user device stopped")
	base, err := g.f.GetVringBase(1)
	if err != nil || base != 1 {
		t.Fatalf("TX base %d: %v", base, err)
	}
	for i, r := range []*vut.Ring{g.rx, g.tx} {
		if err := g.f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())); err != nil {
			t.Fatal(err)
		}
	}
	g.send(2)
	h.be.waitTx(t, 2)
}

// TestCallFDChurn: many call fd swaps while running stay bounded (the
// retired fds are released by a quick restart) and interrupts keep
// arriving on the newest fd.
func TestCallFDChurn(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	var last *vut.Ring
	for range 40 {
		r, err := vut.NewRing(g.m, 1, false, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		if err := g.f.SetVringFD(vut.SetVringCall, 1, int(r.CallW.Fd())); err != nil {
			t.Fatal(err)
		}
		last = r
	}
	g.tx.EnableInterrupts()
	f := frame(1)
	a := g.buf()
	copy(g.m.Bytes(a, uint64(len(f))), f)
	g.tx.Add(vut.Buf{Addr: a, Len: uint32(len(f))})
	g.tx.PublishAndNotify()
	if !last.WaitSignal(5 * time.Second) {
		t.Fatal("no interrupt on the last call fd")
	}
}

// TestServeConnBusy: ServeConn refuses a second frontend while one is
// served, and returns nil when its frontend disconnects.
func TestServeConnBusy(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	f2, c2, err := vut.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if err := h.srv.ServeConn(context.Background(), c2); !errors.Is(err, vhostuser.ErrBusy) {
		t.Fatalf("ServeConn while busy: %v", err)
	}
	g.f.Close()
	h.waitIdle()
	f3, c3, err := vut.Pair()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.srv.ServeConn(context.Background(), c3) }()
	if _, err := f3.GetU64(vut.GetFeatures); err != nil {
		t.Fatal(err)
	}
	f3.Close()
	if err := <-done; err != nil {
		t.Fatalf("ServeConn after a clean disconnect: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := vhostuser.New(vhostuser.Config{}); err == nil {
		t.Fatal("no device accepted")
	}
}

func TestListenStaleSocket(t *testing.T) {
	path := t.TempDir() + "/s.sock"
	l, err := vhostuser.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vhostuser.Listen(path); err == nil {
		t.Fatal("a live socket was taken over")
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	l2, err := vhostuser.Listen(path) // stale: replaced
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
}
