package vhostuser_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/netdev"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestUMLFlow negotiates as UML does and moves traffic both ways: a
// transmitted frame reaches the backend, a backend frame lands in a
// receive buffer with the call pipe written, and GET_VRING_BASE reports
// the buffers used.
func TestUMLFlow(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)

	for i := range 3 {
		g.send(byte(i))
	}
	h.be.waitTx(t, 3)
	for i, f := range h.be.sent() {
		if !bytes.Equal(f, frame(byte(i))) {
			t.Fatalf("frame %d at the backend: %x", i, f)
		}
	}

	g.postRx(8)
	g.rx.Signalled() // drain
	g.rx.EnableInterrupts()
	h.be.inject(frame(0xaa))
	if !g.rx.WaitSignal(5 * time.Second) {
		t.Fatal("the call pipe was not written")
	}
	got := g.recv()
	want := frame(0xaa)
	le := func(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
	if n := le(got[10:]); n != 1 {
		t.Fatalf("num_buffers %d", n)
	}
	copy(got[10:12], want[10:12])
	if !bytes.Equal(got, want) {
		t.Fatalf("received %x", got)
	}
	waitStats(t, h.dev, func(st netdev.Stats) bool { return st.RxPackets == 1 && st.TxPackets == 3 })

	// GET_VRING_BASE stops the rings: RX used one buffer of eight (the
	// device gives the others back), TX three chains.
	rx, err := g.f.GetVringBase(0)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := g.f.GetVringBase(1)
	if err != nil {
		t.Fatal(err)
	}
	if rx != 1 || tx != 3 {
		t.Fatalf("GET_VRING_BASE rx %d tx %d, want 1 and 3", rx, tx)
	}
}

// TestRestartRings: after GET_VRING_BASE the frontend restarts the rings
// from the reported bases (SET_VRING_BASE, SET_VRING_KICK) and traffic
// continues on the same rings.
func TestRestartRings(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.postRx(4)
	g.send(1)
	h.be.inject(frame(2))
	g.recv()
	for round := range 3 {
		for i, r := range []*vut.Ring{g.rx, g.tx} {
			base, err := g.f.GetVringBase(uint32(i))
			if err != nil {
				t.Fatal(err)
			}
			if err := g.f.SetState(vut.SetVringBase, uint32(i), base); err != nil {
				t.Fatal(err)
			}
			if err := g.f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())); err != nil {
				t.Fatal(err)
			}
		}
		g.send(byte(10 + round))
		h.be.inject(frame(byte(20 + round)))
		if got := g.recv(); got[netdev.HdrLen+14] != byte(20+round) {
			t.Fatalf("round %d: received %x", round, got)
		}
	}
	h.be.waitTx(t, 4)
	waitStats(t, h.dev, func(st netdev.Stats) bool { return st.RxPackets == 4 && st.TxPackets == 4 })
}

// TestReconnect: a frontend disconnects (the device is reset, memory
// unmapped) and a new one, with new memory, gets a working device.
func TestReconnect(t *testing.T) {
	h := newHarness(t)
	for round := range 3 {
		g := h.connectUML(0)
		g.postRx(2)
		g.send(byte(round))
		h.be.inject(frame(byte(0x40 + round)))
		if got := g.recv(); got[netdev.HdrLen+14] != byte(0x40+round) {
			t.Fatalf("round %d: received %x", round, got)
		}
		g.f.Close()
		h.log.waitLog(t, "vhost-user frontend disconnected")
		h.waitIdle()
	}
	h.be.waitTx(t, 3)
	if n := h.srv.Connections(); n != 3 {
		t.Fatalf("%d connections", n)
	}
}

// TestUserAddressTranslation: ring addresses are frontend user addresses,
// buffers guest-physical; the backend must translate the former only.
func TestUserAddressTranslation(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0x7f00_1234_0000)
	g.postRx(2)
	g.send(7)
	h.be.inject(frame(8))
	if got := g.recv(); got[netdev.HdrLen+14] != 8 {
		t.Fatalf("received %x", got)
	}
}

// TestSecondFrontendRefused: while one frontend is served another is
// closed at once; the first keeps working.
func TestSecondFrontendRefused(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	f2, err := vut.Dial(h.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	expectClosed(t, f2)
	h.log.waitLog(t, "refused a second frontend")
	g.send(1)
	h.be.waitTx(t, 1)
}

// TestShutdown: cancelling Serve closes the frontend's connection and
// resets the device.
func TestShutdown(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.send(1)
	h.stop()
	expectClosed(t, g.f)
	if h.dev.Negotiated() != 0 {
		t.Fatal("device not reset at shutdown")
	}
}

// TestQEMUFlow negotiates as QEMU does: PROTOCOL_FEATURES kept, so rings
// start disabled and run after SET_VRING_ENABLE; eventfd call fds; kick
// before call per ring; a call fd swapped while running.
func TestQEMUFlow(t *testing.T) {
	h := newHarness(t)
	f := h.dial()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Do(vut.SetOwner, nil))
	_, err := f.GetU64(vut.GetFeatures)
	must(err)
	must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck|vut.ProtocolConfig|vut.ProtocolBackendReq))
	f.ReplyAck = true
	n, err := f.GetU64(vut.GetQueueNum)
	must(err)
	if n != 2 {
		t.Fatalf("GET_QUEUE_NUM %d", n)
	}
	m, err := vut.NewMemory(4<<20, 0, 0x7000_0000)
	must(err)
	defer m.Close()
	must(f.SetMemTable(m.Region()))
	must(f.SetU64(vut.SetFeatures, guestFeatures|vut.ProtocolFeatures))
	g := &guest{t: t, f: f, m: m}
	rings := make([]*vut.Ring, 2)
	for i := range rings {
		r, err := vut.NewRing(m, 128, true, false)
		must(err)
		defer r.Close()
		rings[i] = r
		must(f.SetState(vut.SetVringNum, uint32(i), 128))
		must(f.SetState(vut.SetVringBase, uint32(i), 0))
		d, u, a := r.UserAddrs()
		must(f.Do(vut.SetVringAddr, vut.VringAddr(uint32(i), 0, d, u, a, 0)))
		must(f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())))
		must(f.SetVringFD(vut.SetVringCall, uint32(i), int(r.CallW.Fd())))
	}
	g.rx, g.tx = rings[0], rings[1]
	g.bufs = m.Alloc(1<<20, 4096)
	g.postRx(2)
	h.be.inject(frame(1))
	if _, _, err := g.rx.WaitUsed(200 * time.Millisecond); err == nil {
		t.Fatal("a disabled ring received a frame")
	}
	for i := range rings {
		must(f.SetState(vut.SetVringEnable, uint32(i), 1))
	}
	if got := g.recv(); got[netdev.HdrLen+14] != 1 {
		t.Fatalf("received %x", got)
	}
	// Swap the receive ring's call eventfd while the device runs.
	r2, err := vut.NewRing(m, 8, false, false)
	must(err)
	defer r2.Close()
	must(f.SetVringFD(vut.SetVringCall, 0, int(r2.CallW.Fd())))
	g.rx.EnableInterrupts()
	h.be.inject(frame(2))
	if !r2.WaitSignal(5 * time.Second) {
		t.Fatal("no interrupt on the new call fd")
	}
	if got := g.recv(); got[netdev.HdrLen+14] != 2 {
		t.Fatalf("received %x", got)
	}
	waitStats(t, h.dev, func(st netdev.Stats) bool { return st.RxPackets == 2 })
}

// TestBackendChannelConfigChange: with BACKEND_REQ, a link change reaches
// the frontend as BACKEND_CONFIG_CHANGE_MSG on the channel it gave (a
// pipe, as UML gives).
func TestBackendChannelConfigChange(t *testing.T) {
	h := newHarness(t)
	f := h.dial()
	f.Do(vut.SetOwner, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck|vut.ProtocolConfig|vut.ProtocolBackendReq))
	f.ReplyAck = true
	var p [2]int
	must(pipe(p[:]))
	defer closeFD(p[0])
	must(f.Do(vut.SetBackendReqFD, nil, p[1]))
	closeFD(p[1])
	m, err := vut.NewMemory(1<<20, 0, 0)
	must(err)
	defer m.Close()
	must(f.SetMemTable(m.Region()))
	must(f.SetU64(vut.SetFeatures, guestFeatures))
	for i := range 2 {
		r, err := vut.NewRing(m, 64, true, true)
		must(err)
		defer r.Close()
		d, u, a := r.UserAddrs()
		must(f.SetState(vut.SetVringNum, uint32(i), 64))
		must(f.Do(vut.SetVringAddr, vut.VringAddr(uint32(i), 0, d, u, a, 0)))
		must(f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())))
	}
	h.log.waitLog(t, "vhost-user device started")
	h.dev.SetLinkUp(false)
	msg := make([]byte, 12)
	n, err := readTimeout(p[0], msg, 5*time.Second)
	if err != nil || n != 12 {
		t.Fatalf("backend channel read %d: %v", n, err)
	}
	if want := vut.Message(2, 0, nil); !bytes.Equal(msg, want) {
		t.Fatalf("backend message %x, want %x", msg, want)
	}
	cfg, err := f.GetConfig(0, 8)
	must(err)
	if cfg[6]&1 != 0 {
		t.Fatalf("link still up in config %x", cfg)
	}
}
