// Package umltest is internal/umlhost for tests: the UML guest's
// initramfs and its run, with a harness that is not installed skipping
// the test (failing it under CI, as internal/testenv says) and a timeout
// failing it with the console, and the vhost-user server UML's
// virtio_uml connects to. The UML tests of virtio/transport/vhostuser
// and virtio/fs use it; their TestMain must call umlhost.MaybeExec.
//
// It imports internal/umlhost, internal/testenv, virtio and
// virtio/transport/vhostuser.
package umltest

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/internal/umlhost"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
)

// Serve serves dev over vhost-user on a socket it creates at sock (what
// UML's virtio_uml.device= names) until tb ends; log nil discards the
// server's messages. It returns the server.
func Serve(tb testing.TB, dev virtio.Device, sock string, log *slog.Logger) *vhostuser.Server {
	tb.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := vhostuser.New(vhostuser.Config{Device: dev, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	l, err := vhostuser.Listen(sock)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	tb.Cleanup(func() { cancel(); <-done })
	return srv
}

// Initramfs is umlhost.Initramfs for tb: a missing harness skips tb (or
// fails it under CI), another error fails it.
func Initramfs(tb testing.TB, dir, init string, mods ...string) string {
	tb.Helper()
	p, err := umlhost.Initramfs(dir, init, mods...)
	if errors.Is(err, umlhost.ErrMissing) {
		testenv.SkipOrFail(tb, err.Error()+" (make setup installs the UML harness)")
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Run is umlhost.Run of UML (umlhost.Binary) with args for tb: it
// returns the console, and fails tb with it on a timeout.
func Run(tb testing.TB, dir string, timeout time.Duration, args ...string) string {
	tb.Helper()
	out, err := umlhost.Run(dir, timeout, append([]string{umlhost.Binary}, args...)...)
	if err != nil {
		tb.Fatalf("%v; console:\n%s", err, out)
	}
	return out
}
