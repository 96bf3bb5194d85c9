package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// shortLimits make the timeouts observable in a test.
var shortLimits = Limits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
	IdleTimeout: 300 * time.Millisecond, MaxConns: 2}

// dial connects to the server's socket; the connection closes when the
// test ends.
func dial(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitDropped reads c until the server closes it, failing if that takes
// longer than bound.
func waitDropped(t *testing.T, c net.Conn, bound time.Duration) {
	t.Helper()
	t0 := time.Now()
	c.SetReadDeadline(t0.Add(bound))
	_, err := io.Copy(io.Discard, c)
	if os.IsTimeout(err) {
		t.Fatalf("the connection was still open after %v", bound)
	}
}

// TestTrickledBody (issue 13 finding 5): a client that sends its headers
// and then its body a byte at a time is dropped at ReadTimeout, instead
// of holding a connection (and a goroutine) forever.
func TestTrickledBody(t *testing.T) {
	_, _, sock := serve(t, Options{Controller: &fakeVM{}, Limits: shortLimits})
	c := dial(t, sock)
	io.WriteString(c, "PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	waitDropped(t, c, 3*time.Second)
}

// TestIdleKeepAlive (issue 13 finding 5): a keep-alive connection with no
// next request is closed at IdleTimeout.
func TestIdleKeepAlive(t *testing.T) {
	_, _, sock := serve(t, Options{Controller: &fakeVM{}, Limits: shortLimits})
	c := dial(t, sock)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := r.ReadByte(); os.IsTimeout(err) {
		t.Fatal("the idle connection was still open after 3 s")
	}
}

// TestMaxConns (issue 13 finding 5): no more than MaxConns connections
// are served at once; a further client waits until one closes, then is
// served.
func TestMaxConns(t *testing.T) {
	lim := shortLimits
	lim.ReadHeaderTimeout, lim.ReadTimeout = time.Minute, time.Minute // silent clients stay
	_, c, sock := serve(t, Options{Controller: &fakeVM{}, Limits: lim})
	var silent []net.Conn
	for range lim.MaxConns {
		s := dial(t, sock)
		silent = append(silent, s)
	}
	done := make(chan int, 1)
	go func() {
		code, _ := c.do("GET", "/", "")
		done <- code
	}()
	select {
	case code := <-done:
		t.Fatalf("served (%d) with %d connections already open", code, lim.MaxConns)
	case <-time.After(500 * time.Millisecond):
	}
	silent[0].Close()
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("status %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not served after a connection closed")
	}
}

func TestLimitsDefault(t *testing.T) {
	if got := (Limits{MaxConns: 3}).orDefault(); got.MaxConns != 3 || got.ReadTimeout != DefaultLimits.ReadTimeout ||
		got.IdleTimeout != DefaultLimits.IdleTimeout || got.MaxHeaderBytes != DefaultLimits.MaxHeaderBytes {
		t.Fatalf("orDefault = %+v", got)
	}
}

// TestOversizedBodyRefusedAtOnce: a request whose Content-Length is over
// the body limit is answered at once, in Firecracker's words, and the
// connection closed, instead of the server waiting (up to ReadTimeout)
// for a body it would refuse; a chunked body over the limit is refused
// as it is read.
func TestOversizedBodyRefusedAtOnce(t *testing.T) {
	lim := shortLimits
	lim.ReadHeaderTimeout, lim.ReadTimeout = time.Minute, time.Minute
	_, _, sock := serve(t, Options{Controller: &fakeVM{}, Limits: lim})
	c := dial(t, sock)
	io.WriteString(c, "PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer within 3 s: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "Request payload with size 100000000 is larger than the limit of 51200 allowed by server.") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	waitDropped(t, c, 3*time.Second)

	// Chunked: no size up front.
	c2 := dial(t, sock)
	chunk := strings.Repeat(" ", 60000)
	fmt.Fprintf(c2, "PUT /machine-config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(chunk), chunk)
	c2.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatalf("chunked: no answer within 3 s: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "at most 51200 bytes") {
		t.Fatalf("chunked: %d %s", resp.StatusCode, b)
	}
}
