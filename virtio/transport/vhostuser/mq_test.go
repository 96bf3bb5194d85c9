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
	bes := []*fakeBackend{newFake(), newFake()}
	dev, err := netdev.NewMulti([]netdev.Backend{bes[0], bes[1]}, netdev.Options{MAC: testMAC, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{}
	srv, err := vhostuser.New(vhostuser.Config{Device: dev, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f, err := vut.Dial(serveOn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Do(vut.SetOwner, nil))
	feat, err := f.GetU64(vut.GetFeatures)
	must(err)
	mq := netdev.FeatureMQ.Mask() | netdev.FeatureCtrlVQ.Mask()
	if feat&mq != mq {
		t.Fatalf("GET_FEATURES %#x: no MQ", feat)
	}
	pf, err := f.GetU64(vut.GetProtocolFeatures)
	must(err)
	if pf&vut.ProtocolMQ == 0 {
		t.Fatalf("protocol features %#x: no MQ", pf)
	}
	must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolMQ|vut.ProtocolReplyAck|vut.ProtocolConfig))
	f.ReplyAck = true
	if n, err := f.GetU64(vut.GetQueueNum); err != nil || n != 5 {
		t.Fatalf("GET_QUEUE_NUM %d, %v; want 5", n, err)
	}
	cfg, err := f.GetConfig(0, 12)
	must(err)
	if binary.LittleEndian.Uint16(cfg[8:]) != 2 {
		t.Fatalf("config space %x: max_virtqueue_pairs", cfg)
	}
	must(f.SetU64(vut.SetFeatures, guestFeatures|mq|vut.ProtocolFeatures))
	m, err := vut.NewMemory(8<<20, 0x100000, 0x100000)
	must(err)
	defer m.Close()
	must(f.SetMemTable(m.Region()))
	rings := make([]*vut.Ring, 5)
	for i := range rings {
		r, err := vut.NewRing(m, 64, true, false)
		must(err)
		defer r.Close()
		rings[i] = r
		idx := uint32(i)
		must(f.SetVringFD(vut.SetVringCall, idx, int(r.CallW.Fd())))
		must(f.SetState(vut.SetVringNum, idx, 64))
		must(f.SetState(vut.SetVringBase, idx, 0))
		d, u, a := r.UserAddrs()
		must(f.Do(vut.SetVringAddr, vut.VringAddr(idx, 0, d, u, a, ^uint64(0))))
		must(f.SetVringFD(vut.SetVringKick, idx, int(r.Kick.Fd())))
		must(f.SetState(vut.SetVringEnable, idx, 1))
	}
	next := m.Alloc(4<<20, 4096)
	alloc := func(n uint64) uint64 { a := next; next += n; return a }

	// VQ_PAIRS_SET 2 on the control ring.
	cmd, ack := alloc(4), alloc(1)
	copy(m.Bytes(cmd, 4), []byte{4, 0, 2, 0})
	m.Bytes(ack, 1)[0] = 0xff
	_, err = rings[4].Add(vut.Buf{Addr: cmd, Len: 4}, vut.Buf{Addr: ack, Len: 1, Write: true})
	must(err)
	must(rings[4].PublishAndNotify())
	if _, n, err := rings[4].WaitUsed(5 * time.Second); err != nil || n != 1 || m.Bytes(ack, 1)[0] != 0 {
		t.Fatalf("VQ_PAIRS_SET: used len %d, ack %d, %v", n, m.Bytes(ack, 1)[0], err)
	}
	if dev.ActivePairs() != 2 {
		t.Fatalf("%d pairs in use", dev.ActivePairs())
	}

	// A frame each way on pair 2.
	buf := alloc(2048)
	_, err = rings[2].Add(vut.Buf{Addr: buf, Len: 2048, Write: true})
	must(err)
	must(rings[2].PublishAndNotify())
	bes[1].inject(frame(7))
	if _, n, err := rings[2].WaitUsed(5 * time.Second); err != nil || !bytes.Equal(m.Bytes(buf+netdev.HdrLen, uint64(n)-netdev.HdrLen), frame(7)[netdev.HdrLen:]) {
		t.Fatalf("pair 2 receive: %d bytes, %v", n, err)
	}
	out := alloc(2048)
	copy(m.Bytes(out, uint64(len(frame(9)))), frame(9))
	_, err = rings[3].Add(vut.Buf{Addr: out, Len: uint32(len(frame(9)))})
	must(err)
	must(rings[3].PublishAndNotify())
	bes[1].waitTx(t, 1)
	if len(bes[0].sent()) != 0 || !waitPairTx(dev) {
		t.Fatalf("pair 2's frame: pair 1 sent %d, pair stats %+v", len(bes[0].sent()), dev.PairStats())
	}

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

// waitPairTx waits for pair 2's transmit counter (published after the
// backend took the frame).
func waitPairTx(dev *netdev.Device) bool {
	for range 500 {
		if dev.PairStats()[1].TxPackets == 1 {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
