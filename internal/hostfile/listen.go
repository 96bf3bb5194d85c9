package hostfile

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// umaskMu serialises Listen's umask changes (the umask is per process).
var umaskMu sync.Mutex

// Listen creates a unix socket listening at path with permissions mode
// (0600 for Flint's sockets unless configured): bind(2) runs with the
// umask narrowed to hide every other bit, so the socket never exists
// with wider permissions and no chmod follows a link. While the umask is
// narrowed, a file another goroutine creates gets fewer permissions,
// never more. A stale socket (nothing accepts on it) is removed first; a
// live one, or any other file at path, is an error. The listener removes
// the socket when closed.
func Listen(path string, mode os.FileMode) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("empty socket path")
	}
	if mode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("socket mode %v: permission bits only", mode)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: checking for a stale socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	umaskMu.Lock()
	old := syscall.Umask(int(0o777 &^ mode))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}
