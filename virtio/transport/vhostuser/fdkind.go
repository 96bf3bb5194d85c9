package vhostuser

// What kind of file a frontend may pass as a notification fd. The
// backend writes call, err and backend-channel fds and reads kick fds
// from device goroutines; a regular file, directory, device node or named
// FIFO there would make it write into a file the frontend chose, and on
// FUSE or NFS block a device goroutine (and, through Reset, the whole
// backend). Only objects that never block a non-blocking reader or
// writer are accepted:
//
//   - an eventfd (QEMU's kick, call and err fds; UML's kick fds);
//   - an anonymous pipe (some frontends' call fds);
//   - a unix socket (UML's call fds and backend channel: its os_pipe is
//     a socketpair, since UML cannot get SIGIO on an eventfd; QEMU's
//     backend channel).
//
// A named FIFO is refused even though it is a pipe: it lives in a
// directory, so someone other than the frontend may hold its other end.
// So is a socket of another family (TCP, netlink...). A kick fd must be
// an eventfd (takeNotifyFD says why).

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/hostfile"
)

// Magic numbers of statfs(2)'s f_type for the pseudo filesystems.
const (
	anonInodeFSMagic = 0x09041934 // eventfd, timerfd, signalfd, epoll
	pipeFSMagic      = 0x50495045 // anonymous pipes
)

// fdKind is what checkNotifyFD found a notification fd to be.
type fdKind uint8

const (
	kindEventfd fdKind = iota // or, without /proc, any anonymous inode
	kindPipe
	kindSocket
)

var kindNames = [...]string{kindEventfd: "an eventfd", kindPipe: "a pipe", kindSocket: "a unix socket"}

func (k fdKind) String() string { return kindNames[k] }

// checkNotifyFD returns an error saying what fd is when it is not an
// eventfd, an anonymous pipe or a unix socket, and which of them it is.
func checkNotifyFD(fd int) (fdKind, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("fstat: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return 0, fmt.Errorf("fstatfs: %w", err)
	}
	switch {
	case uint32(fs.Type) == pipeFSMagic && st.Mode&unix.S_IFMT == unix.S_IFIFO:
		return kindPipe, nil
	case uint32(fs.Type) == anonInodeFSMagic:
		// Which anonymous inode: /proc says, when it is mounted (a jail
		// may not have it; then any anonymous inode, none of which blocks
		// a non-blocking writer, is taken).
		if link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && link != "anon_inode:[eventfd]" {
			return 0, fmt.Errorf("%s is not an eventfd, pipe or unix socket", link)
		}
		return kindEventfd, nil
	case st.Mode&unix.S_IFMT == unix.S_IFSOCK:
		domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			return 0, fmt.Errorf("socket domain: %w", err)
		}
		if domain != unix.AF_UNIX {
			return 0, fmt.Errorf("a socket of family %d is not an eventfd, pipe or unix socket", domain)
		}
		return kindSocket, nil
	}
	kind := hostfile.Kind(st.Mode)
	if st.Mode&unix.S_IFMT == unix.S_IFIFO {
		kind = "a named FIFO" // anonymous pipes were accepted above
	}
	return 0, fmt.Errorf("%s is not an eventfd, pipe or unix socket", kind)
}
