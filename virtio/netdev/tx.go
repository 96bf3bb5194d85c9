package netdev

// The transmit engine's work: guest -> backend.

import (
	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// txBatch is how many chains the device completes before it publishes
// them (and maybe interrupts); it also publishes when the ring is empty
// and before it waits for the backend.
const txBatch = 64

// tx writes each transmit chain's readable buffers to the backend as one
// frame, header and all, straight from guest memory. Chains come from
// PopCached, so a driver that reuses heads (and Linux's cached indirect
// tables) hits warm segment arrays: no allocation per packet.
type tx struct {
	engineEnv
	eng virtio.Engine
	dl  deltas
	lim *ratelimit.Limiter // nil: unlimited (Options.TxLimiter)
}

var _ virtio.Handler = (*tx)(nil)

func (t *tx) init(env engineEnv, cfg virtio.EngineConfig) {
	t.engineEnv = env
	cfg.Handler, cfg.Index, cfg.Batch = t, TxQueue, txBatch
	t.eng.Bind(cfg)
}

func (t *tx) release() {
	t.eng.Release()
	t.engineEnv = engineEnv{}
}

// Next always pops: transmit work comes only with chains.
func (t *tx) Next() virtio.Result { return virtio.Result{} }

// Chain sends c's frame. Over the rate, or when the backend pushes back,
// the engine gives the chain back and waits (no dropping, no polling,
// no spinning).
func (t *tx) Chain(c *queue.Chain) virtio.Result {
	if c.ReadLen < HdrLen {
		t.dl[cTxDropShort]++
		return virtio.Result{Do: virtio.Done}
	}
	if ok, wait := t.lim.Consume(uint64(c.ReadLen - HdrLen)); !ok {
		return virtio.Result{Do: virtio.Throttle, Wait: wait}
	}
	for {
		_, err := t.be.Writev(c.Readable)
		switch {
		case err == nil:
			t.dl[cTxPackets]++
			t.dl[cTxBytes] += uint64(c.ReadLen - HdrLen)
		case t.stopping.Load():
			return virtio.Result{Do: virtio.Stop} // not sent: left to whoever resumes the ring
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			t.dl[cTxWaits]++
			return virtio.Result{Do: virtio.WaitBackend, Activity: virtio.ActivityWaitWritable}
		default:
			t.dl[cTxErrors]++ // refused: dropped
		}
		// Transmit buffers are device-readable only: used length 0.
		return virtio.Result{Do: virtio.Done}
	}
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
