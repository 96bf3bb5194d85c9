package netdev

// The control queue (FeatureCtrlVQ): answers the commands a driver sends
// so that it never waits forever.

import (
	"encoding/binary"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Control classes and commands (virtio 1.2 §5.1.6.5) and the ack values.
const (
	ctrlClassRx  = 0 // VIRTIO_NET_CTRL_RX: PROMISC 0 ... NOBCAST 5
	ctrlClassMAC = 1 // VIRTIO_NET_CTRL_MAC: TABLE_SET 0, ADDR_SET 1
	ctrlClassMQ  = 4 // VIRTIO_NET_CTRL_MQ
	ctrlMQPairs  = 0 // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: le16 virtqueue_pairs
	ctrlOK       = 0 // VIRTIO_NET_OK
	ctrlErr      = 1 // VIRTIO_NET_ERR
)

// ctrl services the control queue. Flint does no receive filtering (the
// backend decides what reaches the guest, like a switch port in
// promiscuous mode), so RX mode and MAC table commands are acknowledged
// with VIRTIO_NET_OK and change nothing. With FeatureMQ negotiated,
// VQ_PAIRS_SET with exactly two bytes of data, a count from 1 to the
// pairs running, changes the pairs in use (OK; anything else ERR); one
// that would attach and detach more backends than the switch budget
// holds is answered once it does (see switchBudget). The
// MQ class's RSS_CONFIG and HASH_CONFIG (features RSS and HASH_REPORT
// are not offered) and any other class get VIRTIO_NET_ERR.
type ctrl struct {
	virtio.ChainsOnly // commands come only with chains; no backend
	engineEnv
	eng virtio.Engine
	mq  *pairSet // nil without FeatureMQ negotiated
	cmd [4]byte  // class, command and (VQ_PAIRS_SET) le16 data
	ack [1]byte
	dl  deltas
}

var _ virtio.Handler = (*ctrl)(nil)

func (c *ctrl) init(env engineEnv, mq *pairSet, acked uint64) {
	c.engineEnv, c.mq = env, nil
	if virtio.Has(acked, FeatureMQ) {
		c.mq = mq
	}
}

func (c *ctrl) release() { c.engineEnv, c.mq = engineEnv{}, nil }

// Chain writes the ack byte for the command in ch. The command is class
// and command bytes, then data, all device-readable; the ack is the
// first device-writable byte.
func (c *ctrl) Chain(ch *queue.Chain) virtio.Result {
	if ch.WriteLen == 0 {
		c.dl[cCtrlRejected]++
		return virtio.Result{Do: virtio.Done}
	}
	c.ack[0] = ctrlErr
	if ch.ReadAt(c.cmd[:2], 0) == 2 {
		switch c.cmd[0] {
		case ctrlClassRx, ctrlClassMAC:
			c.ack[0] = ctrlOK
		case ctrlClassMQ:
			ack, wait := c.mqCommand(ch)
			if wait > 0 {
				return virtio.Result{Do: virtio.Throttle, Wait: wait} // popped again after the wait
			}
			c.ack[0] = ack
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

// mqCommand answers a VIRTIO_NET_CTRL_MQ command in ch: VQ_PAIRS_SET
// with exactly a le16 after the class and command, when MQ was
// negotiated. The device acknowledges only once the backends steer to
// the new pairs; a wait above 0 means the command is over the switch
// budget and is answered after that wait.
func (c *ctrl) mqCommand(ch *queue.Chain) (ack byte, wait time.Duration) {
	if c.mq == nil || c.cmd[1] != ctrlMQPairs || ch.ReadLen != 4 || ch.ReadAt(c.cmd[:], 0) != 4 {
		return ctrlErr, 0
	}
	wait, err := c.mq.set(int(binary.LittleEndian.Uint16(c.cmd[2:])))
	switch {
	case wait > 0:
		return 0, wait
	case err != nil:
		return ctrlErr, 0
	}
	return ctrlOK, 0
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
