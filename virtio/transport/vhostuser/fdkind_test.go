package vhostuser_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// notifyFile opens a file of the given kind for a frontend to pass as a
// notification fd.
func notifyFile(t *testing.T, kind string) int {
	t.Helper()
	dir := t.TempDir()
	var fd int
	var err error
	switch kind {
	case "regular":
		fd, err = unix.Open(filepath.Join(dir, "f"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	case "fifo":
		p := filepath.Join(dir, "fifo")
		if err = unix.Mkfifo(p, 0o600); err == nil {
			fd, err = unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
		}
	case "dir":
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	case "null":
		fd, err = unix.Open(os.DevNull, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	case "tcp":
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	case "socket":
		var sp [2]int
		if sp, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
			t.Cleanup(func() { unix.Close(sp[1]) })
			fd = sp[0]
		}
	case "pipe":
		var p [2]int
		if err = unix.Pipe2(p[:], unix.O_CLOEXEC); err == nil {
			t.Cleanup(func() { unix.Close(p[0]) })
			fd = p[1]
		}
	case "eventfd":
		fd, err = unix.Eventfd(0, unix.EFD_CLOEXEC)
	default:
		t.Fatalf("kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestNotifyFDKinds (issue 13 finding 4): call, err and backend-channel
// fds are written by the backend, so they must be eventfds, anonymous
// pipes or unix sockets (UML's socketpairs), and kick fds eventfds: a
// regular file, directory, device node or named FIFO, and a pipe or
// socket as a kick, ends the connection with the reason logged.
func TestNotifyFDKinds(t *testing.T) {
	h := newHarness(t)
	reasons := map[string]string{
		"regular": "a regular file is not an eventfd, pipe or unix socket",
		"fifo":    "a named FIFO is not an eventfd, pipe or unix socket",
		"dir":     "a directory is not an eventfd, pipe or unix socket",
		"null":    "a character device is not an eventfd, pipe or unix socket",
		"tcp":     "a socket of family 2 is not",
	}
	type sender func(t *testing.T, f *vut.Frontend, fd int) error
	requests := map[string]sender{
		"SET_VRING_KICK": func(t *testing.T, f *vut.Frontend, fd int) error { return f.Send(vut.SetVringKick, 0, u64(0), fd) },
		"SET_VRING_CALL": func(t *testing.T, f *vut.Frontend, fd int) error { return f.Send(vut.SetVringCall, 0, u64(1), fd) },
		"SET_VRING_ERR":  func(t *testing.T, f *vut.Frontend, fd int) error { return f.Send(vut.SetVringErr, 0, u64(0), fd) },
		"SET_BACKEND_REQ_FD": func(t *testing.T, f *vut.Frontend, fd int) error {
			if err := f.SetU64(vut.SetProtocolFeatures, vut.ProtocolBackendReq); err != nil {
				t.Fatal(err)
			}
			return f.Send(vut.SetBackendReqFD, 0, nil, fd)
		},
	}
	for req, send := range requests {
		for kind, reason := range reasons {
			t.Run(req+"/"+kind, func(t *testing.T) {
				f := dialIn(t, h)
				if err := send(t, f, notifyFile(t, kind)); err != nil {
					t.Fatal(err)
				}
				expectClosed(t, f)
				h.log.waitLog(t, req+": ")
				h.log.waitLog(t, reason)
			})
		}
		for _, kind := range []string{"eventfd", "pipe", "socket"} {
			if req == "SET_VRING_KICK" && kind != "eventfd" {
				t.Run(req+"/"+kind+"/refused", func(t *testing.T) {
					f := dialIn(t, h)
					if err := send(t, f, notifyFile(t, kind)); err != nil {
						t.Fatal(err)
					}
					expectClosed(t, f)
					h.log.waitLog(t, req+": ring 0: a "+map[string]string{"pipe": "pipe", "socket": "unix socket"}[kind]+" is not an eventfd: kick fds must be")
				})
				continue
			}
			t.Run(req+"/"+kind+"/accepted", func(t *testing.T) {
				f := dialIn(t, h)
				if err := send(t, f, notifyFile(t, kind)); err != nil {
					t.Fatal(err)
				}
				if _, err := f.GetU64(vut.GetFeatures); err != nil {
					t.Fatalf("%s with %s: connection dropped: %v", req, kind, err)
				}
				f.Close()
			})
		}
	}
}

// dialIn connects a frontend that subtest t owns: it is closed when t
// ends, pass or fail, so the next subtest is served.
func dialIn(t *testing.T, h *harness) *vut.Frontend {
	parent := h.t
	h.t = t
	defer func() { h.t = parent }()
	return h.dial()
}
