package vsock

// The unix side: the listener's CONNECT handshake, the dial of
// guest-initiated connections, and each open connection's reader and
// writer goroutines.

import (
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// maxConnectLine bounds "CONNECT <port>\n".
const maxConnectLine = 32

// accept serves the listener until Close.
func (d *Device) accept() {
	defer d.host.Done()
	defer d.guard.Recover("vsock accept")
	for {
		uc, err := d.opts.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.stats.Inc(cAcceptErrors)
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: do not spin
			continue
		}
		// At most MaxConns CONNECT lines are read at once.
		if int(d.pending.Add(1)) > d.opts.MaxConns {
			d.pending.Add(-1)
			d.stats.Inc(cConnsRefused)
			uc.Close()
			continue
		}
		d.mu.Lock()
		if d.shut {
			d.mu.Unlock()
			uc.Close()
			d.pending.Add(-1)
			continue
		}
		d.lines[uc] = struct{}{}
		d.mu.Unlock()
		d.host.Add(1)
		go d.handshake(uc)
	}
}

// handshake reads "CONNECT <port>\n" (one byte at a time: bytes the host
// sends after it are the connection's data) and asks the guest for the
// connection.
func (d *Device) handshake(uc net.Conn) {
	defer d.host.Done()
	defer d.guard.Recover("vsock handshake")
	defer d.pending.Add(-1) // deferred: a panic must not leak the slot
	port, ok := readConnect(uc, time.Now().Add(d.opts.ConnectTimeout))
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.lines, uc)
	if !ok || !d.active || d.shut || d.full() {
		d.stats.Inc(cConnsRefused)
		uc.Close()
		return
	}
	local := d.allocPort(port)
	c := d.newConn(local, port, stateConnecting, uc)
	c.peerAlloc = 0 // no credit until the guest's RESPONSE
	c.pend |= pRequest
	c.timer = time.AfterFunc(d.opts.ConnectTimeout, func() {
		defer d.guard.Recover("vsock connect timer") // its own goroutine too
		d.mu.Lock()
		defer d.mu.Unlock()
		if !c.dead && c.state == stateConnecting {
			d.stats.Inc(cConnsRefused)
			d.kill(c, true)
		}
	})
	d.markReady(c)
}

// readConnect reads one "CONNECT <port>\n" line before deadline.
func readConnect(uc net.Conn, deadline time.Time) (uint32, bool) {
	uc.SetReadDeadline(deadline)
	defer uc.SetReadDeadline(time.Time{})
	var line [maxConnectLine]byte
	n := 0
	for {
		if n == len(line) {
			return 0, false
		}
		if _, err := io.ReadFull(uc, line[n:n+1]); err != nil {
			return 0, false
		}
		if line[n] == '\n' {
			break
		}
		n++
	}
	return ParseConnect(line[:n])
}

// ParseConnect parses the CONNECT line without its newline: "CONNECT
// <port>", port a decimal in [1, 2^32-1] (no sign, no leading zeros
// beyond "0" itself, which is refused as port 0).
func ParseConnect(b []byte) (uint32, bool) {
	const verb = "CONNECT "
	if len(b) <= len(verb) || string(b[:len(verb)]) != verb {
		return 0, false
	}
	digits := b[len(verb):]
	if digits[len(digits)-1] == '\r' {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 || len(digits) > 10 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	var v uint64
	for _, ch := range digits {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		v = v*10 + uint64(ch-'0')
	}
	if v == 0 || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// allocPort picks the next host port not in use with guest port peer.
// Called with d.mu (fewer than 2^30 connections exist, so it ends).
func (d *Device) allocPort(peer uint32) uint32 {
	for {
		p := d.nextPort
		d.nextPort++
		if d.nextPort == 0 {
			d.nextPort = FirstHostPort
		}
		if d.conns[key(p, peer)] == nil {
			return p
		}
	}
}

// dial connects a guest-initiated connection's unix side.
func (d *Device) dial(c *conn) {
	defer d.host.Done()
	defer d.guard.Recover("vsock dial")
	uc, err := d.opts.Dial(c.local)
	d.mu.Lock()
	defer d.mu.Unlock()
	c.dialing = false
	if c.dead {
		d.orphans-- // its place under MaxConns is free now
		if uc != nil {
			uc.Close()
		}
		return
	}
	if err != nil {
		d.stats.Inc(cConnsRefused)
		d.kill(c, true)
		return
	}
	c.uc = uc
	c.pend |= pResponse
	d.stats.Inc(cConnsGuest)
	d.start(c)
}

// open completes a host-initiated connection: the guest accepted.
// Called with d.mu.
func (d *Device) open(c *conn) {
	c.timer.Stop()
	c.preamble = strconv.AppendUint(append([]byte(nil), "OK "...), uint64(c.local), 10)
	c.preamble = append(c.preamble, '\n')
	d.stats.Inc(cConnsHost)
	d.start(c)
}

// start opens c for data and starts its goroutines. Called with d.mu.
func (d *Device) start(c *conn) {
	c.state = stateOpen
	d.openBuffers(c)
	d.host.Add(2)
	go d.reader(c)
	go d.writer(c)
	d.markReady(c)
}

// reader moves bytes from the unix socket to toGuest, as far as the
// guest's credit allows.
func (d *Device) reader(c *conn) {
	defer d.host.Done()
	defer d.guard.Recover("vsock reader")
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		room := 0
		for !c.dead && !c.hostEOF {
			room = min(len(c.toGuest.space()), int(c.credit())-c.toGuest.n)
			if c.guestShut&ShutdownRcv != 0 {
				room = 0 // the guest takes no more: leave the bytes in the socket
			}
			if room > 0 {
				break
			}
			c.readerWake.Wait()
		}
		if c.dead || c.hostEOF {
			return
		}
		sp := c.toGuest.space()[:room]
		var n int
		var err error
		d.unlocked(func() { n, err = c.uc.Read(sp) })
		if c.dead {
			return
		}
		c.toGuest.produced(n)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			c.hostEOF = true
		default:
			d.stats.Inc(cHostErrors)
			d.kill(c, true) // the unix peer vanished
			return
		}
		d.markReady(c)
	}
}

// writer moves bytes from toHost to the unix socket and credits the
// guest as the socket takes them; once the guest shut its sending side
// and everything is written, it shuts the socket's write side.
func (d *Device) writer(c *conn) {
	defer d.host.Done()
	defer d.guard.Recover("vsock writer")
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for !c.dead && c.preamble == nil && c.toHost.n == 0 && (c.guestShut&ShutdownSend == 0 || c.wrClosed) {
			c.writerWake.Wait()
		}
		if c.dead {
			return
		}
		var p []byte
		switch {
		case c.preamble != nil:
			p = c.preamble
		case c.toHost.n > 0:
			p = c.toHost.data()
		default: // the guest sends no more and all is written
			c.wrClosed = true
			if cw, ok := c.uc.(interface{ CloseWrite() error }); ok {
				d.unlocked(func() { cw.CloseWrite() })
			}
			d.maybeFinish(c)
			continue
		}
		var n int
		var err error
		d.unlocked(func() { n, err = c.uc.Write(p) })
		if c.dead {
			return
		}
		if err != nil {
			d.stats.Inc(cHostErrors)
			d.kill(c, true) // the unix peer vanished
			return
		}
		if c.preamble != nil {
			c.preamble = nil
			continue
		}
		c.toHost.consumed(n)
		c.fwdCnt += uint32(n)
		// Credit the guest once its view of our free space is below
		// half the buffer (a data packet carries it too).
		if seen := c.rxCnt - c.lastFwdSent; int(seen) > c.toHost.size()/2 {
			c.pend |= pCredit
			d.markReady(c)
		}
	}
}

// unlocked runs f (a socket call) with d.mu released, and takes it back
// even when f panics: the caller's deferred Unlock then stays balanced
// (an unlock of an unlocked mutex is a fatal error, not a panic Guard
// could contain).
func (d *Device) unlocked(f func()) {
	d.mu.Unlock()
	defer d.mu.Lock()
	f()
}

// maybeFinish ends c once both directions are closed: the guest shut
// both sides (its close) or shut sending while the unix side reached EOF
// and was told so; the guest's data must have reached the socket first.
// Called with d.mu.
func (d *Device) maybeFinish(c *conn) {
	if c.dead || c.toHost.n > 0 || c.preamble != nil {
		return
	}
	guestDone := c.guestShut == shutdownBoth || (c.guestShut&ShutdownSend != 0 && c.shutSent)
	if guestDone && (c.wrClosed || c.guestShut == shutdownBoth) {
		d.kill(c, true)
	}
}
