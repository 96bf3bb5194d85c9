package netdev

// The control queue (FeatureCtrlVQ): answers the commands a driver sends
// so that it never waits forever.

import (
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
	virtio.ChainsOnly // commands come only with chains; no backend
	engineEnv
	eng virtio.Engine
	cmd [2]byte
	ack [1]byte
	dl  deltas
}

var _ virtio.Handler = (*ctrl)(nil)

func (c *ctrl) init(env engineEnv) { c.engineEnv = env }

func (c *ctrl) release() { c.engineEnv = engineEnv{} }

// Chain writes the ack byte for the command in ch. The command is class
// and command bytes, then data, all device-readable; the ack is the
// first device-writable byte.
func (c *ctrl) Chain(ch *queue.Chain) virtio.Result {
	if ch.WriteLen == 0 {
		c.dl[cCtrlRejected]++
		return virtio.Result{Do: virtio.Done}
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
	return virtio.Result{Do: virtio.Done, Used: 1}
}

func (c *ctrl) Event(e virtio.Event) {
	switch e {
	case virtio.EventMalformed:
		c.dl[cCtrlMalformed]++
	case virtio.EventBroken:
		c.dl[cBroken]++
	case virtio.EventPublished:
		c.dl.publish(c.stats)
	}
}
