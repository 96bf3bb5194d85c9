package vsock

// The rx queue (host -> guest): each receive chain gets one packet, the
// first owed: a queued RST, else the next ready connection's control
// packet or data (round robin).

import (
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

type rxHandler struct {
	engineEvents
	eng virtio.Engine
	hdr [HeaderLen]byte
}

var _ virtio.Handler = (*rxHandler)(nil)

// Next pops a chain when a packet is owed, and otherwise waits.
func (r *rxHandler) Next() virtio.Result {
	d := r.d
	d.mu.Lock()
	owed := d.rsts.n > 0 || d.ready.n > 0
	d.mu.Unlock()
	return d.engines.Poll(owed)
}

// Wait blocks until a packet is owed, or the reset.
func (r *rxHandler) Wait(virtio.Activity) bool { return r.d.engines.Await(r.d.wake) }

// Chain fills one receive chain with one packet.
func (r *rxHandler) Chain(ch *queue.Chain) virtio.Result {
	d := r.d
	if ch.ReadLen > 0 || ch.WriteLen < HeaderLen {
		d.stats.Inc(cBadChains)
		return virtio.Result{Do: virtio.Done}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if rp, ok := d.rsts.pop(); ok {
		h := Header{SrcCID: HostCID, DstCID: d.opts.GuestCID, SrcPort: rp.local, DstPort: rp.peer,
			Type: TypeStream, Op: OpRST}
		return r.put(ch, &h)
	}
	for c, ok := d.ready.pop(); ok; c, ok = d.ready.pop() {
		c.queued = false
		if c.dead {
			continue
		}
		res, ok := r.fill(c, ch)
		if !ok {
			continue
		}
		d.markReady(c) // more to send: back of the queue
		return res
	}
	// Nothing owed after all: give the chain back and wait.
	return virtio.Result{Do: virtio.WaitBackend, Activity: virtio.ActivityWaitReadable}
}

// put writes h as a packet without payload.
func (r *rxHandler) put(ch *queue.Chain, h *Header) virtio.Result {
	h.Put(r.hdr[:])
	ch.WriteAt(r.hdr[:], 0)
	r.d.stats.Inc(cRxPackets)
	if h.Op == OpRST {
		r.d.stats.Inc(cRSTSent)
	}
	return virtio.Result{Do: virtio.Done, Used: HeaderLen}
}

// fill writes c's next packet into ch; false if c owes nothing.
// Called with d.mu.
func (r *rxHandler) fill(c *conn, ch *queue.Chain) (virtio.Result, bool) {
	d := r.d
	h := Header{SrcCID: HostCID, DstCID: d.opts.GuestCID, SrcPort: c.local, DstPort: c.peer,
		Type: TypeStream, BufAlloc: uint32(d.opts.BufSize), FwdCnt: c.fwdCnt}
	// Data fits the chain after the header (a chain of exactly a header
	// takes only control packets).
	n := min(c.sendable(), int(ch.WriteLen)-HeaderLen)
	switch {
	case c.pend&pRequest != 0:
		c.pend &^= pRequest
		h.Op = OpRequest
	case c.pend&pResponse != 0:
		c.pend &^= pResponse
		h.Op = OpResponse
	case n > 0:
		h.Op, h.Len = OpRW, uint32(n)
		off := uint64(HeaderLen)
		for sent := 0; sent < n; {
			p := c.toGuest.data()
			k := queue.CopySegs(p[:min(len(p), n-sent)], ch.Writable, off, true)
			if k == 0 {
				break // cannot happen: n fits the chain
			}
			c.toGuest.consumed(k)
			sent += k
			off += uint64(k)
		}
		c.txCnt += h.Len
		c.pend &^= pCredit // the header carries fwd_cnt
		c.readerWake.Signal()
		d.stats.Add(cRxBytes, uint64(n))
		h.Put(r.hdr[:])
		ch.WriteAt(r.hdr[:], 0)
		c.lastFwdSent = c.fwdCnt
		d.stats.Inc(cRxPackets)
		return virtio.Result{Do: virtio.Done, Used: HeaderLen + uint32(n)}, true
	case c.pend&pCredit != 0 || c.sendable() > 0:
		// Owed, or the chain has no room for the data that waits: a
		// credit update uses it up harmlessly and the data goes in the
		// next one.
		c.pend &^= pCredit
		h.Op = OpCreditUpdate
	case c.eofDue():
		c.shutSent = true
		h.Op, h.Flags = OpShutdown, ShutdownSend
		res := r.put(ch, &h)
		c.lastFwdSent = c.fwdCnt
		d.maybeFinish(c)
		return res, true
	default:
		return virtio.Result{}, false
	}
	c.lastFwdSent = c.fwdCnt
	return r.put(ch, &h), true
}
