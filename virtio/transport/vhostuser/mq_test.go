package vhostuser_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/netdev"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestMultiqueue serves a virtio-net device with two queue pairs: the
// MQ protocol feature and GET_QUEUE_NUM (5 rings), max_virtqueue_pairs
// in GET_CONFIG, all five rings programmed, VQ_PAIRS_SET 2 on the
// control ring (4), then a frame each way on pair 2 (rings 2 and 3),
// through pair 2's backend; a ring index past the last is refused.
func TestMultiqueue(t *testing.T) {
	mq := newMQ(t)
	rings := make([]*vut.Ring, 5)
	for i := range rings {
		rings[i] = mq.start(i)
	}
	mq.pairsSet(rings[4], 2)
	mq.pairTraffic(1, rings[2], rings[3], []int{0, 0})
	f, log := mq.f, mq.log

	// Ring 5 does not exist.
	if err := f.SetState(vut.SetVringNum, 5, 64); err == nil {
		t.Fatal("SET_VRING_NUM for ring 5 accepted")
	}
	expectClosed(t, f)
	if !waitLog(log, "ring index 5 out of range") {
		t.Fatalf("log: %s", log.String())
	}
}

func waitLog(l *logBuffer, s string) bool {
	for range 500 {
		if strings.Contains(l.String(), s) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// waitPairTx waits for pair k's transmit counter to reach n (published
// after the backend took the frame).
func waitPairTx(dev *netdev.Device, k int, n uint64) bool {
	for range 500 {
		if dev.PairStats()[k].TxPackets == n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// mqFrontend is a frontend of a two-pair virtio-net device (five rings)
// that negotiated MQ, REPLY_ACK, CONFIG and PROTOCOL_FEATURES and set
// its memory table.
type mqFrontend struct {
	t   *testing.T
	f   *vut.Frontend
	m   *vut.Memory
	dev *netdev.Device
	bes []*fakeBackend
	log *logBuffer
	buf uint64 // next free buffer address
}

// alloc returns n bytes of the guest's buffer area.
func (q *mqFrontend) alloc(n uint64) uint64 {
	if q.buf == 0 {
		q.buf = q.m.Alloc(4<<20, 4096)
	}
	a := q.buf
	q.buf += n
	return a
}

// pairsSet sends VQ_PAIRS_SET n on the control ring and waits for its
// OK.
func (q *mqFrontend) pairsSet(ctrl *vut.Ring, n byte) {
	q.t.Helper()
	m := q.m
	cmd, ack := q.alloc(4), q.alloc(1)
	copy(m.Bytes(cmd, 4), []byte{4, 0, n, 0})
	m.Bytes(ack, 1)[0] = 0xff
	_, err := ctrl.Add(vut.Buf{Addr: cmd, Len: 4}, vut.Buf{Addr: ack, Len: 1, Write: true})
	q.must(err)
	q.must(ctrl.PublishAndNotify())
	if _, used, err := ctrl.WaitUsed(5 * time.Second); err != nil || used != 1 || m.Bytes(ack, 1)[0] != 0 {
		q.t.Fatalf("VQ_PAIRS_SET %d: used len %d, ack %d, %v", n, used, m.Bytes(ack, 1)[0], err)
	}
	if q.dev.ActivePairs() != int(n) {
		q.t.Fatalf("%d pairs in use", q.dev.ActivePairs())
	}
}

// pairTraffic passes a frame each way on pair k (rings rx and tx) and
// checks that it went through pair k's backend only; sent counts the
// frames each backend took so far.
func (q *mqFrontend) pairTraffic(k int, rx, tx *vut.Ring, sent []int) {
	q.t.Helper()
	m := q.m
	buf := q.alloc(2048)
	_, err := rx.Add(vut.Buf{Addr: buf, Len: 2048, Write: true})
	q.must(err)
	q.must(rx.PublishAndNotify())
	in := frame(byte(10 + k))
	q.bes[k].inject(in)
	if _, n, err := rx.WaitUsed(5 * time.Second); err != nil || n < netdev.HdrLen ||
		!bytes.Equal(m.Bytes(buf+netdev.HdrLen, uint64(n)-netdev.HdrLen), in[netdev.HdrLen:]) {
		q.t.Fatalf("pair %d receive: %d bytes, %v; log:\n%s", k+1, n, err, q.log.String())
	}
	out := q.alloc(2048)
	f := frame(byte(20 + k))
	copy(m.Bytes(out, uint64(len(f))), f)
	_, err = tx.Add(vut.Buf{Addr: out, Len: uint32(len(f))})
	q.must(err)
	q.must(tx.PublishAndNotify())
	sent[k]++
	q.bes[k].waitTx(q.t, sent[k])
	for j, b := range q.bes {
		if b.SentCount() != sent[j] || !waitPairTx(q.dev, j, uint64(sent[j])) {
			q.t.Fatalf("pair %d's frame: backends took %d and %d frames, want %v", k+1, q.bes[0].SentCount(), q.bes[1].SentCount(), sent)
		}
	}
}

func (q *mqFrontend) must(err error) {
	q.t.Helper()
	if err != nil {
		q.t.Fatal(err)
	}
}

// newMQ serves a two-pair device and negotiates as TestMultiqueue
// describes, up to the memory table.
func newMQ(t *testing.T) *mqFrontend { return newMQWith(t, true) }

// newMQWith is newMQ; without ctrl, the frontend keeps the control
// queue as QEMU does (SET_FEATURES with MQ but not CTRL_VQ) and the
// device allows it (netdev's AllowFrontendControlQueue).
func newMQWith(t *testing.T, ctrl bool) *mqFrontend {
	return newMQOver(t, ctrl, func(b *fakeBackend) netdev.Backend { return b })
}

// newMQOver is newMQWith with the device's backends wrap's of the fakes.
func newMQOver(t *testing.T, ctrl bool, wrap func(*fakeBackend) netdev.Backend) *mqFrontend {
	q := &mqFrontend{t: t, bes: []*fakeBackend{newFake(), newFake()}, log: &logBuffer{}}
	var err error
	q.dev, err = netdev.NewMulti([]netdev.Backend{wrap(q.bes[0]), wrap(q.bes[1])}, netdev.Options{MAC: testMAC, MTU: 1500})
	q.must(err)
	if !ctrl {
		q.dev.AllowFrontendControlQueue()
	}
	srv, err := vhostuser.New(vhostuser.Config{Device: q.dev, Log: slog.New(slog.NewTextHandler(q.log, nil))})
	q.must(err)
	q.f, err = vut.Dial(serveOn(t, srv))
	q.must(err)
	t.Cleanup(func() { q.f.Close() })
	f := q.f
	q.must(f.Do(vut.SetOwner, nil))
	feat, err := f.GetU64(vut.GetFeatures)
	q.must(err)
	mq := netdev.FeatureMQ.Mask() | netdev.FeatureCtrlVQ.Mask()
	if feat&mq != mq {
		t.Fatalf("GET_FEATURES %#x: no MQ", feat)
	}
	pf, err := f.GetU64(vut.GetProtocolFeatures)
	q.must(err)
	if pf&vut.ProtocolMQ == 0 {
		t.Fatalf("protocol features %#x: no MQ", pf)
	}
	q.must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolMQ|vut.ProtocolReplyAck|vut.ProtocolConfig))
	f.ReplyAck = true
	if n, err := f.GetU64(vut.GetQueueNum); err != nil || n != 5 {
		t.Fatalf("GET_QUEUE_NUM %d, %v; want 5", n, err)
	}
	cfg, err := f.GetConfig(0, 12)
	q.must(err)
	if binary.LittleEndian.Uint16(cfg[8:]) != 2 {
		t.Fatalf("config space %x: max_virtqueue_pairs", cfg)
	}
	if !ctrl {
		mq = netdev.FeatureMQ.Mask()
	}
	q.must(f.SetU64(vut.SetFeatures, guestFeatures|mq|vut.ProtocolFeatures))
	q.m, err = vut.NewMemory(8<<20, 0x100000, 0x100000)
	q.must(err)
	t.Cleanup(q.m.Close)
	q.must(f.SetMemTable(q.m.Region()))
	return q
}

// TestMultiqueueLateRings: a frontend that starts pair 2's rings after
// the device already runs on pair 1 and the control ring (a driver that
// brings its queues up one after the other) has them served: the
// device restarts with the new pair instead of running without it.
func TestMultiqueueLateRings(t *testing.T) {
	mq := newMQ(t)
	rings := make([]*vut.Ring, 5)
	for _, i := range []int{0, 1, 4} {
		rings[i] = mq.start(i)
	}
	mq.pairsSet(rings[4], 1) // the device runs, on pair 1
	for _, i := range []int{2, 3} {
		rings[i] = mq.start(i)
	}
	mq.pairsSet(rings[4], 2)
	mq.pairTraffic(1, rings[2], rings[3], []int{0, 0})
}

// TestUMLRingOrder plays virtio_uml's ring setup on a two-pair device
// with the control queue: every ring's size, base and addresses first,
// then a kick and an enable for each ring in turn. The device starts
// once the last ring is enabled, and the activations it refuses on the
// way (rings programmed but not enabled yet) are not logged at Info:
// each would take one of the frontend's 32 log lines (transport.LogLimit)
// on every boot of the guest's driver.
func TestUMLRingOrder(t *testing.T) {
	q := newMQ(t)
	rings := make([]*vut.Ring, 5)
	for i := range rings {
		rings[i] = q.program(i)
	}
	for i, r := range rings {
		q.must(q.f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())))
		q.must(q.f.SetState(vut.SetVringEnable, uint32(i), 1))
	}
	q.pairsSet(rings[4], 2)
	q.pairTraffic(1, rings[2], rings[3], []int{0, 0})
	if strings.Contains(q.log.String(), "not started yet") {
		t.Fatalf("refused activations logged at Info while UML enables its rings:\n%s", q.log.String())
	}
}

// start programs ring i (64 entries), kicks and enables it.
func (q *mqFrontend) start(i int) *vut.Ring {
	q.t.Helper()
	r := q.startDisabled(i)
	q.must(q.f.SetState(vut.SetVringEnable, uint32(i), 1))
	return r
}

// startDisabled programs ring i (64 entries) and kicks it, leaving it
// disabled.
func (q *mqFrontend) startDisabled(i int) *vut.Ring {
	q.t.Helper()
	r := q.program(i)
	q.must(q.f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())))
	return r
}

// program sets ring i's call fd, size (64 entries), base and addresses,
// leaving it stopped and disabled.
func (q *mqFrontend) program(i int) *vut.Ring {
	q.t.Helper()
	f := q.f
	r, err := vut.NewRing(q.m, 64, true, false)
	q.must(err)
	q.t.Cleanup(r.Close)
	idx := uint32(i)
	q.must(f.SetVringFD(vut.SetVringCall, idx, int(r.CallW.Fd())))
	q.must(f.SetState(vut.SetVringNum, idx, 64))
	q.must(f.SetState(vut.SetVringBase, idx, 0))
	d, u, a := r.UserAddrs()
	q.must(f.Do(vut.SetVringAddr, vut.VringAddr(idx, 0, d, u, a, ^uint64(0))))
	return r
}
