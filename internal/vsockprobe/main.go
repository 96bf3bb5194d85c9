// Command vsockprobe is both ends of the virtio-vsock end-to-end case
// (tests/config_test.go, scripts/config-case.sh, scripts/config-guest.sh):
// in the guest over AF_VSOCK, on the host over Firecracker's unix
// sockets (CONNECT <port> on the device's uds_path, guest connections
// arriving on <uds_path>_<port>).
//
//	vsockprobe guest [-conns N] [-size BYTES] [-timeout D]
//	vsockprobe host -uds PATH [-conns N] [-size BYTES] [-timeout D]
//
// Each side opens N connections to the other (the host to guest port
// GuestPort, the guest to host port HostPort) plus one that vanishes
// mid-stream, all at once, and serves the other side's N+1 on its
// listener. On every connection both ends send BYTES random bytes, shut
// their sending side and read to EOF at the same time; each end prints
// the SHA-256 of what it sent and of what it received, so the test can
// compare both ends. The vanishing connection's opener sends a quarter
// of its bytes and closes the socket without reading; its other end
// must survive (and report a short or failed transfer). Each side also
// checks that a port nobody serves is refused. Lines (one per
// connection end, then a summary; values have no spaces):
//
//	CFG-VSOCK side=S init=I id=N kind=normal|vanish sent=B sent_sha=H recv=B recv_sha=H result=ok|short|err:...|vanished
//	CFG-VSOCK-REFUSED side=S port=P result=ok|fail:...
//	CFG-VSOCK-DONE side=S result=ok|timeout
//
// It is a test program: static (CGO_ENABLED=0), the standard library and
// golang.org/x/sys/unix only.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ports of the case.
const (
	GuestPort   = 5000 // the guest listens here (host-initiated connections)
	HostPort    = 6000 // <uds>_6000: the host listens here (guest-initiated)
	refusedPort = 5999 // nobody listens (both sides try it)
	// DefaultConns and DefaultSize are -conns and -size (tests/ checks
	// against them).
	DefaultConns = 3
	DefaultSize  = 512 << 10
	hdrMagic     = "FLVS"
	hdrLen       = 16 // magic, id, kind, size
)

// stream is one connection end.
type stream interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
}

var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

func say(format string, a ...any) {
	out.Lock()
	fmt.Fprintf(out.w, format+"\n", a...)
	out.w.Flush()
	out.Unlock()
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "guest" && os.Args[1] != "host") {
		fmt.Fprintln(os.Stderr, "usage: vsockprobe guest|host [-uds PATH] [-conns N] [-size BYTES] [-timeout D]")
		os.Exit(2)
	}
	side := os.Args[1]
	fs := flag.NewFlagSet(side, flag.ExitOnError)
	uds := fs.String("uds", "", "the vsock device's uds_path (host)")
	conns := fs.Int("conns", DefaultConns, "normal connections each way")
	size := fs.Int("size", DefaultSize, "bytes each end sends per connection")
	timeout := fs.Duration("timeout", 150*time.Second, "give up after")
	fs.Parse(os.Args[2:])
	var e ends
	if side == "guest" {
		e = guestEnds{}
	} else {
		if *uds == "" {
			fmt.Fprintln(os.Stderr, "vsockprobe host: -uds is required")
			os.Exit(2)
		}
		e = hostEnds{uds: *uds}
	}
	ok := run(side, e, *conns, *size, time.Now().Add(*timeout))
	if !ok {
		say("CFG-VSOCK-DONE side=%s result=timeout", side)
		os.Exit(1)
	}
	say("CFG-VSOCK-DONE side=%s result=ok", side)
}

// ends is one side's way of connecting and listening.
type ends interface {
	// dial opens a connection to the other side's port (refused: an
	// error).
	dial(port uint32) (stream, error)
	// listen serves the other side's connections.
	listen() (func() (stream, error), error)
	peerPort() uint32
}

// run opens conns+1 connections and serves conns+1; it reports whether
// everything finished before the deadline.
func run(side string, e ends, conns, size int, deadline time.Time) bool {
	accept, err := e.listen()
	if err != nil {
		say("CFG-VSOCK side=%s result=err:listen:%s", side, word(err))
		return false
	}
	other := map[string]string{"guest": "host", "host": "guest"}[side]
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the other side's connections
		defer wg.Done()
		var cw sync.WaitGroup
		for range conns + 1 {
			s, err := accept()
			if err != nil {
				say("CFG-VSOCK side=%s init=%s result=err:accept:%s", side, other, word(err))
				return
			}
			cw.Add(1)
			go func() { defer cw.Done(); serve(side, other, s, size) }()
		}
		cw.Wait()
	}()
	// The first connection waits for the other side to listen; the
	// others start once it is through.
	first, err := dialRetry(e, deadline)
	if err != nil {
		say("CFG-VSOCK side=%s init=%s id=0 result=err:dial:%s", side, side, word(err))
		return false
	}
	for id := range conns + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := first
			if id > 0 {
				var err error
				if s, err = dialRetry(e, deadline); err != nil {
					say("CFG-VSOCK side=%s init=%s id=%d result=err:dial:%s", side, side, id, word(err))
					return
				}
			}
			kind := "normal"
			if id == conns {
				kind = "vanish"
			}
			open(side, s, id, kind, size)
		}()
	}
	if _, err := e.dial(refusedPort); err == nil {
		say("CFG-VSOCK-REFUSED side=%s port=%d result=fail:connected", side, refusedPort)
	} else {
		say("CFG-VSOCK-REFUSED side=%s port=%d result=ok", side, refusedPort)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(time.Until(deadline)):
		return false
	}
}

// dialRetry dials the peer's port until it answers or the deadline.
func dialRetry(e ends, deadline time.Time) (stream, error) {
	for {
		s, err := e.dial(e.peerPort())
		if err == nil || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// open runs the opening end of connection id: the header, then data both
// ways (or, for kind vanish, a quarter of the data and an abrupt close).
func open(side string, s stream, id int, kind string, size int) {
	var h [hdrLen]byte
	copy(h[:], hdrMagic)
	binary.LittleEndian.PutUint32(h[4:], uint32(id))
	if kind == "vanish" {
		binary.LittleEndian.PutUint32(h[8:], 1)
	}
	binary.LittleEndian.PutUint32(h[12:], uint32(size))
	if _, err := s.Write(h[:]); err != nil {
		say("CFG-VSOCK side=%s init=%s id=%d kind=%s result=err:header:%s", side, side, id, kind, word(err))
		s.Close()
		return
	}
	if kind == "vanish" {
		n, sum, _ := send(s, size/4)
		s.Close()
		say("CFG-VSOCK side=%s init=%s id=%d kind=vanish sent=%d sent_sha=%s recv=0 recv_sha=- result=vanished", side, side, id, n, sum)
		return
	}
	transfer(side, side, s, id, kind, size)
}

// serve runs the accepting end of a connection.
func serve(side, init string, s stream, size int) {
	var h [hdrLen]byte
	if _, err := io.ReadFull(s, h[:]); err != nil || string(h[:4]) != hdrMagic {
		say("CFG-VSOCK side=%s init=%s result=err:header:%s", side, init, word(err))
		s.Close()
		return
	}
	id := int(binary.LittleEndian.Uint32(h[4:]))
	kind := "normal"
	if binary.LittleEndian.Uint32(h[8:]) == 1 {
		kind = "vanish"
	}
	transfer(side, init, s, id, kind, int(binary.LittleEndian.Uint32(h[12:])))
}

// transfer sends size bytes and reads to EOF at the same time, then
// reports both hashes.
func transfer(side, init string, s stream, id int, kind string, size int) {
	defer s.Close()
	type res struct {
		n   int
		sum string
		err error
	}
	sent := make(chan res, 1)
	go func() {
		n, sum, err := send(s, size)
		if err == nil {
			err = s.CloseWrite()
		}
		sent <- res{n, sum, err}
	}()
	hr := sha256.New()
	rn, rerr := io.Copy(hr, s)
	w := <-sent
	result := "ok"
	switch {
	case rerr != nil:
		result = "err:read:" + word(rerr)
	case w.err != nil:
		result = "err:write:" + word(w.err)
	case int(rn) != size:
		result = "short"
	}
	say("CFG-VSOCK side=%s init=%s id=%d kind=%s sent=%d sent_sha=%s recv=%d recv_sha=%s result=%s",
		side, init, id, kind, w.n, w.sum, rn, hex.EncodeToString(hr.Sum(nil)), result)
}

// send writes n random bytes and returns how many went out and the
// SHA-256 of those.
func send(w io.Writer, n int) (int, string, error) {
	h := sha256.New()
	buf := make([]byte, 32<<10)
	done := 0
	var err error
	for done < n {
		b := buf[:min(len(buf), n-done)]
		rand.Read(b)
		var k int
		k, err = w.Write(b)
		h.Write(b[:k])
		done += k
		if err != nil {
			break
		}
	}
	return done, hex.EncodeToString(h.Sum(nil)), err
}

// word makes an error one word for a key=value line.
func word(err error) string {
	if err == nil {
		return "-"
	}
	return strings.NewReplacer(" ", "_", "=", ":").Replace(err.Error())
}

// hostEnds is the host side: Firecracker's unix sockets.
type hostEnds struct{ uds string }

func (hostEnds) peerPort() uint32 { return GuestPort }

// dial connects to the guest's port through CONNECT; a closed connection
// without "OK <port>" is a refusal.
func (h hostEnds) dial(port uint32) (stream, error) {
	c, err := net.DialTimeout("unix", h.uds, 5*time.Second)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	if _, err := fmt.Fprintf(uc, "CONNECT %d\n", port); err != nil {
		uc.Close()
		return nil, err
	}
	// Read the answer a byte at a time: what follows is the guest's data.
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var line []byte
	var b [1]byte
	for len(line) < 32 {
		if _, err := io.ReadFull(uc, b[:]); err != nil {
			uc.Close()
			return nil, fmt.Errorf("no OK: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	uc.SetReadDeadline(time.Time{})
	p, ok := strings.CutPrefix(string(line), "OK ")
	if _, err := strconv.ParseUint(p, 10, 32); !ok || err != nil {
		uc.Close()
		return nil, fmt.Errorf("answer %q, want OK <port>", line)
	}
	return uc, nil
}

func (h hostEnds) listen() (func() (stream, error), error) {
	l, err := net.Listen("unix", fmt.Sprintf("%s_%d", h.uds, HostPort))
	if err != nil {
		return nil, err
	}
	return func() (stream, error) {
		c, err := l.Accept()
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}, nil
}

var ioEOF = io.EOF
