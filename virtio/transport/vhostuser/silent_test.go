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
	const quiet = "sent no request within 200ms of connecting"
	h.log.waitLog(t, quiet)
	// The next frontend is served. It too must send its first request
	// within 200 ms: one that is dropped as silent all the same (this
	// goroutine or the server's preempted that long between the accept
	// and the request's read) tries again, up to five times.
	var f *vut.Frontend
	for try := 1; ; try++ {
		for deadline := time.Now().Add(5 * time.Second); srv.Connected() && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // the dropped frontend's end (else this one is refused as a second)
		}
		dropped := h.log.count(quiet)
		var err error
		if f, err = vut.Dial(path); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, err = f.GetU64(vut.GetFeatures)
		if err == nil {
			break
		}
		if h.log.count(quiet) == dropped || try == 5 {
			t.Fatalf("the next frontend was not served (try %d): %v\n%s", try, err, h.log.String())
		}
		t.Logf("try %d: the next frontend was dropped as silent: %v", try, err)
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
