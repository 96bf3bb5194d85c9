package vsock

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

func TestIdentityAndConfig(t *testing.T) {
	d, err := New(Options{GuestCID: 0x1234_5678})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Type() != virtio.DeviceVsock || d.Type() != 19 {
		t.Errorf("type %d, want 19", d.Type())
	}
	if f := d.Features(); f&FeatureStream == 0 || f&(1<<1) != 0 || !virtio.Has(f, virtio.FeatureVersion1) {
		t.Errorf("features %#x: want STREAM and VERSION_1, no SEQPACKET", f)
	}
	if n := len(d.QueueMaxSizes()); n != 3 {
		t.Errorf("%d queues, want rx, tx and event", n)
	}
	p := bytes.Repeat([]byte{0xff}, 12)
	d.WriteConfig(0, []byte{9, 9, 9, 9})
	d.ReadConfig(0, p)
	if got := binary.LittleEndian.Uint64(p); got != 0x1234_5678 || !bytes.Equal(p[8:], make([]byte, 4)) {
		t.Errorf("config %x, want guest_cid 0x12345678 then zeros", p)
	}
	d.ReadConfig(4, p[:4])
	if !bytes.Equal(p[:4], make([]byte, 4)) {
		t.Errorf("guest_cid's high half reads %x", p[:4])
	}
	if err := d.AckFeatures(1 << 1); err == nil {
		t.Error("SEQPACKET acked though not offered")
	}
	for _, o := range []Options{{GuestCID: 2}, {GuestCID: 1<<32 - 1}, {GuestCID: 3, QueueSize: 6},
		{GuestCID: 3, BufSize: 100}, {GuestCID: 3, MaxConns: -1}} {
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), "virtio-vsock") {
			t.Errorf("New(%+v): %v, want an error", o, err)
		}
	}
}

func TestCountersNamed(t *testing.T) {
	var s Stats
	if err := virtio.CheckCounters(&s, s.Counters()); err != nil {
		t.Fatal(err)
	}
}

// exchange sends want one way and back the other on an open connection:
// the guest writes gdata and shuts its sending side; the host reads to
// EOF, writes hdata and closes; the guest sees the data, the SHUTDOWN
// and then the RST that ends the connection.
func exchange(t *testing.T, c *gconn, hr io.Reader, hc net.Conn, gdata, hdata []byte) {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(hr)
		got <- b
		hc.Write(hdata)
		hc.Close()
	}()
	c.write(gdata)
	c.send(OpShutdown, ShutdownSend, nil)
	var hostGot []byte
	select {
	case hostGot = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the host did not see the guest's data end")
	}
	if sha256.Sum256(hostGot) != sha256.Sum256(gdata) {
		t.Fatalf("host got %d bytes, not the %d the guest sent", len(hostGot), len(gdata))
	}
	c.readUntil("the host's data, SHUTDOWN and RST", func() bool { return c.reset })
	if !c.eof || sha256.Sum256(c.got.Bytes()) != sha256.Sum256(hdata) {
		g := c.got.Bytes()
		i := 0
		for i < min(len(g), len(hdata)) && g[i] == hdata[i] {
			i++
		}
		t.Fatalf("guest got %d bytes (eof %v), not the %d the host sent (first difference at %d: %x vs %x)", c.got.Len(), c.eof, len(hdata), i, g[:8], hdata[:8])
	}
	waitUntil(t, "the connection released", func() bool { return c.g.dev.Conns() == 0 })
}

// TestGuestInitiated: the guest connects to host port 5000, which
// connects to <uds>_5000; 1 MiB goes each way within the credit.
func TestGuestInitiated(t *testing.T) {
	g, c, hc := unixConn(t, Options{}, 5000, 40000)
	if c.peerAlloc != DefaultBufSize {
		t.Errorf("buf_alloc %d, want %d", c.peerAlloc, DefaultBufSize)
	}
	exchange(t, c, hc, hc, pattern(1<<20, 1), pattern(1<<20+17, 2))
	st := g.dev.Stats()
	if st.ConnsGuest != 1 || st.TxBytes != 1<<20 || st.RxBytes != 1<<20+17 || st.ConnsClosed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestHostInitiated: CONNECT <port> on the listener, the guest's
// RESPONSE, "OK <host port>", data both ways.
func TestHostInitiated(t *testing.T) {
	uds := udsPath(t)
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, Options{Listener: ln})
	hc, err := net.Dial("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	// Data pipelined right after the line belongs to the connection.
	first := []byte("early bytes")
	if _, err := hc.Write(append([]byte("CONNECT 52\n"), first...)); err != nil {
		t.Fatal(err)
	}
	req := g.expect(OpRequest, FirstHostPort, 52)
	if req.h.BufAlloc != DefaultBufSize {
		t.Errorf("REQUEST with buf_alloc %d, want %d", req.h.BufAlloc, DefaultBufSize)
	}
	c := g.gconn(FirstHostPort, 52)
	c.handle(req)
	c.send(OpResponse, 0, nil)
	br := bufio.NewReader(hc)
	line, err := br.ReadString('\n')
	if err != nil || line != "OK 1073741824\n" {
		t.Fatalf("answer %q (%v), want \"OK 1073741824\\n\"", line, err)
	}
	c.readUntil("the early bytes", func() bool { return c.got.Len() == len(first) })
	c.got.Reset()
	exchange(t, c, br, hc, pattern(300_000, 3), pattern(200_000, 4))
	if st := g.dev.Stats(); st.ConnsHost != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestHostInitiatedRefused: the guest answers RST, or nothing: the unix
// connection closes without "OK".
func TestHostInitiatedRefused(t *testing.T) {
	uds := udsPath(t)
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	// The guest's RST must come within the timeout, or the device gives
	// up first (refused, not reset): 200 ms was short for a starved
	// test goroutine.
	g := newGuest(t, Options{Listener: ln, ConnectTimeout: time.Second})
	for i, answer := range []bool{true, false} {
		hc, err := net.Dial("unix", uds)
		if err != nil {
			t.Fatal(err)
		}
		hc.Write([]byte("CONNECT 7\n"))
		req := g.expect(OpRequest, FirstHostPort+uint32(i), 7)
		if answer {
			g.send(Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 7, DstPort: req.h.SrcPort, Type: TypeStream, Op: OpRST}, nil)
		} else {
			g.expect(OpRST, req.h.SrcPort, 7) // the device gives up
		}
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(hc); len(b) != 0 || err != nil {
			t.Errorf("refused connection read %q, %v; want EOF at once", b, err)
		}
		hc.Close()
		waitUntil(t, "the connection released", func() bool { return g.dev.Conns() == 0 })
	}
	if st := g.dev.Stats(); st.ConnsRefused != 1 || st.ConnsReset != 1 || st.ConnsHost != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestBadConnectLines: lines that are not "CONNECT <port>\n" close the
// unix connection and never reach the guest.
func TestBadConnectLines(t *testing.T) {
	uds := udsPath(t)
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, Options{Listener: ln, ConnectTimeout: 300 * time.Millisecond})
	for _, l := range []string{"CONNECT 0\n", "CONNECT -1\n", "CONNECT 4294967296\n", "connect 5\n",
		"CONNECT  5\n", "CONNECT 5 6\n", "CONNECT 0005\n", strings.Repeat("9", 40) + "\n", "CONNECT 5"} {
		hc, err := net.Dial("unix", uds)
		if err != nil {
			t.Fatal(err)
		}
		hc.Write([]byte(l))
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		// A line cut at its limit leaves bytes unread: reset, not EOF.
		if b, err := io.ReadAll(hc); len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Errorf("%q: read %q, %v; want EOF or a reset", l, b, err)
		}
		hc.Close()
	}
	g.quiet(20 * time.Millisecond)
	for _, ok := range []string{"CONNECT 1", "CONNECT 4294967295", "CONNECT 5\r"} {
		if _, good := ParseConnect([]byte(ok)); !good {
			t.Errorf("%q refused", ok)
		}
	}
}

// TestGuestRefused: nothing listens on the host port, no Dial at all, or
// the connection cap is reached: RST.
func TestGuestRefused(t *testing.T) {
	uds := udsPath(t)
	hostListener(t, uds, 1)
	g := newGuest(t, Options{Dial: UnixDialer(uds, time.Second), MaxConns: 2})
	g.send(Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 100, DstPort: 9, Type: TypeStream, Op: OpRequest}, nil)
	g.expect(OpRST, 9, 100)
	g.connectFromGuest(1, 101)
	g.connectFromGuest(1, 102)
	g.send(Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 103, DstPort: 1, Type: TypeStream, Op: OpRequest}, nil)
	g.expect(OpRST, 1, 103)
	if n := g.dev.Conns(); n != 2 {
		t.Errorf("%d connections, want 2 (the cap)", n)
	}
	g2 := newGuest(t, Options{})
	g2.send(Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 100, DstPort: 1, Type: TypeStream, Op: OpRequest}, nil)
	g2.expect(OpRST, 1, 100)
}

// TestMalformed: every bad header is answered with RST (an RST never)
// and resets the connection it names; the device goes on.
func TestMalformed(t *testing.T) {
	uds := udsPath(t)
	l := hostListener(t, uds, 80)
	g := newGuest(t, Options{Dial: UnixDialer(uds, time.Second)})
	good := Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 1000, DstPort: 80, Type: TypeStream, Op: OpCreditRequest}
	cases := []struct {
		name string
		mod  func(h *Header)
		rst  bool
	}{
		{"src cid", func(h *Header) { h.SrcCID = 4 }, true},
		{"src cid high bits", func(h *Header) { h.SrcCID = 1<<32 | testCID }, true},
		{"dst cid", func(h *Header) { h.DstCID = 1 }, true},
		{"type seqpacket", func(h *Header) { h.Type = 2 }, true},
		{"op 0", func(h *Header) { h.Op = 0 }, true},
		{"op 8", func(h *Header) { h.Op = 8 }, true},
		{"flags on rw", func(h *Header) { h.Op = OpRW; h.Flags = 1 }, true},
		{"shutdown flag 4", func(h *Header) { h.Op = OpShutdown; h.Flags = 4 }, true},
		{"len beyond chain", func(h *Header) { h.Op = OpRW; h.Len = 10 }, true},
		{"payload on request", func(h *Header) { h.Op = OpRequest; h.Len = 1 }, true},
		{"rw without connection", func(h *Header) { h.Op = OpRW }, true},
		{"response without connection", func(h *Header) { h.Op = OpResponse }, true},
		{"shutdown without connection", func(h *Header) { h.Op = OpShutdown; h.Flags = 3 }, true},
		{"rst without connection", func(h *Header) { h.Op = OpRST }, false},
		{"bad rst", func(h *Header) { h.Op = OpRST; h.Type = 9 }, false},
		{"port 0", func(h *Header) { h.DstPort = 0 }, false},
	}
	for _, c := range cases {
		h := good
		c.mod(&h)
		g.send(h, nil)
		if c.rst {
			g.expect(OpRST, h.DstPort, h.SrcPort)
		} else {
			g.quiet(10 * time.Millisecond)
		}
	}
	// A header cut short, and a chain with a writable buffer.
	var hb [HeaderLen]byte
	good.Put(hb[:])
	g.sendRaw(hb[:20], nil)
	g.quiet(10 * time.Millisecond)
	// A malformed packet for a live connection resets it.
	c := g.connectFromGuest(80, 2000)
	hc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	bad := c.hdr(OpRW)
	bad.Len = 100 // no payload follows
	g.send(bad, nil)
	g.expect(OpRST, 80, 2000)
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(hc); err != nil {
		t.Errorf("host side of the reset connection: %v, want EOF", err)
	}
	if n := g.dev.Conns(); n != 0 {
		t.Errorf("%d connections left", n)
	}
	// The device still works.
	g.connectFromGuest(80, 2001)
	if st := g.dev.Stats(); st.BadPackets < uint64(len(cases)) {
		t.Errorf("stats %+v", st)
	}
}

// TestCreditViolation: data beyond the device's buf_alloc resets the
// connection.
func TestCreditViolation(t *testing.T) {
	uds := udsPath(t)
	hostListener(t, uds, 80)
	g := newGuest(t, Options{Dial: UnixDialer(uds, time.Second), BufSize: 4096})
	c := g.connectFromGuest(80, 3000)
	c.send(OpRW, 0, make([]byte, 5000))
	g.expect(OpRST, 80, 3000)
	if st := g.dev.Stats(); st.CreditViolations != 1 || g.dev.Conns() != 0 {
		t.Errorf("stats %+v, %d connections", st, g.dev.Conns())
	}
}

// pipeDial answers every dial with one end of a net.Pipe (no buffering
// at all: the test decides when the "socket" drains). The other end
// goes to ends, or is closed when ends is full (a dial never blocks on
// the test: Close waits for dials).
func pipeDial(ends chan net.Conn) func(uint32) (net.Conn, error) {
	return func(uint32) (net.Conn, error) {
		a, b := net.Pipe()
		select {
		case ends <- b:
		default:
			b.Close()
		}
		return a, nil
	}
}

// TestBackpressure: a guest that gives no credit gets no more than its
// buf_alloc, and a unix peer that does not read gets the guest no more
// credit than the device's buffer.
func TestBackpressure(t *testing.T) {
	ends := make(chan net.Conn, 1)
	g := newGuest(t, Options{Dial: pipeDial(ends), BufSize: 8192})
	c := &gconn{g: g, host: 80, port: 4000, alloc: 10000, hold: true}
	c.send(OpRequest, 0, nil)
	c.handle(g.expect(OpResponse, 80, 4000))
	hc := <-ends
	// Host -> guest: the guest holds everything it gets.
	go hc.Write(pattern(100_000, 5))
	c.readUntil("the guest's buf_alloc filled", func() bool { return c.got.Len() == 10000 })
	c.g.quiet(50 * time.Millisecond)
	// Consuming and crediting lets the rest through.
	c.hold = false
	c.fwd = uint32(c.got.Len())
	c.send(OpCreditUpdate, 0, nil)
	c.readUntil("the rest", func() bool { return c.got.Len() == 100_000 })
	if !bytes.Equal(c.got.Bytes(), pattern(100_000, 5)) {
		t.Fatal("host -> guest data corrupted")
	}
	// Guest -> host: nobody reads the pipe; the guest runs out of credit
	// after the device's buffer and the one Write in progress.
	sent := 0
	for c.peerAlloc-(c.txCnt-c.peerFwd) > 0 {
		n := int(min(c.peerAlloc-(c.txCnt-c.peerFwd), 4096))
		c.send(OpRW, 0, make([]byte, n))
		sent += n
		time.Sleep(5 * time.Millisecond)
		c.pump()
	}
	if sent > 2*8192 {
		t.Errorf("the guest could send %d bytes into a socket nobody reads (buffer 8192)", sent)
	}
	// The host reads: credit comes back and the rest flows.
	go io.Copy(io.Discard, hc)
	c.write(make([]byte, 100_000))
	waitUntil(t, "all written", func() bool { return g.dev.Stats().TxBytes == uint64(sent+100_000) })
}

// TestPeerVanishes: a unix peer closing mid-stream resets the guest's
// connection and releases it; the other connection goes on.
func TestPeerVanishes(t *testing.T) {
	uds := udsPath(t)
	l := hostListener(t, uds, 80)
	g := newGuest(t, Options{Dial: UnixDialer(uds, time.Second)})
	a := g.connectFromGuest(80, 5000)
	ha, _ := l.Accept()
	b := g.connectFromGuest(80, 5001)
	hb, _ := l.Accept()
	defer hb.Close()
	a.write(make([]byte, 10000))
	ha.Close() // vanishes with the guest's data unread
	for !a.reset {
		a.send(OpRW, 0, make([]byte, 1000))
		time.Sleep(time.Millisecond)
		g.poll()
		for _, p := range g.pending {
			if p.h.DstPort == 5000 {
				a.handle(p)
			}
		}
		g.pending = nil
	}
	waitUntil(t, "one connection left", func() bool { return g.dev.Conns() == 1 })
	// The guest vanishes from b: its RST closes the unix side.
	go hb.Write(pattern(1000, 1))
	b.readUntil("data on the other connection", func() bool { return b.got.Len() == 1000 })
	b.send(OpRST, 0, nil)
	hb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(hb); err != nil {
		t.Errorf("host side after the guest's RST: %v, want EOF", err)
	}
	waitUntil(t, "no connection left", func() bool { return g.dev.Conns() == 0 })
}

// TestResetClosesConnections: a device reset closes every unix side.
func TestResetClosesConnections(t *testing.T) {
	uds := udsPath(t)
	l := hostListener(t, uds, 80)
	g := newGuest(t, Options{Dial: UnixDialer(uds, time.Second)})
	g.connectFromGuest(80, 6000)
	hc, _ := l.Accept()
	g.h.Close()
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(hc); err != nil {
		t.Errorf("after the reset: %v, want EOF", err)
	}
	if n := g.dev.Conns(); n != 0 {
		t.Errorf("%d connections after the reset", n)
	}
}

// TestCloseWithSilentClient: Close does not wait out the CONNECT line's
// timeout of a host process that connected and said nothing, and it
// removes the socket file.
func TestCloseWithSilentClient(t *testing.T) {
	uds := udsPath(t)
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{GuestCID: testCID, Listener: ln, ConnectTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := net.Dial("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	waitUntil(t, "the line being read", func() bool { return d.pending.Load() == 1 })
	start := time.Now()
	d.Close()
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Close took %v", el)
	}
	if _, err := os.Stat(uds); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
}

// TestHeaderOnlyChain: a receive chain with room for a header only,
// while data waits, gets a credit update (never an empty data packet,
// never stuck); the data goes into the next chain.
func TestHeaderOnlyChain(t *testing.T) {
	d, c := benchDevice(t)
	small := make([]byte, HeaderLen)
	var ch queue.Chain
	ch.Writable, ch.WriteLen = [][]byte{small}, HeaderLen
	d.mu.Lock()
	c.toGuest.produced(copy(c.toGuest.space(), "hello"))
	d.markReady(c)
	d.mu.Unlock()
	if r := d.rx.Chain(&ch); r.Do != virtio.Done || r.Used != HeaderLen || decodeAny(small).Op != OpCreditUpdate {
		t.Fatalf("header-only chain: %+v, packet %+v; want a credit update", r, decodeAny(small))
	}
	big := make([]byte, HeaderLen+16)
	ch.Writable, ch.WriteLen = [][]byte{big}, uint32(len(big))
	if r := d.rx.Chain(&ch); r.Used != HeaderLen+5 || decodeAny(big).Op != OpRW || string(big[HeaderLen:HeaderLen+5]) != "hello" {
		t.Fatalf("next chain: %+v, packet %+v %q", r, decodeAny(big), big[HeaderLen:])
	}
}
