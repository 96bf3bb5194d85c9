package vsock

// One connection's state, and the device's bookkeeping of connections:
// the map, the FIFO of connections with something for the guest, the
// queue of RSTs for packets that have no connection, and kill.

import (
	"net"
	"sync"
	"time"
)

// connState is where a connection is in its handshake.
type connState uint8

const (
	// stateDialing: the guest sent REQUEST; the unix socket is being
	// dialled.
	stateDialing connState = iota
	// stateConnecting: a host process sent CONNECT; REQUEST is (to be)
	// sent to the guest, whose RESPONSE is awaited.
	stateConnecting
	// stateOpen: data flows.
	stateOpen
)

// Control packets a connection owes the guest (conn.pend bits).
const (
	pRequest uint8 = 1 << iota
	pResponse
	pCredit
)

// conn is one connection. Every field is guarded by Device.mu, except
// that the writer goroutine reads toHost's pending bytes and the reader
// goroutine fills toGuest's free space without it (see ring), and uc's
// methods are called without it.
type conn struct {
	local, peer uint32 // the host's and the guest's port
	uc          net.Conn
	state       connState
	dead        bool // removed from the device: the goroutines end
	dialing     bool // its dial runs (see Device.orphans)

	// The data buffers, of Options.BufSize (the buf_alloc the guest
	// sees) each, exist from stateOpen on (openBuffers): a REQUEST that
	// is refused costs no buffers.
	toHost  ring // guest -> unix
	toGuest ring // unix -> guest

	rxCnt       uint32 // bytes received from the guest
	fwdCnt      uint32 // of them, bytes written to the unix socket
	lastFwdSent uint32 // fwd_cnt in the last packet sent to the guest
	txCnt       uint32 // bytes sent to the guest
	peerAlloc   uint32 // the guest's buf_alloc
	peerFwd     uint32 // the guest's fwd_cnt

	pend       uint8  // pRequest, pResponse, pCredit
	queued     bool   // in Device.ready
	guestShut  uint32 // SHUTDOWN flags the guest sent
	hostEOF    bool   // the unix socket's read side ended
	shutSent   bool   // SHUTDOWN(SEND) sent to the guest
	wrClosed   bool   // the unix socket's write side is shut
	preamble   []byte // "OK <port>\n", written to the unix socket before any data
	timer      *time.Timer
	readerWake sync.Cond
	writerWake sync.Cond
}

func key(local, peer uint32) uint64 { return uint64(local)<<32 | uint64(peer) }

// newConn adds a connection in state st (the caller checked the cap),
// without its data buffers.
func (d *Device) newConn(local, peer uint32, st connState, uc net.Conn) *conn {
	c := &conn{local: local, peer: peer, uc: uc, state: st}
	c.readerWake.L, c.writerWake.L = &d.mu, &d.mu
	d.conns[key(local, peer)] = c
	return c
}

// openBuffers gives c its data buffers as it opens.
func (d *Device) openBuffers(c *conn) {
	c.toHost.buf = make([]byte, d.opts.BufSize)
	c.toGuest.buf = make([]byte, d.opts.BufSize)
}

// full reports whether a new connection would pass MaxConns: the live
// ones and the orphans (removed while their dial runs) count. Called
// with d.mu.
func (d *Device) full() bool { return len(d.conns)+d.orphans >= d.opts.MaxConns }

// credit is how many more bytes the guest can take now.
func (c *conn) credit() uint32 {
	inFlight := c.txCnt - c.peerFwd
	if inFlight > c.peerAlloc {
		return 0 // a guest that lies about fwd_cnt gets nothing
	}
	return c.peerAlloc - inFlight
}

// sendable is how many buffered bytes may go to the guest now.
func (c *conn) sendable() int {
	if c.state != stateOpen || c.guestShut&ShutdownRcv != 0 {
		return 0
	}
	return min(c.toGuest.n, int(min(c.credit(), MaxPayload)))
}

// owes reports whether c has a packet for the guest.
func (c *conn) owes() bool {
	return c.pend != 0 || c.sendable() > 0 || c.eofDue()
}

// eofDue: the unix side ended and everything it sent was delivered.
func (c *conn) eofDue() bool {
	return c.state == stateOpen && c.hostEOF && !c.shutSent && c.toGuest.n == 0
}

// markReady queues c for the rx engine if it owes the guest a packet.
func (d *Device) markReady(c *conn) {
	if c.dead || c.queued || !c.owes() {
		return
	}
	c.queued = true
	d.ready.push(c) // cannot fail: at most MaxConns live connections, each once
	d.kick()
}

// kick wakes the rx engine.
func (d *Device) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// kill removes c: its unix socket is closed (which ends its goroutines'
// blocked calls), and the guest gets an RST if rst. Called with d.mu.
func (d *Device) kill(c *conn, rst bool) {
	if c.dead {
		return
	}
	c.dead = true
	delete(d.conns, key(c.local, c.peer))
	if c.dialing {
		d.orphans++
	}
	if c.queued {
		d.ready.remove(c)
		c.queued = false
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.readerWake.Broadcast()
	c.writerWake.Broadcast()
	d.stats.Inc(cConnsClosed)
	if rst {
		d.queueRST(c.local, c.peer)
	}
	// Last: should Close panic, c is already gone and its goroutines
	// woken, so a contained panic leaves no goroutine waiting for ever.
	if c.uc != nil {
		c.uc.Close()
	}
}

// reply is an RST owed to the guest for a port pair.
type reply struct{ local, peer uint32 }

// rstSlack is room in the RST queue beyond one per connection, for
// replies to packets that name no connection.
const rstSlack = 64

// queueRST queues an RST from host port local to guest port peer; when
// the queue is full it is dropped (counted): the guest's own timeouts
// then end its socket.
func (d *Device) queueRST(local, peer uint32) {
	if !d.active {
		return
	}
	if !d.rsts.push(reply{local, peer}) {
		d.stats.Inc(cRSTDropped)
		return
	}
	d.kick()
}

// fifo is a bounded first-in, first-out queue: the connections with
// something for the guest (each in it at most once), and the RSTs owed.
// Every operation but remove is O(1).
type fifo[T comparable] struct {
	q       []T
	head, n int
}

func (f *fifo[T]) init(n int) { f.q = make([]T, n) }

// push appends x; when the queue is full it drops x and returns false.
func (f *fifo[T]) push(x T) bool {
	if f.n == len(f.q) {
		return false
	}
	f.q[(f.head+f.n)%len(f.q)] = x
	f.n++
	return true
}

// pop takes the oldest element out; ok is false when the queue is empty.
func (f *fifo[T]) pop() (x T, ok bool) {
	if f.n == 0 {
		return x, false
	}
	var zero T
	x, f.q[f.head] = f.q[f.head], zero
	f.head = (f.head + 1) % len(f.q)
	f.n--
	return x, true
}

// clear empties the queue.
func (f *fifo[T]) clear() {
	for f.n > 0 {
		f.pop()
	}
}

// remove takes x out of the queue, keeping the others' order.
func (f *fifo[T]) remove(x T) {
	var zero T
	k := 0
	for i := 0; i < f.n; i++ {
		y := f.q[(f.head+i)%len(f.q)]
		if y != x {
			f.q[(f.head+k)%len(f.q)] = y
			k++
		}
	}
	for i := k; i < f.n; i++ {
		f.q[(f.head+i)%len(f.q)] = zero
	}
	f.n = k
}
