package vhostuser_test

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestSilentFrontend (issue 13 finding 7): a frontend that connects and
// says nothing is dropped after the handshake timeout, so the next
// frontend is served instead of being refused forever.
func TestSilentFrontend(t *testing.T) {
	h := newHarness(t)
	h.stop() // replaced by a server with a short handshake timeout
	srv, err := vhostuser.New(vhostuser.Config{Device: h.dev, HandshakeTimeout: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(h.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	path := serveOn(t, srv)

	silent, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !srv.Connected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h.log.waitLog(t, "sent no request within 200ms of connecting")
	f, err := vut.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.GetU64(vut.GetFeatures); err != nil {
		t.Fatalf("the next frontend was not served: %v", err)
	}
	time.Sleep(400 * time.Millisecond) // past the handshake: silence is fine now
	if _, err := f.GetU64(vut.GetFeatures); err != nil {
		t.Fatalf("a frontend silent after its first request was dropped: %v", err)
	}
}

// TestSocketMode (issue 13 finding 7): the vhost-user socket is its
// owner's only whatever the umask, or has the mode asked for.
func TestSocketMode(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		open func(string) (*net.UnixListener, error)
	}{
		{0o600, vhostuser.Listen},
		{0o660, func(p string) (*net.UnixListener, error) { return vhostuser.ListenMode(p, 0o660) }},
	} {
		p := filepath.Join(dir, tc.mode.String())
		l, err := tc.open(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		l.Close()
		if err != nil || fi.Mode().Perm() != tc.mode {
			t.Fatalf("socket mode %v (%v), want %v", fi.Mode(), err, tc.mode)
		}
	}
}
