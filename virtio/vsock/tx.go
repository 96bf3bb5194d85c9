package vsock

// The tx queue (guest -> host): every packet is decoded by ParseHeader
// and dispatched to its connection under Device.mu.

import (
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// batch is how many chains an engine completes before it publishes them.
const batch = 32

// engineEvents counts what an engine reports (both handlers embed it).
type engineEvents struct{ d *Device }

// Event counts the engine's events (as New maps them).
func (e *engineEvents) Event(ev virtio.Event) { e.d.stats.Event(ev) }

// txHandler's packets come only with chains, and it never waits for the
// unix side (a full buffer is the guest's credit to respect).
type txHandler struct {
	engineEvents
	virtio.ChainsOnly
	eng virtio.Engine
	hdr [HeaderLen]byte
}

var _ virtio.Handler = (*txHandler)(nil)

// Chain handles one packet; the chain always completes (used length 0:
// the device writes nothing into transmit buffers).
func (t *txHandler) Chain(c *queue.Chain) virtio.Result {
	d := t.d
	if c.WriteLen > 0 {
		d.stats.Inc(cBadChains) // a device-writable buffer on the tx queue
		return virtio.Result{Do: virtio.Done}
	}
	n := c.ReadAt(t.hdr[:], 0)
	h, err := ParseHeader(t.hdr[:n], c.ReadLen, d.opts.GuestCID)
	// Unlocked by defer: a panic here (a bug, a fault reading guest
	// memory) is contained by the engine, and the lock must not stay
	// held (Reset and Close take it).
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.stats.Inc(cBadPackets)
		if n == HeaderLen && h.Op != OpRST && h.SrcPort != 0 && h.DstPort != 0 {
			if cn := d.conns[key(h.DstPort, h.SrcPort)]; cn != nil {
				d.kill(cn, true)
			} else {
				d.queueRST(h.DstPort, h.SrcPort)
			}
		}
	} else {
		d.stats.Inc(cTxPackets)
		d.dispatch(&h, c)
	}
	return virtio.Result{Do: virtio.Done}
}

// dispatch handles one well-formed packet. Called with d.mu.
func (d *Device) dispatch(h *Header, ch *queue.Chain) {
	c := d.conns[key(h.DstPort, h.SrcPort)]
	if c != nil {
		// Every packet carries the guest's credit.
		c.peerAlloc, c.peerFwd = h.BufAlloc, h.FwdCnt
		c.readerWake.Signal()
		d.markReady(c)
	}
	switch h.Op {
	case OpRequest:
		if c != nil { // a second REQUEST for a live connection
			d.refuse(c, h)
			return
		}
		d.guestRequest(h)
	case OpResponse:
		// Not before the REQUEST went out: a guessed port is no answer.
		if c == nil || c.state != stateConnecting || c.pend&pRequest != 0 {
			d.refuse(c, h)
			return
		}
		d.open(c)
	case OpRST:
		if c != nil {
			d.stats.Inc(cConnsReset)
			d.kill(c, false)
		}
	case OpShutdown:
		if c == nil || c.state != stateOpen {
			d.refuse(c, h)
			return
		}
		c.guestShut |= h.Flags
		c.writerWake.Signal()
		c.readerWake.Signal()
		// SHUTDOWN(SEND) then SHUTDOWN(RCV|SEND) (shutdown(SHUT_WR),
		// then close()): the writer already shut the socket's write side
		// and waits no more, so the second ends the connection here.
		d.maybeFinish(c)
	case OpRW:
		if c == nil || c.state != stateOpen || c.guestShut&ShutdownSend != 0 {
			d.refuse(c, h)
			return
		}
		if int(h.Len) > c.toHost.free() {
			d.stats.Inc(cCreditViolations) // beyond the credit the device gave
			d.kill(c, true)
			return
		}
		off := uint64(HeaderLen)
		for got := 0; got < int(h.Len); {
			sp := c.toHost.space()
			k := queue.CopySegs(sp[:min(len(sp), int(h.Len)-got)], ch.Readable, off, false)
			if k == 0 {
				break // cannot happen: ParseHeader checked len against the chain
			}
			c.toHost.produced(k)
			got += k
			off += uint64(k)
		}
		c.rxCnt += h.Len
		d.stats.Add(cTxBytes, uint64(h.Len))
		c.writerWake.Signal()
	case OpCreditUpdate:
		if c == nil {
			d.refuse(c, h)
		}
	case OpCreditRequest:
		// Not before the handshake completes: the CREDIT_UPDATE would go
		// ahead of the RESPONSE.
		if c == nil || c.state != stateOpen {
			d.refuse(c, h)
			return
		}
		c.pend |= pCredit
		d.markReady(c)
	}
}

// refuse answers a packet that does not fit its connection (or names
// none) with RST, resetting the connection if there is one.
func (d *Device) refuse(c *conn, h *Header) {
	d.stats.Inc(cBadPackets)
	if c != nil {
		d.kill(c, true)
		return
	}
	d.queueRST(h.DstPort, h.SrcPort)
}

// guestRequest starts a guest-initiated connection to host port
// h.DstPort: dialled on its own goroutine, answered RESPONSE or RST.
func (d *Device) guestRequest(h *Header) {
	if d.opts.Dial == nil || d.full() {
		d.stats.Inc(cConnsRefused)
		d.queueRST(h.DstPort, h.SrcPort)
		return
	}
	c := d.newConn(h.DstPort, h.SrcPort, stateDialing, nil)
	c.peerAlloc, c.peerFwd = h.BufAlloc, h.FwdCnt
	c.dialing = true
	d.host.Add(1)
	go d.dial(c)
}
