package vsock

import (
	"bytes"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

const (
	testCID = 3
	rxBuf   = 4096 + HeaderLen // Linux's receive buffers
)

// pkt is one packet the device sent the guest.
type pkt struct {
	h    Header
	data []byte
}

// guest plays the Linux driver against an active device.
type guest struct {
	tb      testing.TB
	dev     *Device
	h       *virtiotest.Harness
	rx, tx  *qt.Driver
	pending []pkt
}

func newGuest(tb testing.TB, opts Options) *guest {
	tb.Helper()
	if opts.GuestCID == 0 {
		opts.GuestCID = testCID
	}
	d, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	g := &guest{tb: tb, dev: d}
	g.h = virtiotest.MustActivate(tb, d, Features, virtiotest.Options{DataSize: 8 << 20})
	g.rx, g.tx = g.h.Drivers[RxQueue], g.h.Drivers[TxQueue]
	g.post(64)
	return g
}

func (g *guest) post(n int) {
	for range n {
		if _, err := g.rx.Add(qt.W(rxBuf)); err != nil {
			g.tb.Fatal(err)
		}
	}
	g.h.Kick(RxQueue)
}

// sendRaw sends a packet whose 44 header bytes are hb.
func (g *guest) sendRaw(hb []byte, payload []byte) {
	g.tb.Helper()
	bufs := []qt.Buf{qt.R(hb)}
	if len(payload) > 0 {
		bufs = append(bufs, qt.R(payload))
	}
	if _, err := g.tx.Add(bufs...); err != nil {
		g.tb.Fatal(err)
	}
	g.h.Kick(TxQueue)
	waitUntil(g.tb, "the transmit chain used", func() bool {
		g.tx.AllUsed()
		return g.tx.InFlight() == 0
	})
}

func (g *guest) send(h Header, payload []byte) {
	g.tb.Helper()
	var hb [HeaderLen]byte
	h.Put(hb[:])
	g.sendRaw(hb[:], payload)
}

// poll collects what the device delivered and re-posts the buffers.
func (g *guest) poll() {
	us := g.rx.AllUsed()
	for _, u := range us {
		b := g.rx.Written(u)
		if len(b) < HeaderLen {
			g.tb.Fatalf("receive chain used with %d bytes, want a header", len(b))
		}
		h := decodeAny(b)
		if int(h.Len) != len(b)-HeaderLen {
			g.tb.Fatalf("packet len %d, chain used with %d payload bytes", h.Len, len(b)-HeaderLen)
		}
		g.pending = append(g.pending, pkt{h, b[HeaderLen:]})
	}
	if len(us) > 0 {
		g.post(len(us))
	}
}

// useUpReceive has the device fill every posted receive buffer (RSTs
// for packets of no connection, from host port 9) and leaves them
// uncollected: what the device owes next waits for the next buffer.
func (g *guest) useUpReceive() {
	g.tb.Helper()
	posted := g.rx.InFlight() - g.rx.PendingUsed()
	for i := range uint32(posted) {
		g.send(Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 100 + i, DstPort: 9, Type: TypeStream, Op: OpRW}, nil)
	}
	waitUntil(g.tb, "the receive buffers used", func() bool { return g.rx.PendingUsed() == posted })
}

// decodeAny decodes a host -> guest header: ParseHeader fills every
// field before it checks them (its guest-side checks do not apply).
func decodeAny(b []byte) Header {
	h, _ := ParseHeader(b, HeaderLen+MaxPayload, 0)
	return h
}

// next returns the next packet, failing after 5 s.
func (g *guest) next() pkt {
	g.tb.Helper()
	waitUntil(g.tb, "a packet from the device", func() bool {
		g.poll()
		return len(g.pending) > 0
	})
	p := g.pending[0]
	g.pending = g.pending[1:]
	return p
}

// expect returns the next packet and checks its operation and ports.
func (g *guest) expect(op Op, host, port uint32) pkt {
	g.tb.Helper()
	p := g.next()
	if p.h.Op != op || p.h.SrcPort != host || p.h.DstPort != port || p.h.SrcCID != HostCID ||
		p.h.DstCID != testCID || p.h.Type != TypeStream {
		g.tb.Fatalf("got %+v, want op %d from host port %d to guest port %d", p.h, op, host, port)
	}
	return p
}

// quiet checks that nothing arrives for d.
func (g *guest) quiet(d time.Duration) {
	g.tb.Helper()
	time.Sleep(d)
	g.poll()
	if len(g.pending) > 0 {
		g.tb.Fatalf("unexpected packet %+v", g.pending[0].h)
	}
}

// gconn is the guest's end of one connection.
type gconn struct {
	g          *guest
	host, port uint32 // the host's and the guest's port
	alloc      uint32 // the guest's buf_alloc
	fwd        uint32 // bytes the guest consumed
	lastFwd    uint32 // fwd_cnt the device last heard
	txCnt      uint32
	rcv        uint32 // bytes received (the device's tx_cnt)
	peerAlloc  uint32
	peerFwd    uint32
	got        bytes.Buffer
	eof, reset bool
	// hold stops consuming: received bytes stay unconsumed (no credit).
	hold bool
}

func (c *gconn) hdr(op Op) Header {
	c.lastFwd = c.fwd
	return Header{SrcCID: testCID, DstCID: HostCID, SrcPort: c.port, DstPort: c.host, Type: TypeStream,
		Op: op, BufAlloc: c.alloc, FwdCnt: c.fwd}
}

func (c *gconn) send(op Op, flags uint32, payload []byte) {
	h := c.hdr(op)
	h.Flags, h.Len = flags, uint32(len(payload))
	c.g.send(h, payload)
	c.txCnt += h.Len
}

// handle applies one packet of this connection.
func (c *gconn) handle(p pkt) {
	c.peerAlloc, c.peerFwd = p.h.BufAlloc, p.h.FwdCnt
	switch p.h.Op {
	case OpRW:
		c.got.Write(p.data)
		c.rcv += p.h.Len
		if c.rcv-c.fwd > c.alloc {
			c.g.tb.Fatalf("the device sent %d bytes not yet consumed, beyond the guest's buf_alloc %d", c.rcv-c.fwd, c.alloc)
		}
		if !c.hold {
			c.fwd += p.h.Len
		}
		if c.fwd-c.lastFwd > c.alloc/2 {
			c.send(OpCreditUpdate, 0, nil)
		}
	case OpShutdown:
		if p.h.Flags&ShutdownSend != 0 {
			c.eof = true
		}
	case OpRST:
		c.reset = true
	}
}

// pump handles the packets that arrived (all must be this connection's).
func (c *gconn) pump() {
	c.g.poll()
	for len(c.g.pending) > 0 {
		p := c.g.pending[0]
		c.g.pending = c.g.pending[1:]
		if p.h.DstPort != c.port || p.h.SrcPort != c.host {
			c.g.tb.Fatalf("packet for another connection: %+v", p.h)
		}
		c.handle(p)
	}
}

// write sends data as RW packets within the device's credit.
func (c *gconn) write(data []byte) {
	for len(data) > 0 {
		credit := c.peerAlloc - (c.txCnt - c.peerFwd)
		if credit == 0 {
			waitUntil(c.g.tb, "credit", func() bool {
				c.pump()
				return c.reset || c.peerAlloc-(c.txCnt-c.peerFwd) > 0
			})
			if c.reset {
				return
			}
			continue
		}
		n := min(len(data), int(credit), 4096)
		c.send(OpRW, 0, data[:n])
		data = data[n:]
	}
}

// readUntil pumps until cond holds.
func (c *gconn) readUntil(what string, cond func() bool) {
	waitUntil(c.g.tb, what, func() bool {
		c.pump()
		return cond()
	})
}

// gconn is the guest's end of a connection between host port host and
// guest port port, with a buf_alloc of 64 KiB (nothing is sent).
func (g *guest) gconn(host, port uint32) *gconn {
	return &gconn{g: g, host: host, port: port, alloc: 64 << 10}
}

// heldGuest is a guest whose dials wait until the test closes release
// and then answer like pipeDial(ends), ends holding n.
func heldGuest(tb testing.TB, n int) (g *guest, release chan struct{}, ends chan net.Conn) {
	release, ends = make(chan struct{}), make(chan net.Conn, n)
	pipe := pipeDial(ends)
	g = newGuest(tb, Options{Dial: func(p uint32) (net.Conn, error) { <-release; return pipe(p) }})
	return g, release, ends
}

// connectFromGuest opens a guest-initiated connection to host port host.
func (g *guest) connectFromGuest(host, port uint32) *gconn {
	g.tb.Helper()
	c := g.gconn(host, port)
	c.send(OpRequest, 0, nil)
	p := g.expect(OpResponse, host, port)
	c.handle(p)
	return c
}

// unixConn opens a guest connection from guest port port to host port
// host, which a unix listener at <uds>_<host> accepts: the guest's end,
// and the host's (closed at the test's end).
func unixConn(tb testing.TB, opts Options, host, port uint32) (*guest, *gconn, net.Conn) {
	tb.Helper()
	uds := udsPath(tb)
	l := hostListener(tb, uds, host)
	opts.Dial = UnixDialer(uds, time.Second)
	g := newGuest(tb, opts)
	c := g.connectFromGuest(host, port)
	hc, err := l.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hc.Close() })
	return g, c, hc
}

// waitUntil polls cond (virtiotest.WaitUntil).
var waitUntil = virtiotest.WaitUntil

// hostListener listens on dir/v.sock_port, as a host service would.
func hostListener(tb testing.TB, uds string, port uint32) net.Listener {
	tb.Helper()
	l, err := net.Listen("unix", uds+"_"+itoa(port))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func udsPath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "v.sock") }

// pattern is n bytes whose values depend on their offset and seed.
func pattern(n int, seed byte) []byte { return virtiotest.Pattern(n, seed) }
