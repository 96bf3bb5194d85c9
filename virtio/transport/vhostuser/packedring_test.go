package vhostuser_test

// Packed virtqueues (VIRTIO_F_RING_PACKED) over vhost-user, end to end
// through the Server: a virtio-net device that offers them, a frontend
// whose packed RX and TX rings (queuetest's PackedDriver) lie in the
// memfd it shares, small rings so the wrap counters flip, and ring
// restarts through GET_VRING_BASE / SET_VRING_BASE in QEMU's encoding
// (avail | used<<16) and DPDK's (the avail half only).

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/netdev"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

const packedRingSize = 4

// packedGuest is a frontend with packed RX (0) and TX (1) rings.
type packedGuest struct {
	t     *testing.T
	f     *vut.Frontend
	m     *vut.Memory
	dev   *netdev.Device
	be    *fakeBackend
	d     [2]*qt.PackedDriver
	kick  [2]int // the frontend's kick eventfds (current ones)
	call  [2]int
	sent  int // frames the backend has received
	posts int // buffers each ring has taken so far
}

func (g *packedGuest) must(err error) {
	g.t.Helper()
	if err != nil {
		g.t.Fatal(err)
	}
}

func (g *packedGuest) eventfd() int {
	g.t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	g.must(err)
	g.t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// connectPacked serves a packed-capable virtio-net device and connects
// to it as QEMU does: PROTOCOL_FEATURES kept, RING_PACKED acknowledged,
// per ring SET_VRING_NUM, SET_VRING_BASE 0x80008000 (a fresh ring, both
// wrap counters 1), SET_VRING_ADDR with the driver and device areas as
// avail and used, call and kick eventfds, SET_VRING_ENABLE 1.
func connectPacked(t *testing.T) *packedGuest {
	be := newFake()
	dev, err := netdev.New(be, netdev.Options{MAC: testMAC, MTU: 1500,
		Features: virtio.WithRingPacked(netdev.DefaultFeatures, true)})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	srv, err := vhostuser.New(vhostuser.Config{Device: dev, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	f, err := vut.Dial(serveOn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	g := &packedGuest{t: t, f: f, dev: dev, be: be}
	g.must(f.Do(vut.SetOwner, nil))
	feat, err := f.GetU64(vut.GetFeatures)
	g.must(err)
	if !virtio.Has(feat, virtio.FeatureRingPacked) {
		t.Fatalf("GET_FEATURES %#x lacks RING_PACKED", feat)
	}
	g.must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck))
	f.ReplyAck = true
	neg := guestFeatures | virtio.FeatureRingPacked.Mask()
	g.must(f.SetU64(vut.SetFeatures, neg|vut.ProtocolFeatures))

	g.m, err = vut.NewMemory(4<<20, 0x100000, 0x7f1200000000)
	g.must(err)
	t.Cleanup(g.m.Close)
	g.must(f.Do(vut.SetMemTable, vut.MemTable(1, g.m.Region()), g.m.FD))
	for i := range 2 {
		const chunk = 1 << 20
		gpa := g.m.Alloc(chunk, 4096)
		g.d[i], err = qt.NewPackedIn(qt.Config{Size: packedRingSize, MemBase: gpa, Features: neg}, g.m.M, g.m.Bytes(gpa, chunk))
		g.must(err)
		c := g.d[i].Config()
		idx := uint32(i)
		g.must(f.SetState(vut.SetVringNum, idx, packedRingSize))
		g.must(f.SetState(vut.SetVringBase, idx, 0x80008000))
		// SET_VRING_ADDR's order: desc, used (the device area), avail
		// (the driver area); user addresses.
		g.must(f.Do(vut.SetVringAddr, vut.VringAddr(idx, 0, g.m.User(c.DescAddr), g.m.User(c.UsedAddr), g.m.User(c.AvailAddr), 0)))
		g.call[i] = g.eventfd()
		g.must(f.SetVringFD(vut.SetVringCall, idx, g.call[i]))
		g.kick[i] = g.eventfd()
		g.must(f.SetVringFD(vut.SetVringKick, idx, g.kick[i]))
		g.must(f.SetState(vut.SetVringEnable, idx, 1))
	}
	return g
}

// notify publishes ring i's new buffers and kicks it (always: a spurious
// kick is harmless, and the test does not depend on suppression).
func (g *packedGuest) notify(i int) {
	g.d[i].Kick()
	_, err := unix.Write(g.kick[i], []byte{1, 0, 0, 0, 0, 0, 0, 0})
	g.must(err)
}

// waitUsed polls ring i for its next used descriptor.
func (g *packedGuest) waitUsed(i int) qt.Used {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if u, ok := g.d[i].Used(); ok {
			return u
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("ring %d: no used descriptor (driver at avail %#x, used %#x)", i, g.d[i].AvailPos(), g.d[i].UsedPos())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// traffic moves n frames each way, one buffer at a time, and checks each.
func (g *packedGuest) traffic(n int, tag byte) {
	g.t.Helper()
	for k := range n {
		id := tag + byte(k)
		// TX: the frame reaches the backend and its buffer comes back.
		_, err := g.d[1].Add(qt.Buf{Data: frame(id)})
		g.must(err)
		g.notify(1)
		g.sent++
		g.be.waitTx(g.t, g.sent)
		if got := g.be.sent()[g.sent-1]; !bytes.Equal(got, frame(id)) {
			g.t.Fatalf("TX frame %#x at the backend: %x", id, got)
		}
		g.waitUsed(1)
		// RX: a backend frame lands in a posted buffer.
		_, err = g.d[0].Add(qt.Buf{Len: 2048, Write: true})
		g.must(err)
		g.notify(0)
		g.be.inject(frame(id))
		u := g.waitUsed(0)
		got, want := g.d[0].Written(u), frame(id)
		if len(got) != len(want) || got[10] != 1 || got[11] != 0 { // num_buffers 1
			g.t.Fatalf("RX frame %#x: %x", id, got)
		}
		copy(got[10:12], want[10:12])
		if !bytes.Equal(got, want) {
			g.t.Fatalf("RX frame %#x: %x", id, got)
		}
		g.posts++
	}
}

// pos is the packed position after n buffers of one slot each.
func pos(n int) uint32 {
	wrap := uint32(1 ^ (n/packedRingSize)&1)
	return uint32(n%packedRingSize) | wrap<<15
}

// stopRings sends GET_VRING_BASE for both rings and checks the answers
// are avail | used<<16 at the driver's positions (the rings are
// quiescent: every buffer came back).
func (g *packedGuest) stopRings() [2]uint32 {
	g.t.Helper()
	var bases [2]uint32
	for i := range 2 {
		b, err := g.f.GetVringBase(uint32(i))
		g.must(err)
		want := pos(g.posts) | pos(g.posts)<<16
		drv := uint32(g.d[i].AvailPos()) | uint32(g.d[i].UsedPos())<<16
		if b != want || drv != want {
			g.t.Fatalf("ring %d after %d buffers: GET_VRING_BASE %#x, want %#x (driver %#x)", i, g.posts, b, want, drv)
		}
		bases[i] = b
	}
	return bases
}

// restart starts both rings again at the given bases with new kicks.
func (g *packedGuest) restart(bases [2]uint32) {
	g.t.Helper()
	for i := range 2 {
		g.must(g.f.SetState(vut.SetVringBase, uint32(i), bases[i]))
		g.kick[i] = g.eventfd()
		g.must(g.f.SetVringFD(vut.SetVringKick, uint32(i), g.kick[i]))
	}
}

// TestPackedDataPath: frames both ways over packed rings of 4 slots
// through the server, wrapping each ring (wrap counters 1 -> 0 -> 1);
// GET_VRING_BASE answers avail | used<<16 with the wrap counters; the
// rings restart at those bases (QEMU style, both halves) and traffic
// continues across another wrap; then a restart with the avail half only
// (DPDK style, used = avail) on the quiescent rings works too.
func TestPackedDataPath(t *testing.T) {
	g := connectPacked(t)
	g.traffic(6, 0x10) // slot 2, wrap counter 0
	bases := g.stopRings()
	if bases[0] != 0x00020002 {
		t.Fatalf("bases %#x", bases)
	}
	g.restart(bases)
	g.traffic(5, 0x20) // 11 buffers: back to wrap counter 1 at 8, slot 3
	bases = g.stopRings()
	if bases[0] != 0x80038003 {
		t.Fatalf("bases %#x", bases)
	}
	g.restart([2]uint32{bases[0] & 0xffff, bases[1] & 0xffff})
	g.traffic(3, 0x30) // 14 buffers: wrap counter 0 again at 12, slot 2
	if b := g.stopRings(); b[0] != 0x00020002 {
		t.Fatalf("bases %#x", b)
	}
}
