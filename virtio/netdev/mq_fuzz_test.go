package netdev

import (
	"encoding/binary"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// FuzzMQControl sends a device with fzPairs pairs control commands made
// of fuzzed bytes (each: a length byte, whose top bit splits the command
// over two descriptors, then that many bytes) and checks each answer
// against the rules: VQ_PAIRS_SET with exactly a le16 of 1 to fzPairs is
// OK and changes the pairs in use and the backends' steering, RX and MAC
// commands are OK, everything else ERR, and nothing panics.
func FuzzMQControl(f *testing.F) {
	f.Add([]byte{4, ctrlClassMQ, ctrlMQPairs, 4, 0, 4, ctrlClassMQ, ctrlMQPairs, 1, 0})
	f.Add([]byte{0x84, ctrlClassMQ, ctrlMQPairs, 2, 0, 3, ctrlClassMQ, ctrlMQPairs, 2, 5, ctrlClassMQ, ctrlMQPairs, 2, 0, 0})
	f.Add([]byte{4, ctrlClassMQ, ctrlMQPairs, 0, 0, 4, ctrlClassMQ, ctrlMQPairs, 5, 0, 4, ctrlClassMQ, 1, 1, 0, 0, 2, ctrlClassRx, 0})
	f.Add([]byte{4, ctrlClassMQ, ctrlMQPairs, 0xff, 0xff, 1, ctrlClassMQ})
	f.Fuzz(func(t *testing.T, in []byte) {
		const fzPairs = 4
		d, bes := newMQ(t, fzPairs)
		cfgs := make([]qt.Config, len(d.QueueMaxSizes()))
		for i := range cfgs {
			cfgs[i] = qt.Config{Size: 8, DataSize: 4096}
		}
		ds, queues, irq := virtiotest.SyncQueues(t, d, fMQ|fCommon, cfgs...)
		if err := d.configure(queues, fzPairs, false); err != nil {
			t.Fatal(err)
		}
		if err := d.engines.Bind(queues, irq, 2*fzPairs+1); err != nil {
			t.Fatal(err)
		}
		defer d.Reset()
		cq := ds[CtrlQueueOf(fzPairs)]
		pairs := 1
		for cmds := 0; len(in) > 0 && cmds < 16; cmds++ {
			n := int(in[0] & 0x7f)
			split := in[0]&0x80 != 0
			in = in[1:]
			n = min(n, len(in))
			cmd := in[:n]
			in = in[n:]
			bufs := []qt.Buf{qt.R(cmd)}
			if split && n >= 2 {
				bufs = []qt.Buf{qt.R(cmd[:n/2]), qt.R(cmd[n/2:])}
			}
			if n == 0 {
				bufs = nil
			}
			if _, err := cq.Add(append(bufs, qt.W(1))...); err != nil {
				t.Fatal(err)
			}
			cq.Kick()
			d.mqEng.Step()
			used := cq.AllUsed()
			if len(used) != 1 || used[0].Len != 1 {
				t.Fatalf("command %x: used %+v", cmd, used)
			}
			want := byte(ctrlErr)
			switch {
			case n == 4 && cmd[0] == ctrlClassMQ && cmd[1] == ctrlMQPairs:
				if v := int(binary.LittleEndian.Uint16(cmd[2:])); v >= 1 && v <= fzPairs {
					want, pairs = ctrlOK, v
				}
			case n >= 2 && (cmd[0] == ctrlClassRx || cmd[0] == ctrlClassMAC):
				want = ctrlOK
			}
			if ack := cq.Written(used[0])[0]; ack != want || d.ActivePairs() != pairs {
				t.Fatalf("command %x: ack %d, %d pairs; want %d, %d", cmd, ack, d.ActivePairs(), want, pairs)
			}
			for k, b := range bes {
				if b.attached() != (k < pairs) {
					t.Fatalf("command %x: pair %d attached %v with %d pairs in use", cmd, k+1, b.attached(), pairs)
				}
			}
		}
	})
}
