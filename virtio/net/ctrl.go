package net

// The control queue (FeatureCtrlVQ): answers the commands a driver sends
// so that it never waits forever.

import (
	"errors"
	"os"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Control classes and commands (virtio 1.2 §5.1.6.5) and the ack values.
const (
	ctrlClassRx  = 0 // VIRTIO_NET_CTRL_RX: PROMISC 0 ... NOBCAST 5
	ctrlClassMAC = 1 // VIRTIO_NET_CTRL_MAC: TABLE_SET 0, ADDR_SET 1
	ctrlOK       = 0 // VIRTIO_NET_OK
	ctrlErr      = 1 // VIRTIO_NET_ERR
)

// ctrl services the control queue. Flint does no receive filtering (the
// backend decides what reaches the guest, like a switch port in
// promiscuous mode), so RX mode and MAC table commands are acknowledged
// with VIRTIO_NET_OK and change nothing; any other class gets
// VIRTIO_NET_ERR.
type ctrl struct {
	engineEnv
	q    *queue.Queue
	kick *os.File
	kbuf [64]byte
	cmd  [2]byte
	ack  [1]byte
	dead bool
	dl   deltas

	status virtio.EngineStatus // what run is doing, for dumps
}

func (c *ctrl) init(env engineEnv, q virtio.Queue) {
	c.engineEnv = env
	c.q, c.kick = q.Ring, q.Kick
	c.dead = false
}

func (c *ctrl) release() {
	c.q, c.kick = nil, nil
	c.engineEnv = engineEnv{}
}

func (c *ctrl) run() {
	defer func() {
		if !c.dead {
			c.flush()
		}
		c.dl.publish(c.stats)
		c.status.Set(virtio.ActivityStopped, c.q)
	}()
	c.status.Set(virtio.ActivityRunning, c.q)
	for {
		c.q.DisableNotifications()
		for !c.stopping.Load() {
			ch, err := c.q.PopCached()
			if err != nil {
				if errors.Is(err, queue.ErrMalformedChain) {
					c.dl[cCtrlMalformed]++
					continue
				}
				c.dead = true
				c.status.Set(virtio.ActivityBroken, c.q)
				c.broken(&c.dl)
				return
			}
			if ch == nil {
				break
			}
			c.q.Push(ch.Head, c.answer(ch))
		}
		if c.stopping.Load() {
			return
		}
		c.flush()
		if c.q.EnableNotifications() {
			continue
		}
		c.status.Set(virtio.ActivityWaitKick, c.q)
		if !c.waitKick(c.kick, c.kbuf[:]) {
			return
		}
		c.status.Set(virtio.ActivityRunning, c.q)
	}
}

// answer writes the ack byte for the command in ch and returns the used
// length. The command is class and command bytes, then data, all
// device-readable; the ack is the first device-writable byte.
func (c *ctrl) answer(ch *queue.Chain) uint32 {
	if ch.WriteLen == 0 {
		c.dl[cCtrlRejected]++
		return 0
	}
	c.ack[0] = ctrlErr
	if ch.ReadAt(c.cmd[:], 0) == 2 {
		switch c.cmd[0] {
		case ctrlClassRx, ctrlClassMAC:
			c.ack[0] = ctrlOK
		}
	}
	if c.ack[0] == ctrlOK {
		c.dl[cCtrlCommands]++
	} else {
		c.dl[cCtrlRejected]++
	}
	ch.WriteAt(c.ack[:], 0)
	return 1
}

func (c *ctrl) flush() {
	c.flushQueue(c.q, CtrlQueue)
	c.dl.publish(c.stats)
}
