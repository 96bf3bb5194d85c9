package api

import (
	"context"
	"net"
	"net/http"

	"github.com/flintvm/flint/internal/hostfile"
)

// Listen creates the API socket at path, readable and writable by its
// owner only from the moment it exists (hostfile.Listen: no chmod
// window). A stale socket left by a process that died is replaced; a
// socket another process still serves, or any other file, is an error.
// The listener removes the socket when it is closed (Server.Shutdown
// does).
func Listen(path string) (*net.UnixListener, error) {
	return hostfile.Listen(path, 0o600)
}

// Client returns an HTTP client that sends every request to the API socket
// at path, whatever host the URL names (as curl --unix-socket does).
func Client(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
}
