package vhostuser_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/netdev"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// fakeBackend is virtiotest's NetBackend (the one fake virtio-net
// backend) under the names these tests use.
type fakeBackend struct{ *virtiotest.NetBackend }

func newFake() *fakeBackend { return &fakeBackend{virtiotest.NewNetBackend()} }

func (b *fakeBackend) inject(frame []byte)        { b.Inject(frame) }
func (b *fakeBackend) sent() [][]byte             { return b.Sent() }
func (b *fakeBackend) waitTx(t testing.TB, n int) { t.Helper(); b.WaitSent(t, n) }

// waitStats waits until cond holds for the device's counters (they are
// published per batch and may lag).
func waitStats(t testing.TB, d *netdev.Device, cond func(netdev.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := d.Stats()
		if cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// logBuffer collects a test's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count is how many times s appears in the log.
func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

// waitCount waits until s appears in the log more than n times.
func (l *logBuffer) waitCount(t testing.TB, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.count(s) <= n {
		if time.Now().After(deadline) {
			t.Fatalf("log has %q only %d times:\n%s", s, l.count(s), l.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitLog waits for s to appear in the log.
func (l *logBuffer) waitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q:\n%s", s, l.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Features a Linux guest negotiates without GSO (so that 2 KiB receive
// buffers hold any frame).
var guestFeatures = virtio.CommonFeatures | netdev.FeatureMrgRxbuf.Mask() | netdev.FeatureMAC.Mask() |
	netdev.FeatureMTU.Mask() | netdev.FeatureStatus.Mask() | netdev.FeatureCsum.Mask() |
	netdev.FeatureGuestCsum.Mask()

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// harness is a Server serving a virtio-net device over a fake backend on
// a unix socket.
type harness struct {
	t      testing.TB
	srv    *vhostuser.Server
	dev    *netdev.Device
	be     *fakeBackend
	log    *logBuffer
	path   string
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, be: newFake(), log: &logBuffer{}}
	var err error
	h.dev, err = netdev.New(h.be, netdev.Options{MAC: testMAC, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.srv, err = vhostuser.New(vhostuser.Config{Device: h.dev, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	h.path = filepath.Join(t.TempDir(), "net.sock")
	l, err := vhostuser.Listen(h.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.srv.Serve(ctx, l) }()
	t.Cleanup(h.stop)
	return h
}

// serveOn serves srv on a fresh socket until the test ends (then it
// cancels Serve and waits for it) and returns the socket's path.
func serveOn(t testing.TB, srv *vhostuser.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := vhostuser.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return path
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("Serve did not return after cancel")
	}
}

// waitIdle waits until no frontend is connected.
func (h *harness) waitIdle() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.Connected() {
		if time.Now().After(deadline) {
			h.t.Fatal("server still serving the previous frontend")
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) dial() *vut.Frontend {
	h.t.Helper()
	h.waitIdle()
	f, err := vut.Dial(h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { f.Close() })
	return f
}

// guest is a frontend with its memory and the device's two rings.
type guest struct {
	t      testing.TB
	f      *vut.Frontend
	m      *vut.Memory
	rx, tx *vut.Ring
	errFD  int
	bufs   uint64 // next receive/transmit buffer area
}

const ringSize = 256

// connectUML connects as a UML virtio_uml frontend that drops
// PROTOCOL_FEATURES (the variant the project's FACTS describe; Debian's
// UML 6.1, which keeps it and sends SET_VRING_ENABLE, is TestUML's):
// SET_OWNER, GET_FEATURES, protocol features (REPLY_ACK from then on),
// GET_CONFIG for MAC and MTU, SET_FEATURES twice without
// PROTOCOL_FEATURES, one memory region padded to two slots, then per ring
// SET_VRING_CALL (a pipe), SET_VRING_NUM 256, SET_VRING_BASE 0,
// SET_VRING_ADDR (log -1), and finally the kicks, with no
// SET_VRING_ENABLE. Guest and user addresses are equal, as in UML, unless
// userBase is given.
func (h *harness) connectUML(userBase uint64) *guest {
	t := h.t
	t.Helper()
	f := h.dial()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Do(vut.SetOwner, nil))
	feat, err := f.GetU64(vut.GetFeatures)
	must(err)
	if feat&vut.ProtocolFeatures == 0 || feat&h.dev.Features() != h.dev.Features() {
		t.Fatalf("GET_FEATURES %#x, device offers %#x", feat, h.dev.Features())
	}
	pf, err := f.GetU64(vut.GetProtocolFeatures)
	must(err)
	want := uint64(vut.ProtocolReplyAck | vut.ProtocolConfig | vut.ProtocolBackendReq)
	if pf&want != want {
		t.Fatalf("protocol features %#x lack %#x", pf, want)
	}
	must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck|vut.ProtocolConfig))
	f.ReplyAck = true
	cfg, err := f.GetConfig(0, 12)
	must(err)
	if !bytes.Equal(cfg[:6], testMAC[:]) || binary.LittleEndian.Uint16(cfg[10:]) != 1500 {
		t.Fatalf("config space %x", cfg)
	}
	must(f.SetU64(vut.SetFeatures, guestFeatures))
	must(f.SetU64(vut.SetFeatures, guestFeatures))

	const base = 0x100000
	if userBase == 0 {
		userBase = base
	}
	m, err := vut.NewMemory(4<<20, base, userBase)
	must(err)
	t.Cleanup(m.Close)
	must(f.Do(vut.SetMemTable, vut.MemTable(2, m.Region()), m.FD))
	g := &guest{t: t, f: f, m: m, errFD: -1}
	for i := range 2 {
		r, err := vut.NewRing(m, ringSize, true, true)
		must(err)
		t.Cleanup(r.Close)
		must(f.SetVringFD(vut.SetVringCall, uint32(i), int(r.CallW.Fd())))
		r.CallW.Close() // UML keeps only the read end
		must(f.SetState(vut.SetVringNum, uint32(i), ringSize))
		must(f.SetState(vut.SetVringBase, uint32(i), 0))
		d, u, a := r.UserAddrs()
		must(f.Do(vut.SetVringAddr, vut.VringAddr(uint32(i), 0, d, u, a, ^uint64(0))))
		if i == 0 {
			g.rx = r
		} else {
			g.tx = r
		}
	}
	g.bufs = m.Alloc(2<<20, 4096)
	for i, r := range []*vut.Ring{g.rx, g.tx} {
		must(f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())))
	}
	return g
}

// buf returns a fresh 2 KiB buffer's guest address.
func (g *guest) buf() uint64 {
	a := g.bufs
	g.bufs += 2048
	return a
}

// frame is a virtio-net header (12 zero bytes) and a minimal Ethernet
// frame tagged with n.
func frame(n byte) []byte {
	f := make([]byte, netdev.HdrLen+60)
	e := f[netdev.HdrLen:]
	copy(e[0:6], testMAC[:])
	copy(e[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	e[12], e[13] = 0x88, 0xb5 // local experimental ethertype
	for i := 14; i < len(e); i++ {
		e[i] = n
	}
	return f
}

// send transmits one frame from the guest and waits for its completion.
func (g *guest) send(n byte) {
	g.t.Helper()
	f := frame(n)
	a := g.buf()
	copy(g.m.Bytes(a, uint64(len(f))), f)
	if _, err := g.tx.Add(vut.Buf{Addr: a, Len: uint32(len(f))}); err != nil {
		g.t.Fatal(err)
	}
	if err := g.tx.PublishAndNotify(); err != nil {
		g.t.Fatal(err)
	}
	if _, _, err := g.tx.WaitUsed(5 * time.Second); err != nil {
		g.t.Fatalf("TX completion: %v", err)
	}
}

// postRx posts n receive buffers of 2 KiB and kicks the receive ring.
func (g *guest) postRx(n int) {
	g.t.Helper()
	for range n {
		if _, err := g.rx.Add(vut.Buf{Addr: g.buf(), Len: 2048, Write: true}); err != nil {
			g.t.Fatal(err)
		}
	}
	if err := g.rx.PublishAndNotify(); err != nil {
		g.t.Fatal(err)
	}
}

// recv waits for one received frame and returns it (header included).
func (g *guest) recv() []byte {
	g.t.Helper()
	id, n, err := g.rx.WaitUsed(5 * time.Second)
	if err != nil {
		g.t.Fatalf("RX: %v", err)
	}
	// Direct single-descriptor buffers: descriptor id holds the address.
	d := g.m.Bytes(g.rx.DescAddr+16*uint64(id), 16)
	addr := binary.LittleEndian.Uint64(d)
	return bytes.Clone(g.m.Bytes(addr, uint64(n)))
}

// expectClosed waits for the backend to close the frontend's connection.
func expectClosed(t testing.TB, f *vut.Frontend) {
	t.Helper()
	f.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [64]byte
	for {
		_, err := f.Conn.Read(b[:])
		if err == nil {
			continue // a reply or ack sent before closing
		}
		if os.IsTimeout(err) {
			t.Fatal("the backend did not close the connection")
		}
		return
	}
}
