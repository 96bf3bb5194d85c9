// Command netrr measures request-response latency for the network
// benchmarks (scripts/uml-net-case.sh --rr), as netperf's TCP_RR does:
// it sends requests of -size bytes to an echo server at -addr one at a
// time, each after the last one's echo, over TCP (TCP_NODELAY; busybox's
// `nc -ll -e cat` serves it) or UDP, and prints the round trips as one
// line of key=value figures (see summary). Its sockets block, so that
// its own side adds a system call's wake-up to each trip, not a Go
// scheduler's.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	addr := flag.String("addr", "", "echo server, IPv4 address:port (required)")
	proto := flag.String("proto", "tcp", "tcp or udp")
	n := flag.Int("n", 2000, "round trips measured")
	warm := flag.Int("warmup", 100, "round trips before the measured ones")
	size := flag.Int("size", 64, "request bytes, 8 to 1400")
	wait := flag.Duration("timeout", time.Second, "how long to wait for one echo: then the request counts as lost")
	flag.Parse()
	if err := run(*proto, *addr, *n, *warm, *size, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "netrr:", err)
		os.Exit(2)
	}
}

func run(proto, addr string, n, warm, size int, wait time.Duration) error {
	ap, err := netip.ParseAddrPort(addr)
	switch {
	case proto != "tcp" && proto != "udp":
		return fmt.Errorf("-proto %q: want tcp or udp", proto)
	case err != nil || !ap.Addr().Is4():
		return fmt.Errorf("-addr %q: want an IPv4 address:port", addr)
	case n < 1 || warm < 0:
		return errors.New("-n must be at least 1 and -warmup at least 0")
	case size < 8 || size > 1400:
		return fmt.Errorf("-size %d: want 8 to 1400", size)
	case wait <= 0:
		return errors.New("-timeout must be positive")
	}
	c, err := dial(proto, ap, wait)
	if err != nil {
		return err
	}
	defer unix.Close(c.fd)
	c.req, c.resp = make([]byte, size), make([]byte, size+1)
	rtts := make([]time.Duration, 0, n)
	lost := 0
	start := time.Now()
	for i := range warm + n {
		if i == warm {
			start = time.Now()
		}
		d, ok, err := c.trip(uint64(i))
		if err != nil {
			return err
		}
		if i < warm {
			continue
		}
		if !ok {
			lost++
			continue
		}
		rtts = append(rtts, d)
	}
	fmt.Println(summary(rtts, lost, time.Since(start)))
	return nil
}

// conn is a connected, blocking socket with a receive timeout.
type conn struct {
	fd        int
	stream    bool // TCP: an echo may come in pieces, and none is lost
	req, resp []byte
}

func dial(proto string, ap netip.AddrPort, wait time.Duration) (*conn, error) {
	typ, stream := unix.SOCK_DGRAM, proto == "tcp"
	if stream {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c := &conn{fd: fd, stream: stream}
	if err := c.setup(ap, wait); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

func (c *conn) setup(ap netip.AddrPort, wait time.Duration) error {
	tv := unix.NsecToTimeval(wait.Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	if c.stream {
		if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return fmt.Errorf("TCP_NODELAY: %w", err)
		}
	}
	if err := unix.Connect(c.fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		return fmt.Errorf("connect %v: %w", ap, err)
	}
	return nil
}

// trip sends request seq and waits for its echo; ok is false when none
// came within the timeout (UDP: the request counts as lost, and older
// echoes that turn up later are skipped; TCP: an error, since the
// stream can no longer be matched up).
func (c *conn) trip(seq uint64) (time.Duration, bool, error) {
	binary.LittleEndian.PutUint64(c.req, seq)
	t0 := time.Now()
	if _, err := unix.Write(c.fd, c.req); err != nil {
		return 0, false, fmt.Errorf("send: %w", err)
	}
	got := 0
	for {
		buf := c.resp
		if c.stream {
			buf = c.resp[got:len(c.req)]
		}
		m, err := unix.Read(c.fd, buf)
		switch {
		case err == unix.EAGAIN || err == unix.EWOULDBLOCK:
			if c.stream {
				return 0, false, errors.New("no echo within the timeout")
			}
			return 0, false, nil
		case err == unix.EINTR:
			continue
		case err == unix.ECONNREFUSED:
			return 0, false, errors.New("the echo server refused (nothing listens)")
		case err != nil:
			return 0, false, fmt.Errorf("receive: %w", err)
		case m == 0 && c.stream:
			return 0, false, errors.New("the echo server closed the connection")
		}
		if c.stream {
			if got += m; got < len(c.req) {
				continue
			}
			if binary.LittleEndian.Uint64(c.resp) != seq {
				return 0, false, fmt.Errorf("echo of request %d carries %d", seq, binary.LittleEndian.Uint64(c.resp))
			}
			return time.Since(t0), true, nil
		}
		if m == len(c.req) && binary.LittleEndian.Uint64(c.resp) == seq {
			return time.Since(t0), true, nil
		}
	}
}
