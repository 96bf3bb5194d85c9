package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/internal/hostfile"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	"github.com/flintvm/flint/virtio/transport"
)

// Config is what New needs.
type Config struct {
	// Device is the virtio device served to each frontend in turn. The
	// Server owns its lifecycle while serving: it calls AckFeatures,
	// Activate and Reset, and ReadConfig/WriteConfig for GET_CONFIG and
	// SET_CONFIG. Nobody else may activate or reset it meanwhile.
	Device virtio.Device
	// Log receives connection events and, at Warn, the reason every
	// dropped connection was dropped. Nil discards.
	Log *slog.Logger
	// HandshakeTimeout is how long a new frontend may stay silent before
	// its first request (default DefaultHandshakeTimeout). One that says
	// nothing is dropped then, so it cannot lock the next frontend out.
	// Between requests a frontend may stay silent indefinitely (UML does
	// once its rings run; QEMU until its guest's driver loads).
	HandshakeTimeout time.Duration
}

// DefaultHandshakeTimeout is Config.HandshakeTimeout's default. QEMU and
// UML send their first request as soon as they connect.
const DefaultHandshakeTimeout = 10 * time.Second

// Server is the backend side of vhost-user for one virtio device. It
// serves one frontend at a time: a connection that arrives while another
// is being served is accepted and closed at once, with a logged warning
// (the frontend sees its connection reset on its first request, instead
// of hanging). When a frontend disconnects, the device is reset and its
// memory unmapped, and the next frontend is served from scratch.
type Server struct {
	dev   virtio.Device
	log   *slog.Logger
	hello time.Duration // Config.HandshakeTimeout
	busy  atomic.Bool
	conns atomic.Uint64
	cur   atomic.Pointer[session] // the session being served, for Snapshot
	// refused bounds the lines of connections refused while another
	// frontend is served: a local process can connect in a loop.
	refused transport.LogLimit
}

// ErrBusy is returned by ServeConn while another frontend is served.
var ErrBusy = errors.New("vhost-user: a frontend is already connected")

// New checks cfg and returns a Server. The device must have 1 to 256
// queues (ring indices are 8 bits wide), each with a valid maximum size.
func New(cfg Config) (*Server, error) {
	if cfg.Device == nil {
		return nil, errors.New("vhost-user: no device")
	}
	maxes := cfg.Device.QueueMaxSizes()
	if len(maxes) == 0 || len(maxes) > vringFDIndexMask+1 {
		return nil, fmt.Errorf("vhost-user: %v device has %d queues, want 1 to %d", cfg.Device.Type(), len(maxes), vringFDIndexMask+1)
	}
	for i, mx := range maxes {
		if _, err := queue.New(mx); err != nil {
			return nil, fmt.Errorf("vhost-user: %v device queue %d: %w", cfg.Device.Type(), i, err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hello := cfg.HandshakeTimeout
	if hello <= 0 {
		hello = DefaultHandshakeTimeout
	}
	return &Server{dev: cfg.Device, log: log.With("vhost-user", cfg.Device.Type().String()), hello: hello}, nil
}

// Connected reports whether a frontend is being served now.
func (s *Server) Connected() bool { return s.busy.Load() }

// Connections counts the connections served so far (refused ones not
// included).
func (s *Server) Connections() uint64 { return s.conns.Load() }

// Snapshot returns the served device's state for a debug dump: Kind
// "vhost-user", the negotiated features, whether the device runs, each
// ring's words in the frontend's memory (a ring counts as enabled while
// it is started) and the device's engines. Without a frontend only the
// engines are reported. It waits for the session's lock at most
// transport.SnapshotWait (Busy). Safe from any goroutine.
func (s *Server) Snapshot() transport.Snapshot {
	snap := transport.Snapshot{Kind: "vhost-user", Device: s.dev.Type(),
		Queues: make([]transport.QueueSnapshot, len(s.dev.QueueMaxSizes()))}
	for i := range snap.Queues {
		snap.Queues[i].Index = i
	}
	if sess := s.cur.Load(); sess != nil {
		if transport.LockWithin(&sess.mu, transport.SnapshotWait) {
			err := faultSafe("snapshot", func() error {
				defer sess.mu.Unlock()
				snap.Features = sess.features &^ (1 << FeatureProtocolFeatures)
				snap.Active = sess.act != nil
				for i := range sess.rings {
					r := &sess.rings[i]
					if i < len(snap.Queues) {
						snap.Queues[i].Enabled = r.kick != nil
						snap.Queues[i].Ring = r.q.RingState() // reads the rings
					}
				}
				return nil
			})
			if err != nil {
				s.log.Warn("vhost-user snapshot", "err", err)
			}
		} else {
			snap.Busy = true
		}
	}
	transport.AddEngines(snap.Queues, s.dev)
	return snap
}

// Serve accepts frontends on l until ctx is cancelled or l fails. It
// closes l, and waits for the active session to end, before it returns. Cancelling ctx closes the active connection,
// resets the device, unmaps the frontend's memory and closes its fds;
// Serve then returns nil. A frontend's protocol error ends only that
// connection (logged at Warn); Serve keeps accepting.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	delay := time.Duration(0)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and friends: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("vhost-user accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		uc, ok := c.(*net.UnixConn)
		if !ok {
			s.log.Warn("vhost-user: not a unix socket connection; closed", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		if !s.busy.CompareAndSwap(false, true) {
			s.refused.Log(s.log, slog.LevelWarn, "vhost-user: refused a second frontend while one is connected")
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.busy.Store(false)
			s.serve(ctx, uc)
		}()
	}
}

// ServeConn serves one already-connected frontend (a socketpair, or a
// socket inherited with --fd) until it disconnects, breaks the protocol
// or ctx is cancelled, and closes c. It returns nil when the frontend
// closed the connection or ctx was cancelled, the reason otherwise, and
// ErrBusy (closing c) if another frontend is being served.
func (s *Server) ServeConn(ctx context.Context, c *net.UnixConn) error {
	if !s.busy.CompareAndSwap(false, true) {
		c.Close()
		return ErrBusy
	}
	defer s.busy.Store(false)
	return s.serve(ctx, c)
}

func (s *Server) serve(ctx context.Context, c *net.UnixConn) error {
	n := s.conns.Add(1)
	log := s.log.With("conn", n)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	sess, err := newSession(s.dev, log, newMsgConn(c))
	if err != nil {
		return err
	}
	log.Info("vhost-user frontend connected")
	s.cur.Store(sess)
	// The first request must come within the handshake timeout; the
	// deadline is cleared once its header arrived (msgConn.readMsg).
	c.SetReadDeadline(time.Now().Add(s.hello))
	err = sess.run()
	if sess.requests == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the frontend sent no request within %v of connecting", s.hello)
	}
	sess.end()
	s.cur.Store(nil)
	switch {
	case ctx.Err() != nil:
		log.Info("vhost-user frontend disconnected: shutting down")
		return nil
	case errors.Is(err, errEOF):
		log.Info("vhost-user frontend disconnected")
		return nil
	}
	log.Warn("vhost-user connection closed", "reason", err)
	return err
}

// run reads and handles requests until one fails.
func (s *session) run() error {
	var m message
	defer m.close()
	for {
		if err := s.conn.next(&m); err != nil {
			return err
		}
		s.requests++
		s.log.Debug("vhost-user request", "request", m.hdr.Request, "flags", m.hdr.Flags, "size", m.hdr.Size, "fds", len(m.fds))
		if err := faultSafe(m.hdr.Request.String(), func() error { return s.handle(&m) }); err != nil {
			return err
		}
	}
}

// Listen creates a unix socket listening at path for Serve, readable and
// writable by its owner only (ListenMode with 0600).
func Listen(path string) (*net.UnixListener, error) { return ListenMode(path, 0o600) }

// ListenMode creates a unix socket listening at path for Serve, with
// permissions mode from the moment it exists (hostfile.Listen: no chmod
// window, whatever the umask). A stale socket file left by a previous run
// (nothing accepts on it) is removed first; a live one, or any other
// file, is an error. The file is removed when the listener closes.
func ListenMode(path string, mode os.FileMode) (*net.UnixListener, error) {
	l, err := hostfile.Listen(path, mode)
	if err != nil {
		return nil, fmt.Errorf("vhost-user: %w", err)
	}
	return l, nil
}
