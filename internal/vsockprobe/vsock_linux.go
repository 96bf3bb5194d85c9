package main

// The guest side: AF_VSOCK sockets through golang.org/x/sys/unix, with
// blocking system calls (a test program: a thread per blocked call is
// fine).

import (
	"golang.org/x/sys/unix"
)

// hostCID is VMADDR_CID_HOST.
const hostCID = 2

type guestEnds struct{}

func (guestEnds) peerPort() uint32 { return HostPort }

// vconn is a connected AF_VSOCK socket.
type vconn struct{ fd int }

func (c vconn) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(c.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, ioEOF
		}
		return n, nil
	}
}

func (c vconn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(c.fd, p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (c vconn) CloseWrite() error { return unix.Shutdown(c.fd, unix.SHUT_WR) }
func (c vconn) Close() error      { return unix.Close(c.fd) }

func (guestEnds) dial(port uint32) (stream, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: hostCID, Port: port}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return vconn{fd}, nil
}

func (guestEnds) listen() (func() (stream, error), error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: GuestPort}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return func() (stream, error) {
		for {
			nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return nil, err
			}
			return vconn{nfd}, nil
		}
	}, nil
}
