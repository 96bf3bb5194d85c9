package vsock

// A hostile or merely unusual guest: sequences of packets that a review
// found the device mishandled (each test failed before its fix).

import (
	"io"
	"testing"
	"time"
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
