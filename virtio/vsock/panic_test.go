package vsock

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// fakeConn is a unix side whose Read and Write are the test's: nil ones
// block until Close.
type fakeConn struct {
	net.Conn // nil: a method the device should not call panics
	read     func([]byte) (int, error)
	write    func([]byte) (int, error)
	once     sync.Once
	closed   chan struct{}
}

func newFakeConn(read, write func([]byte) (int, error)) *fakeConn {
	return &fakeConn{read: read, write: write, closed: make(chan struct{})}
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.read != nil {
		return c.read(p)
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *fakeConn) Write(p []byte) (int, error) {
	if c.write != nil {
		return c.write(p)
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *fakeConn) Close() error                    { c.once.Do(func() { close(c.closed) }); return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error { return nil }

// fakeListener hands out the connections sent on conns; accept, when set,
// runs in Accept once a connection (or nil) arrives.
type fakeListener struct {
	net.Listener
	conns  chan net.Conn
	accept func()
	once   sync.Once
	closed chan struct{}
}

func newFakeListener(accept func()) *fakeListener {
	return &fakeListener{conns: make(chan net.Conn, 1), accept: accept, closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		if l.accept != nil {
			l.accept()
		}
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// bug is what a bug in a device goroutine does.
func bug() { var m map[int]int; m[1]++ }

// TestDeviceGoroutinePanicIsContained (issue 13 finding 11): a panic on
// any of the unix side's goroutines (accept, handshake, dial, reader,
// writer) ends that goroutine and the device's service, not the process:
// the device asks for DEVICE_NEEDS_RESET with the goroutine named in the
// reason, later activations are refused, and Close still returns (every
// goroutine accounted for).
func TestDeviceGoroutinePanicIsContained(t *testing.T) {
	for _, tc := range []struct {
		name string
		// opts builds the device's options; act makes the panic happen
		// on the active device.
		opts func(l *fakeListener) Options
		act  func(g *guest, l *fakeListener)
	}{
		{"accept", func(l *fakeListener) Options {
			l.accept = bug
			return Options{Listener: l}
		}, func(g *guest, l *fakeListener) { l.conns <- nil }},
		{"handshake", func(l *fakeListener) Options { return Options{Listener: l} },
			func(g *guest, l *fakeListener) {
				l.conns <- newFakeConn(func([]byte) (int, error) { bug(); return 0, nil }, nil)
			}},
		{"dial", func(*fakeListener) Options {
			return Options{Dial: func(uint32) (net.Conn, error) { bug(); return nil, nil }}
		}, func(g *guest, _ *fakeListener) {
			c := g.gconn(1234, 5000)
			c.send(OpRequest, 0, nil)
		}},
		{"reader", func(*fakeListener) Options {
			return Options{Dial: func(uint32) (net.Conn, error) {
				return newFakeConn(func([]byte) (int, error) { bug(); return 0, nil }, nil), nil
			}}
		}, func(g *guest, _ *fakeListener) { g.connectFromGuest(1234, 5000) }},
		{"writer", func(*fakeListener) Options {
			return Options{Dial: func(uint32) (net.Conn, error) {
				return newFakeConn(nil, func([]byte) (int, error) { bug(); return 0, nil }), nil
			}}
		}, func(g *guest, _ *fakeListener) {
			c := g.connectFromGuest(1234, 5000)
			c.send(OpRW, 0, []byte("to the host"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeListener(nil)
			g := newGuest(t, tc.opts(l))
			tc.act(g, l)
			irq := g.h.IRQ
			if !irq.Wait(5*time.Second, irq.NeedsResetRequested) {
				t.Fatalf("no NeedsReset after a panic in the %s goroutine", tc.name)
			}
			if f := g.dev.guard.Fault(); !strings.Contains(f, "vsock "+tc.name+": device panic: assignment to entry in nil map") {
				t.Fatalf("fault %q", f)
			}
			g.dev.Reset()
			if _, err := virtiotest.Activate(g.dev, Features, virtiotest.Options{}); err == nil || !strings.Contains(err.Error(), "vsock "+tc.name) {
				t.Fatalf("Activate after the panic: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- g.dev.Close() }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hangs after a contained panic")
			}
		})
	}
}

// panicCloseConn is a unix side whose Close closes it and then panics:
// a bug in a socket's Close, reached from kill with the device's lock
// held.
type panicCloseConn struct{ *fakeConn }

func (c panicCloseConn) Close() error { c.fakeConn.Close(); bug(); return nil }

// TestPanicUnderLockIsContained: a panic while the device's lock is held
// on a path that is not a unix-side goroutine (the transmit engine
// handling the guest's RST, the connect timeout's timer) is contained
// like the others: DEVICE_NEEDS_RESET, and Reset and Close return. The
// engine contains a panic in its handler (a bug, or a fault reading
// guest memory), but the transmit handler's unlock was not deferred: the
// lock stayed held and the reset, and so the VMM's exit, waited for it
// for ever; the timer's goroutine had no recover at all and a panic
// there ended the process.
func TestPanicUnderLockIsContained(t *testing.T) {
	for _, tc := range []struct {
		name, where string
		opts        func(l *fakeListener) Options
		act         func(t *testing.T, g *guest, l *fakeListener)
	}{
		{"tx engine", "", func(*fakeListener) Options {
			return Options{Dial: func(uint32) (net.Conn, error) { return panicCloseConn{newFakeConn(nil, nil)}, nil }}
		}, func(t *testing.T, g *guest, _ *fakeListener) {
			c := g.connectFromGuest(1234, 5000)
			// kill closes the socket: the panic. The chain is never
			// completed (the engine stops), so send does not wait for it.
			var hb [HeaderLen]byte
			h := c.hdr(OpRST)
			h.Put(hb[:])
			if _, err := g.tx.Add(qt.R(hb[:])); err != nil {
				t.Fatal(err)
			}
			g.h.Kick(TxQueue)
		}},
		{"connect timer", "vsock connect timer: device panic", func(l *fakeListener) Options {
			return Options{Listener: l, ConnectTimeout: 100 * time.Millisecond}
		}, func(_ *testing.T, g *guest, l *fakeListener) {
			line := strings.NewReader("CONNECT 7\n")
			fc := newFakeConn(nil, nil)
			fc.read = func(p []byte) (int, error) {
				if line.Len() > 0 {
					return line.Read(p)
				}
				<-fc.closed
				return 0, net.ErrClosed
			}
			l.conns <- panicCloseConn{fc}
			g.expect(OpRequest, FirstHostPort, 7) // never answered: the timer kills it
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeListener(nil)
			g := newGuest(t, tc.opts(l))
			tc.act(t, g, l)
			irq := g.h.IRQ
			if !irq.Wait(5*time.Second, irq.NeedsResetRequested) {
				t.Fatalf("no NeedsReset after a panic in the %s", tc.name)
			}
			// The engine's reason goes to the transport; the guard's is the device's.
			if f := g.dev.guard.Fault(); !strings.Contains(f, tc.where) {
				t.Errorf("fault %q, want %q", f, tc.where)
			}
			done := make(chan error, 1)
			go func() {
				g.dev.Reset()
				done <- g.dev.Close()
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Reset and Close hang after a contained panic")
			}
		})
	}
}
