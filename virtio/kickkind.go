package virtio

// Telling an eventfd kick file from the rest, once per bind.

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// procFD is where /proc lists the process's descriptors (a variable for
// the tests, which take /proc away).
var procFD = "/proc/self/fd/"

// isEventfd reports whether fd is an eventfd: a file of the anonymous
// inode file system (statfs f_type ANON_INODE_FS_MAGIC, which eventfds
// share with timerfds, signalfds, epoll and others) that /proc/self/fd
// names anon_inode:[eventfd]. Without /proc (a jail has none), an
// anonymous inode counts as an eventfd when a zero-timeout ppoll finds it
// writable: an eventfd is, until its counter is two short of 2^64, and
// the other anonymous-inode files a frontend could pass (timerfd,
// signalfd, epoll, inotify, pidfd, userfaultfd) never report POLLOUT.
// Anything else, or a failed check, is not an eventfd: its kicks are
// read, which is always correct, only slower. The calls (fstatfs,
// readlinkat, ppoll) are on seccomp's run-time allowlist.
func isEventfd(fd uintptr) bool {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(fd), &fs); err != nil || uint32(fs.Type) != unix.ANON_INODE_FS_MAGIC {
		return false
	}
	if link, err := os.Readlink(procFD + strconv.Itoa(int(fd))); err == nil {
		return link == "anon_inode:[eventfd]"
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Ppoll(pfd, &unix.Timespec{}, nil)
	return err == nil && n == 1 && pfd[0].Revents&(unix.POLLOUT|unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) == unix.POLLOUT
}
