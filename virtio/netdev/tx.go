package netdev

// The transmit engine's work: guest -> backend.

import (
	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// txBatch is how many chains the device completes before it publishes
// them (and maybe interrupts); it also publishes when the ring is empty
// and before it waits for the backend.
const txBatch = 64

// txUrgentFrame is the largest frame (header excluded) whose completion
// may wait for the transmit queue's interrupt gap (Options.TxIRQGap):
// acknowledgements and small datagrams. A larger one is TCP data, whose
// socket may be waiting for its completion (TCP small queues hold a
// socket to about a millisecond of data in flight below it, counted
// until the driver frees the frame on the completion), so its
// notification goes at once (virtio.Engine.Urgent).
const txUrgentFrame = 256

// tx writes each transmit chain's readable buffers to the backend as one
// frame, header and all, straight from guest memory. Chains come from
// PopCached, so a driver that reuses heads (and Linux's cached indirect
// tables) hits warm segment arrays: no allocation per packet.
type tx struct {
	engineEnv
	eng virtio.Engine
	dl  deltas
	lim *ratelimit.Limiter // nil: unlimited (Options.TxLimiter)
	off offloads           // what CSUM and the HOST_* features let a header ask

	hb   [vnethdr.Len]byte // the device's copy of the frame's header, checked
	segs [][]byte          // hb + the chain's data after the header, reused
}

var _ virtio.Handler = (*tx)(nil)

// init prepares t for an activation with acked.
func (t *tx) init(env engineEnv, acked uint64) {
	t.engineEnv = env
	t.off = newOffloads(acked, hostOffloads)
}

func (t *tx) release() {
	clear(t.segs[:cap(t.segs)]) // no reference to guest memory kept
	t.segs = t.segs[:0]
	t.engineEnv = engineEnv{}
}

// Next always pops: transmit work comes only with chains.
func (t *tx) Next() virtio.Result { return virtio.Result{} }

// Chain sends c's frame. Over the rate, or when the backend pushes back,
// the engine gives the chain back and waits (no dropping, no polling,
// no spinning).
//
// The header reaches the backend only with offloads the driver
// negotiated (issue 13 finding 8). virtio 1.2 §5.1.6.2.1 says the driver
// MUST NOT set NEEDS_CSUM without CSUM, nor a gso_type (or the ECN bit)
// without the matching HOST_* feature, and leaves the device's answer
// open: such a frame is dropped and counted (TxDropHeader), since
// clearing the fields would send a frame the guest did not mean (a GSO
// frame above the MTU, a partial checksum on the wire) and passing them
// on hands the TAP offload work it was never set up for. Other flag bits
// (DATA_VALID, RSC_INFO, undefined ones) mean nothing on transmit, and
// §5.1.6.2.2 says the device MUST ignore bits it does not recognise:
// they are cleared. The backend always gets the header from the device's
// own copy (the guest's buffer is device-readable, never written), so a
// guest rewriting its header after the check cannot slip an offload past
// it.
func (t *tx) Chain(c *queue.Chain) virtio.Result {
	if c.ReadLen < HdrLen {
		t.dl[cTxDropShort]++
		return virtio.Result{Do: virtio.Done}
	}
	if copy(t.hb[:], c.Readable[0]) < HdrLen {
		queue.CopySegs(t.hb[:], c.Readable, 0, false)
	}
	if !t.off.allows(t.hb[0], t.hb[1]) {
		t.dl[cTxDropHeader]++
		return virtio.Result{Do: virtio.Done}
	}
	t.hb[0] &= vnethdr.FNeedsCsum
	if ok, wait := t.lim.Consume(uint64(c.ReadLen - HdrLen)); !ok {
		return virtio.Result{Do: virtio.Throttle, Wait: wait}
	}
	segs := t.frame(c.Readable)
	for {
		_, err := t.be.Writev(segs)
		switch {
		case err == nil:
			t.dl[cTxPackets]++
			t.dl[cTxBytes] += uint64(c.ReadLen - HdrLen)
		case t.engines.Stopping():
			return virtio.Result{Do: virtio.Stop} // not sent: left to whoever resumes the ring
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			t.dl[cTxWaits]++
			return virtio.Result{Do: virtio.WaitBackend, Activity: virtio.ActivityWaitWritable}
		default:
			t.dl[cTxErrors]++ // refused: dropped
		}
		if c.ReadLen-HdrLen > txUrgentFrame { // sent or dropped, the driver frees it on the completion
			t.eng.Urgent()
		}
		// Transmit buffers are device-readable only: used length 0.
		return virtio.Result{Do: virtio.Done}
	}
}

// frame returns the frame in segs with the header replaced by the
// device's checked copy t.hb: t.hb, then the data after the header.
// t.segs is reused; it grows only to the longest chain seen.
func (t *tx) frame(segs [][]byte) [][]byte {
	if len(segs[0]) >= HdrLen { // the usual case: the header in one piece
		t.segs = append(append(t.segs[:0], t.hb[:], segs[0][HdrLen:]), segs[1:]...)
		return t.segs
	}
	t.segs = append(t.segs[:0], t.hb[:])
	skip := HdrLen
	for _, s := range segs {
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		t.segs = append(t.segs, s[skip:])
		skip = 0
	}
	return t.segs
}

// Wait waits for the backend to take frames again; a failure shows at
// the next write.
func (t *tx) Wait(virtio.Activity) bool {
	t.be.WaitWritable()
	return true
}

func (t *tx) Event(e virtio.Event) {
	switch e {
	case virtio.EventMalformed:
		t.dl[cTxMalformed]++
	case virtio.EventInterrupt:
		t.dl[cTxInterrupts]++
	case virtio.EventThrottled:
		t.dl[cTxThrottled]++
	case virtio.EventBroken:
		t.dl[cBroken]++
	case virtio.EventPublished:
		t.dl.publish(t.stats)
	}
}
