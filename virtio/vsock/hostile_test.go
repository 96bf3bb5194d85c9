package vsock

// A hostile or merely unusual guest: sequences of packets that a review
// found the device mishandled (each test failed before its fix).

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// TestShutdownSendThenBoth: Linux's shutdown(SHUT_WR) followed by
// close() sends SHUTDOWN(SEND) and then SHUTDOWN(RCV|SEND). The second
// arrives after the unix socket's write side is already shut; the
// connection must still end at once (RST to the guest, the unix socket
// closed), not linger until the guest's own 8 s close timeout, or for
// ever when the guest never sends its RST.
func TestShutdownSendThenBoth(t *testing.T) {
	g, c, hc := unixConn(t, Options{}, 80, 7000)
	c.write([]byte("request"))
	c.send(OpShutdown, ShutdownSend, nil)
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(hc); err != nil || string(b) != "request" {
		t.Fatalf("host read %q, %v; want the request then EOF", b, err)
	}
	c.send(OpShutdown, shutdownBoth, nil)
	g.expect(OpRST, 80, 7000)
	waitUntil(t, "the connection released", func() bool { return g.dev.Conns() == 0 })
	if _, err := hc.Write([]byte("x")); err == nil {
		// The first write after the peer's close may still succeed.
		time.Sleep(10 * time.Millisecond)
		if _, err := hc.Write([]byte("x")); err == nil {
			t.Error("the unix socket is still open after the guest's close")
		}
	}
}

// TestRequestChurnBoundsDials: a REQUEST that the guest takes back (RST,
// or a second REQUEST) while its dial is in flight must keep its place
// under MaxConns until the dial returns: otherwise REQUEST+RST in a loop
// starts dials (goroutines, sockets, 2 x BufSize of buffers each)
// without bound.
func TestRequestChurnBoundsDials(t *testing.T) {
	const maxConns = 4
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	dial := func(uint32) (net.Conn, error) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		inFlight.Add(-1)
		return nil, net.ErrClosed
	}
	g := newGuest(t, Options{Dial: dial, MaxConns: maxConns})
	released := false
	defer func() {
		if !released {
			close(release) // before Close, which waits for the dials
		}
	}()
	for i := range 50 {
		c := g.gconn(80, 9000)
		c.send(OpRequest, 0, nil)
		if i%2 == 0 {
			c.send(OpRST, 0, nil)
		} else {
			c.send(OpRequest, 0, nil) // a duplicate: resets the first
		}
	}
	time.Sleep(50 * time.Millisecond) // the dial goroutines start
	if p := peak.Load(); p > maxConns {
		t.Errorf("%d dials in flight at once, cap %d", p, maxConns)
	}
	// The places come back as the dials return.
	close(release)
	released = true
	waitUntil(t, "the orphaned dials' places back", func() bool {
		g.dev.mu.Lock()
		defer g.dev.mu.Unlock()
		return !g.dev.full() && g.dev.orphans == 0
	})
}

// TestRefusedRequestAllocatesLittle: a REQUEST whose dial fails costs
// the device a goroutine and an RST, not the connection's two buffers
// (2 x 64 KiB): those come when the connection opens, so a guest that
// REQUESTs closed ports in a loop does not make the VMM allocate and
// collect 128 KiB per 44-byte packet.
func TestRefusedRequestAllocatesLittle(t *testing.T) {
	g := newGuest(t, Options{Dial: func(uint32) (net.Conn, error) { return nil, net.ErrClosed }})
	c := g.gconn(80, 9000)
	c.send(OpRequest, 0, nil) // warm-up
	g.expect(OpRST, 80, 9000)
	const n = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		c.port = 9001 + uint32(i)
		c.send(OpRequest, 0, nil)
		g.expect(OpRST, 80, c.port)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 16<<10 {
		t.Errorf("%d bytes allocated per refused REQUEST, want under 16 KiB", per)
	}
}

// TestControlBeforeHandshake: control packets of a connection whose
// handshake has not completed are answered with RST, never acted on: a
// CREDIT_REQUEST while the device dials must not put a CREDIT_UPDATE
// ahead of the RESPONSE (Linux resets a connecting socket that gets
// one), and a RESPONSE to a host-initiated REQUEST the device has not
// sent yet (a guessed port) must not tell the host process "OK".
func TestControlBeforeHandshake(t *testing.T) {
	t.Run("credit request while dialling", func(t *testing.T) {
		g, release, ends := heldGuest(t, 1)
		c := g.gconn(80, 9100)
		c.send(OpRequest, 0, nil)
		c.send(OpCreditRequest, 0, nil)
		close(release)
		g.expect(OpRST, 80, 9100)
		select {
		case hc := <-ends:
			hc.Close()
		case <-time.After(5 * time.Second):
		}
		g.quiet(20 * time.Millisecond)
	})
	t.Run("response before the request", func(t *testing.T) {
		uds := udsPath(t)
		ln, err := net.Listen("unix", uds)
		if err != nil {
			t.Fatal(err)
		}
		g := newGuest(t, Options{Listener: ln})
		g.useUpReceive() // the device's REQUEST waits for a buffer
		hc, err := net.Dial("unix", uds)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		hc.Write([]byte("CONNECT 52\n"))
		waitUntil(t, "the connection", func() bool { return g.dev.Conns() == 1 })
		c := g.gconn(FirstHostPort, 52)
		c.send(OpResponse, 0, nil)
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(hc); len(b) != 0 || err != nil {
			t.Errorf("host process read %q, %v; want EOF without OK", b, err)
		}
		waitUntil(t, "the RST", func() bool {
			g.poll()
			for _, p := range g.pending {
				if p.h.SrcPort == FirstHostPort {
					if p.h.Op != OpRST || p.h.DstPort != 52 {
						t.Fatalf("got %+v, want an RST to guest port 52", p.h)
					}
					return true
				}
			}
			return false
		})
	})
}

// openFDs counts the process's open file descriptors.
func openFDs(tb testing.TB) int {
	tb.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skip(err)
	}
	return len(des)
}

// TestResetLeavesNothing: a device reset ends every connection's
// goroutines and closes its socket, whatever the connection was doing:
// a unix peer that does not read (the writer blocked in Write), a guest
// that gives no credit (the reader waiting), one half-closed, one the
// guest never answered (host-initiated, REQUEST not delivered).
func TestResetLeavesNothing(t *testing.T) {
	uds := udsPath(t)
	l := hostListener(t, uds, 80)
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	fds, gos := openFDs(t), runtime.NumGoroutine()
	g := newGuest(t, Options{Dial: UnixDialer(uds, time.Second), Listener: ln, BufSize: 4096})
	var hosts []net.Conn
	defer func() {
		for _, hc := range hosts {
			hc.Close()
		}
	}()
	var cs []*gconn
	for i := range uint32(4) {
		cs = append(cs, g.connectFromGuest(80, 100+i))
		hc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, hc)
	}
	// The host does not read: the guest sends until the unix socket and
	// the device's buffer are full and the writer blocks in Write.
	for c := cs[0]; c.peerAlloc-(c.txCnt-c.peerFwd) > 0; {
		c.send(OpRW, 0, make([]byte, min(c.peerAlloc-(c.txCnt-c.peerFwd), 4096)))
		time.Sleep(2 * time.Millisecond)
		c.pump()
	}
	// The guest gives no credit: the reader waits with data in the socket.
	cs[1].alloc = 0
	cs[1].send(OpCreditUpdate, 0, nil)
	hosts[1].Write(make([]byte, 1000))
	cs[2].send(OpShutdown, ShutdownSend, nil) // half-closed
	g.dev.mu.Lock()
	blocked := g.dev.conns[key(80, 100)].toHost.n > 0
	g.dev.mu.Unlock()
	if !blocked {
		t.Fatal("the writer of the first connection is not blocked")
	}
	hc, err := net.Dial("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	hosts = append(hosts, hc)
	hc.Write([]byte("CONNECT 9\n"))
	waitUntil(t, "five connections", func() bool { return g.dev.Conns() == 5 })
	g.h.Close()
	if n := g.dev.Conns(); n != 0 {
		t.Fatalf("%d connections after the reset", n)
	}
	for _, hc := range hosts {
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, hc); err != nil {
			t.Errorf("host side after the reset: %v, want EOF", err)
		}
		hc.Close()
	}
	hosts = nil
	waitUntil(t, "the goroutines and sockets gone", func() bool {
		// The listener's accept goroutine is the device's until Close.
		return runtime.NumGoroutine() <= gos+1 && openFDs(t) <= fds+2
	})
}

// TestCountersWrap: the byte counters behind the credit (tx_cnt,
// fwd_cnt, both ways) are u32 and wrap after 4 GiB; a connection whose
// counters cross 2^32 goes on, within the credit, without a stall.
func TestCountersWrap(t *testing.T) {
	g, c, hc := unixConn(t, Options{BufSize: 4096}, 80, 7100)
	const w = 1<<32 - 5000
	g.dev.mu.Lock()
	dc := g.dev.conns[key(80, 7100)]
	dc.txCnt, dc.peerFwd = w, w
	dc.rxCnt, dc.fwdCnt, dc.lastFwdSent = w, w, w
	g.dev.mu.Unlock()
	c.fwd, c.lastFwd, c.rcv, c.txCnt, c.peerFwd = w, w, w, w, w
	c.alloc = 6000
	exchange(t, c, hc, hc, pattern(100_000, 7), pattern(100_000, 8))
}

// TestMalformedChains: a header split byte by byte across descriptors
// is read like any other; a transmit chain with a device-writable
// buffer, a receive chain with a readable one or too small for a header
// are completed with used length 0 and counted, and the packet owed
// goes into the next good receive chain.
func TestMalformedChains(t *testing.T) {
	g, c, hc := unixConn(t, Options{}, 80, 7200)
	txChain := func(bufs ...qt.Buf) {
		t.Helper()
		if _, err := g.tx.Add(bufs...); err != nil {
			t.Fatal(err)
		}
		g.h.Kick(TxQueue)
		waitUntil(t, "the transmit chain used", func() bool { return g.tx.PendingUsed() == 1 })
		if u := g.tx.AllUsed(); u[0].Len != 0 {
			t.Fatalf("transmit chain used with %d bytes", u[0].Len)
		}
	}
	payload := []byte("split")
	h := c.hdr(OpRW)
	h.Len = uint32(len(payload))
	var hb [HeaderLen]byte
	h.Put(hb[:])
	var bufs []qt.Buf
	for i := range hb {
		bufs = append(bufs, qt.R(hb[i:i+1]))
	}
	txChain(append(bufs, qt.R(payload[:2]), qt.R(payload[2:]))...)
	c.txCnt += h.Len
	got := make([]byte, len(payload))
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(hc, got); err != nil || string(got) != "split" {
		t.Fatalf("host read %q, %v", got, err)
	}
	// The payload in a device-writable buffer: not read, not answered.
	h.Put(hb[:])
	txChain(qt.R(hb[:]), qt.W(uint32(len(payload))))
	if st := g.dev.Stats(); st.BadChains != 1 || g.dev.Conns() != 1 {
		t.Fatalf("stats %+v, %d connections", st, g.dev.Conns())
	}
	// Use up the posted receive buffers, then post bad ones and a good one.
	c.pump()
	g.useUpReceive()
	g.rx.AllUsed()
	for _, b := range [][]qt.Buf{{qt.R(make([]byte, HeaderLen)), qt.W(rxBuf)}, {qt.W(HeaderLen - 1)}, {qt.W(rxBuf)}} {
		if _, err := g.rx.Add(b...); err != nil {
			t.Fatal(err)
		}
	}
	g.h.Kick(RxQueue)
	g.send(Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 99, DstPort: 9, Type: TypeStream, Op: OpRW}, nil)
	waitUntil(t, "three receive chains used", func() bool { return g.rx.PendingUsed() == 3 })
	us := g.rx.AllUsed()
	if us[0].Len != 0 || us[1].Len != 0 || us[2].Len != HeaderLen {
		t.Fatalf("receive chains used with %d, %d, %d bytes; want 0, 0, %d", us[0].Len, us[1].Len, us[2].Len, HeaderLen)
	}
	if p := decodeAny(g.rx.Written(us[2])); p.Op != OpRST || p.DstPort != 99 {
		t.Fatalf("got %+v, want the RST to port 99", p)
	}
	if st := g.dev.Stats(); st.BadChains != 3 {
		t.Errorf("stats %+v, want 3 bad chains", st)
	}
}

// TestPortReuseWhileDialling: the guest resets a connection whose dial
// runs and at once asks again for the same ports; of the two dials'
// sockets, the first connection's is closed and answers nothing, the
// second's carries the one connection.
func TestPortReuseWhileDialling(t *testing.T) {
	g, release, ends := heldGuest(t, 2)
	c := g.gconn(80, 7300)
	c.send(OpRequest, 0, nil)
	c.send(OpRST, 0, nil)
	c.send(OpRequest, 0, nil)
	close(release)
	c.handle(g.expect(OpResponse, 80, 7300))
	// Both sockets are read at once: the first to end must end with
	// EOF (the reset connection's, closed whenever its dial returned, on
	// a loaded machine perhaps long after the second), and the other
	// must still be open 50 ms later.
	type readEnd struct {
		hc  net.Conn
		err error
	}
	ended := make(chan readEnd, 2)
	var hcs []net.Conn
	for range 2 {
		hc := <-ends
		defer hc.Close()
		hcs = append(hcs, hc)
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		go func() {
			_, err := hc.Read(make([]byte, 1))
			ended <- readEnd{hc, err}
		}()
	}
	first := <-ended
	if first.err != io.EOF {
		t.Fatalf("neither dialled socket was closed (the first read: %v)", first.err)
	}
	select {
	case second := <-ended:
		t.Fatalf("both dialled sockets ended (the second read: %v), want one open", second.err)
	case <-time.After(50 * time.Millisecond):
	}
	live := hcs[0]
	if live == first.hc {
		live = hcs[1]
	}
	live.SetReadDeadline(time.Unix(1, 0)) // ends its read
	if second := <-ended; second.err == io.EOF {
		t.Fatal("both dialled sockets were closed, want one open")
	}
	live.SetReadDeadline(time.Time{})
	go live.Write([]byte("second"))
	c.readUntil("the connection's data", func() bool { return c.got.String() == "second" })
	g.quiet(20 * time.Millisecond)
	if n := g.dev.Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
