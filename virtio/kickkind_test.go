package virtio

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestIsEventfd: the kind check at bind, with /proc and without it (a
// jail): only an eventfd is one; a pipe, a unix socket, a timerfd and a
// signalfd (anonymous inodes like the eventfd), an epoll file and a
// regular file are not. Taking any of them for an eventfd would leave its
// kicks unread (a pipe fills and blocks its writer); missing the eventfd
// would cost a read per wake.
func TestIsEventfd(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	var mask unix.Sigset_t
	sfd, err := unix.Signalfd(-1, &mask, unix.SFD_CLOEXEC|unix.SFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := os.Create(filepath.Join(t.TempDir(), "kick"))
	if err != nil {
		t.Fatal(err)
	}
	fds := []int{efd, p[0], p[1], sp[0], tfd, sfd, epfd}
	t.Cleanup(func() {
		reg.Close()
		for _, fd := range append(fds, sp[1]) {
			unix.Close(fd)
		}
	})
	cases := []struct {
		name string
		fd   int
		want bool
	}{{"eventfd", efd, true}, {"pipe read end", p[0], false}, {"pipe write end", p[1], false},
		{"unix socket", sp[0], false}, {"timerfd", tfd, false}, {"signalfd", sfd, false},
		{"epoll", epfd, false}, {"regular file", int(reg.Fd()), false}, {"closed", 1 << 20, false}}
	check := func(t *testing.T) {
		for _, c := range cases {
			if got := isEventfd(uintptr(c.fd)); got != c.want {
				t.Errorf("%s: isEventfd %v, want %v", c.name, got, c.want)
			}
		}
	}
	t.Run("proc", check)
	t.Run("no-proc", func(t *testing.T) {
		defer func(p string) { procFD = p }(procFD)
		procFD = filepath.Join(t.TempDir(), "absent") + "/"
		check(t)
	})
}

// TestKickReaderBindKind: bind takes a non-blocking eventfd for one and
// a pipe or a socket for none, and forgets it when rebound.
func TestKickReaderBindKind(t *testing.T) {
	e, _ := kickEventfd(t)
	p, _ := kickPipe(t, true)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := os.NewFile(uintptr(sp[0]), "kick-socket")
	t.Cleanup(func() { s.Close(); unix.Close(sp[1]) })
	var k kickReader
	for _, c := range []struct {
		name string
		f    *os.File
		want bool
	}{{"eventfd", e, true}, {"pipe", p, false}, {"eventfd again", e, true}, {"socket", s, false}} {
		k.bind(c.f)
		if k.eventfd != c.want || k.rc == nil {
			t.Errorf("%s: eventfd %v raw %v, want %v and raw", c.name, k.eventfd, k.rc != nil, c.want)
		}
	}
	k.bind(nil)
	if k.eventfd {
		t.Error("bind(nil) kept the eventfd mark")
	}
}
