package net

// The transmit engine: guest -> backend.

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// txBatch is how many chains the device completes before it publishes
// them (and maybe interrupts); it also publishes when the ring is empty
// and before it waits for the backend.
const txBatch = 64

type txState int

const (
	txIdle    txState = iota // the ring is empty
	txBroken                 // the driver broke the queue
	txStopped                // Reset
)

// tx writes each transmit chain's readable buffers to the backend as one
// frame, header and all, straight from guest memory. Chains come from
// PopCached, so a driver that reuses heads (and Linux's cached indirect
// tables) hits warm segment arrays: no allocation per packet.
type tx struct {
	engineEnv
	q     *queue.Queue
	kick  *os.File
	kbuf  [64]byte
	batch int
	dead  bool
	dl    deltas

	lim   *ratelimit.Limiter // nil: unlimited (Options.TxLimiter)
	timer *time.Timer

	status virtio.EngineStatus // what run is doing, for dumps
}

func (t *tx) init(env engineEnv, q virtio.Queue) {
	t.engineEnv = env
	t.q, t.kick = q.Ring, q.Kick
	t.batch, t.dead = 0, false
}

func (t *tx) release() {
	t.q, t.kick = nil, nil
	t.engineEnv = engineEnv{}
}

func (t *tx) run() {
	defer func() {
		if !t.dead {
			t.flush()
		}
		t.dl.publish(t.stats)
		t.status.Set(virtio.ActivityStopped, t.q)
	}()
	t.status.Set(virtio.ActivityRunning, t.q)
	for {
		t.q.DisableNotifications()
		switch t.pump() {
		case txBroken:
			t.dead = true
			t.status.Set(virtio.ActivityBroken, t.q)
			t.broken(&t.dl)
			return
		case txStopped:
			return
		}
		t.flush()
		if t.q.EnableNotifications() {
			continue
		}
		t.status.Set(virtio.ActivityWaitKick, t.q)
		if !t.waitKick(t.kick, t.kbuf[:]) {
			return
		}
		t.status.Set(virtio.ActivityRunning, t.q)
	}
}

// pump sends every chain the driver made available.
func (t *tx) pump() txState {
	for {
		if t.stopping.Load() {
			return txStopped
		}
		c, err := t.q.PopCached()
		if err != nil {
			if errors.Is(err, queue.ErrMalformedChain) {
				t.dl[cTxMalformed]++ // completed by the queue
				continue
			}
			return txBroken
		}
		if c == nil {
			return txIdle
		}
		if c.ReadLen < HdrLen {
			t.dl[cTxDropShort]++
		} else if ok, wait := t.lim.Consume(uint64(c.ReadLen - HdrLen)); !ok {
			// Over the rate: give the chain back, publish what is done,
			// and wait for the tokens (no dropping, no polling).
			t.q.Undo(1)
			t.dl[cTxThrottled]++
			t.flush()
			t.status.Set(virtio.ActivityThrottled, t.q)
			if !t.pause(t.timer, wait) {
				return txStopped
			}
			t.status.Set(virtio.ActivityRunning, t.q)
			continue
		} else {
			switch t.send(c) {
			case sendStopped:
				t.q.Undo(1) // not sent: leave it to whoever resumes the ring
				return txStopped
			case sendAgain:
				// The backend pushes back. Give the chain back, publish
				// what is done, wait (no spinning, no dropping), retry.
				t.q.Undo(1)
				t.dl[cTxWaits]++
				t.flush()
				t.status.Set(virtio.ActivityWaitWritable, t.q)
				if err := t.be.WaitWritable(); err != nil && t.stopping.Load() {
					return txStopped
				}
				t.status.Set(virtio.ActivityRunning, t.q)
				continue
			}
		}
		// Transmit buffers are device-readable only: used length 0.
		t.q.Push(c.Head, 0)
		if t.batch++; t.batch >= txBatch {
			t.flush()
		}
	}
}

type sendResult int

const (
	sendDone    sendResult = iota // written, or refused and dropped
	sendAgain                     // the backend said EAGAIN
	sendStopped                   // Reset interrupted the write
)

// send writes c's frame. A frame the backend refuses is dropped and
// counted.
func (t *tx) send(c *queue.Chain) sendResult {
	for {
		_, err := t.be.Writev(c.Readable)
		switch {
		case err == nil:
			t.dl[cTxPackets]++
			t.dl[cTxBytes] += uint64(c.ReadLen - HdrLen)
			return sendDone
		case t.stopping.Load():
			return sendStopped
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return sendAgain
		default:
			t.dl[cTxErrors]++
			return sendDone
		}
	}
}

func (t *tx) flush() {
	t.batch = 0
	if t.flushQueue(t.q, TxQueue) {
		t.dl[cTxInterrupts]++
	}
	t.dl.publish(t.stats)
}
