package vsock

// A second review's attacks (hostile guest): each test drives the device
// the way a guest would and checks it stays bounded and correct.

import (
	"io"
	"testing"
	"time"
)

// TestCreditRequestFlood: CREDIT_REQUESTs sent while the guest gives no
// receive buffers are owed as one CREDIT_UPDATE, not one each: the
// device keeps no queue that grows with the flood, and the connection
// goes on.
func TestCreditRequestFlood(t *testing.T) {
	g, c, hc := unixConn(t, Options{}, 80, 7400)
	g.useUpReceive()
	g.rx.AllUsed() // the RSTs that used them up
	for range 500 {
		c.send(OpCreditRequest, 0, nil)
	}
	g.post(64)
	c.handle(g.expect(OpCreditUpdate, 80, 7400))
	g.quiet(50 * time.Millisecond)
	if n := g.dev.Conns(); n != 1 {
		t.Fatalf("%d connections after the flood, want 1", n)
	}
	exchange(t, c, hc, hc, pattern(10_000, 3), pattern(10_000, 4))
}

// TestWrongStateOnOpenConnection: on an open connection, a RESPONSE (the
// device asked nothing), a second REQUEST for the same ports, or data
// after the guest's SHUTDOWN(SEND) resets it: RST to the guest, the unix
// socket closed, the connection released, and no second pair of reader
// and writer started on it.
func TestWrongStateOnOpenConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(c *gconn)
	}{
		{"response", func(c *gconn) { c.send(OpResponse, 0, nil) }},
		{"request", func(c *gconn) { c.send(OpRequest, 0, nil) }},
		{"rw after shutdown", func(c *gconn) {
			c.send(OpShutdown, ShutdownSend, nil)
			c.send(OpRW, 0, []byte("late"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, c, hc := unixConn(t, Options{}, 80, 7500)
			tc.bad(c)
			g.expect(OpRST, 80, 7500)
			hc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(hc); err != nil || len(b) != 0 {
				t.Errorf("host side read %q, %v; want EOF and nothing", b, err)
			}
			waitUntil(t, "the connection released", func() bool { return g.dev.Conns() == 0 })
			g.quiet(20 * time.Millisecond)
			// Refused as a packet out of place, not by a failed write.
			if st := g.dev.Stats(); st.BadPackets != 1 || st.HostErrors != 0 {
				t.Errorf("stats %+v, want 1 bad packet and no host error", st)
			}
		})
	}
}
