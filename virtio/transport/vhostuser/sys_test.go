package vhostuser_test

import (
	"time"

	"golang.org/x/sys/unix"
)

func pipe(p []int) error { return unix.Pipe2(p, unix.O_CLOEXEC) }

func closeFD(fd int) { unix.Close(fd) }

// readTimeout reads fd once, waiting up to d for data.
func readTimeout(fd int, b []byte, d time.Duration) (int, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, int(d/time.Millisecond)); err != nil || n == 0 {
		return 0, err
	}
	return unix.Read(fd, b)
}
