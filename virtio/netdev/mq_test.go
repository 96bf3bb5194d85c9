package netdev

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

var (
	fCtrl = FeatureCtrlVQ.Mask()
	fMQ   = FeatureMQ.Mask() | fCtrl
)

// steerFake is one queue of a fake multi-queue TAP: a NetBackend that
// records TUNSETQUEUE, refuses a queue already in the asked state with
// EINVAL and drops the frames queued on a queue it detaches, as Linux
// does (counted in purged), and tells whether frames wait (Drainer).
type steerFake struct {
	*fakeBackend
	pin *pinFake // the interface's, shared by its queues

	mu       sync.Mutex
	off      bool // detached
	calls    []bool
	fail     error
	purged   int
	onDetach func() // runs as the detach begins, before the purge (without mu)
}

// pinFake is the fake TAP's steering program (Pinner, shared by every
// queue): while on, tapSwitch steers every frame to the first queue.
type pinFake struct {
	mu      sync.Mutex
	on      bool
	fail    error
	failOff error // fail only the calls that take the pin off
	calls   []bool
}

func (s *steerFake) PinToFirst(on bool) error {
	p := s.pin
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, on)
	if p.fail != nil {
		return p.fail
	}
	if !on && p.failOff != nil {
		return p.failOff
	}
	p.on = on
	return nil
}

func (p *pinFake) pinned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on
}

func (p *pinFake) history() []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func (s *steerFake) SetEnabled(on bool) error {
	s.mu.Lock()
	hook := s.onDetach
	s.mu.Unlock()
	if !on && hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, on)
	switch {
	case s.fail != nil:
		return s.fail
	case on != s.off:
		return unix.EINVAL
	}
	s.off = !on
	if !on {
		s.purged += s.Purge()
	}
	return nil
}

func (s *steerFake) Pending() bool { return s.Queued() > 0 }

func (s *steerFake) purgedFrames() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.purged
}

func (s *steerFake) attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.off
}

func (s *steerFake) history() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// tapSwitch plays the kernel's queue selection: a frame of flow hash
// goes to attached queue hash mod (number attached), or to the first
// queue while the pin is on.
func tapSwitch(bes []*steerFake, hash int, f []byte) int {
	if bes[0].pin.pinned() {
		bes[0].Inject(f)
		return 0
	}
	var on []int
	for k, b := range bes {
		if b.attached() {
			on = append(on, k)
		}
	}
	k := on[hash%len(on)]
	bes[k].Inject(f)
	return k
}

// newMQ returns a device with n pairs over steerable fakes.
func newMQ(tb testing.TB, n int) (*Device, []*steerFake) {
	tb.Helper()
	fakes := make([]*steerFake, n)
	bes := make([]Backend, n)
	pin := &pinFake{}
	for k := range fakes {
		fakes[k] = &steerFake{fakeBackend: newFake(), pin: pin}
		bes[k] = fakes[k]
	}
	d, err := NewMulti(bes, Options{Features: DefaultFeatures &^ FeatureMAC.Mask()})
	if err != nil {
		tb.Fatal(err)
	}
	return d, fakes
}

// ctrlCmd sends one control command made of bufs (the ack buffer
// included) on control queue q and returns the ack byte, or -1 if the
// device answered with used length 0.
func ctrlCmd(tb testing.TB, h *virtiotest.Harness, q int, bufs ...qt.Buf) int {
	tb.Helper()
	cq := h.Drivers[q]
	if _, err := cq.Add(bufs...); err != nil {
		tb.Fatal(err)
	}
	h.Kick(q)
	var u qt.Used
	waitUntil(tb, "control answer", func() bool {
		var ok bool
		u, ok = cq.Used()
		return ok
	})
	if u.Len == 0 {
		return -1
	}
	return int(cq.Written(u)[0])
}

func pairsSet(n uint16) []qt.Buf {
	return []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs, byte(n), byte(n >> 8)}), qt.W(1)}
}

// receiveOn reads want packets (small mode: one used element each)
// from receive queue q and returns their sequence numbers.
func receiveOn(tb testing.TB, h *virtiotest.Harness, q, want int) []uint32 {
	tb.Helper()
	var seqs []uint32
	waitUntil(tb, fmt.Sprintf("%d packets on queue %d", want, q), func() bool {
		for _, u := range h.Drivers[q].AllUsed() {
			w := h.Drivers[q].Written(u)
			seqs = append(seqs, binary.LittleEndian.Uint32(w[HdrLen:]))
		}
		return len(seqs) >= want
	})
	return seqs
}

func postOn(tb testing.TB, h *virtiotest.Harness, q, n int) {
	tb.Helper()
	for range n {
		if _, err := h.Drivers[q].Add(qt.W(1530)); err != nil {
			tb.Fatal(err)
		}
	}
	h.Kick(q)
}

func TestMQNew(t *testing.T) {
	d, _ := newMQ(t, 3)
	if f := d.Features(); !virtio.Has(f, FeatureMQ) || !virtio.Has(f, FeatureCtrlVQ) {
		t.Fatalf("features %#x: MQ and CTRL_VQ not offered", f)
	}
	if got := d.QueueMaxSizes(); len(got) != 7 || got[6] != DefaultQueueSize || got[5] != DefaultQueueSize {
		t.Fatalf("QueueMaxSizes = %v", got)
	}
	var c [2]byte
	d.ReadConfig(8, c[:])
	if binary.LittleEndian.Uint16(c[:]) != 3 || d.Pairs() != 3 || d.ActivePairs() != 1 {
		t.Fatalf("max_virtqueue_pairs %v, Pairs %d, ActivePairs %d", c, d.Pairs(), d.ActivePairs())
	}
	if states := d.EngineStates(); len(states) != 8 || states[2].Name != "rx1" || states[5].Queue != 5 || states[7].Queue != 6 {
		t.Fatalf("engine states %+v", states)
	}
	// One pair: nothing changes (no MQ, max_virtqueue_pairs 1).
	one, _ := newDevice(t, Options{})
	if virtio.Has(one.Features(), FeatureMQ) || len(one.QueueMaxSizes()) != 2 {
		t.Fatalf("one pair: features %#x, queues %d", one.Features(), len(one.QueueMaxSizes()))
	}
	one.ReadConfig(8, c[:])
	if binary.LittleEndian.Uint16(c[:]) != 1 {
		t.Fatalf("one pair: max_virtqueue_pairs %v", c)
	}
	for _, bad := range []struct {
		bes  []Backend
		opts Options
	}{
		{nil, Options{}},
		{[]Backend{newFake(), nil}, Options{}},
		{make([]Backend, MaxQueuePairs+1), Options{}},
		{[]Backend{newFake(), newFake()}, Options{Queues: 3}},
		{[]Backend{newFake()}, Options{Features: DefaultFeatures&^FeatureMAC.Mask() | FeatureMQ.Mask()}}, // MQ without CTRL_VQ
	} {
		if _, err := NewMulti(bad.bes, bad.opts); err == nil {
			t.Errorf("NewMulti(%d backends, %+v) accepted", len(bad.bes), bad.opts)
		}
	}
}

// TestMQPairsSet sends every VQ_PAIRS_SET a driver can send, good and
// bad, and checks the answer, the pairs in use and the backends'
// steering.
func TestMQPairsSet(t *testing.T) {
	d, bes := newMQ(t, 3)
	h := activate(t, d, fMQ, virtiotest.Options{})
	cq := CtrlQueueOf(3)
	if d.ActivePairs() != 1 || !bes[0].attached() || bes[1].attached() || bes[2].attached() {
		t.Fatalf("after activation: %d pairs active, attached %v %v %v", d.ActivePairs(), bes[0].attached(), bes[1].attached(), bes[2].attached())
	}
	cmds := []struct {
		name  string
		bufs  []qt.Buf
		ack   int
		pairs int
	}{
		{"set 3", pairsSet(3), ctrlOK, 3},
		{"set 1", pairsSet(1), ctrlOK, 1},
		{"set 2", pairsSet(2), ctrlOK, 2},
		{"set 0", pairsSet(0), ctrlErr, 2},
		{"set 4", pairsSet(4), ctrlErr, 2},
		{"set 0x8001", pairsSet(0x8001), ctrlErr, 2},
		{"short", []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs, 1}), qt.W(1)}, ctrlErr, 2},
		{"no data", []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs}), qt.W(1)}, ctrlErr, 2},
		{"long", []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs, 1, 0, 0}), qt.W(1)}, ctrlErr, 2},
		{"RSS_CONFIG", []qt.Buf{qt.R([]byte{ctrlClassMQ, 1, 1, 0}), qt.W(1)}, ctrlErr, 2},
		{"HASH_CONFIG", []qt.Buf{qt.R([]byte{ctrlClassMQ, 2, 1, 0}), qt.W(1)}, ctrlErr, 2},
		{"split over descriptors", []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs}), qt.R([]byte{3}), qt.R([]byte{0}), qt.W(1)}, ctrlOK, 3},
		{"no ack room", []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs, 1, 0})}, -1, 3},
		{"ack before data", []qt.Buf{qt.R([]byte{ctrlClassMQ, ctrlMQPairs}), qt.W(1), qt.W(2)}, ctrlErr, 3},
		{"set 1 again", pairsSet(1), ctrlOK, 1},
		{"set 1 twice", pairsSet(1), ctrlOK, 1},
	}
	for _, c := range cmds {
		if ack := ctrlCmd(t, h, cq, c.bufs...); ack != c.ack || d.ActivePairs() != c.pairs {
			t.Fatalf("%s: ack %d, %d pairs; want %d, %d", c.name, ack, d.ActivePairs(), c.ack, c.pairs)
		}
		for k, b := range bes {
			if b.attached() != (k < c.pairs) {
				t.Fatalf("%s: pair %d attached %v", c.name, k+1, b.attached())
			}
		}
	}
	// Never a redundant TUNSETQUEUE (Linux refuses them).
	for k, b := range bes[1:] {
		hist := b.history()
		for i := 1; i < len(hist); i++ {
			if hist[i] == hist[i-1] {
				t.Fatalf("pair %d: redundant TUNSETQUEUE in %v", k+2, hist)
			}
		}
	}
	// A backend that cannot attach: ERR, and the pairs in use unchanged.
	bes[2].fail = unix.EPERM
	if ack := ctrlCmd(t, h, cq, pairsSet(3)...); ack != ctrlErr || d.ActivePairs() != 1 {
		t.Fatalf("attach failure: ack %d, %d pairs", ack, d.ActivePairs())
	}
	bes[2].fail = nil
	if s := finalStats(h, d); s.CtrlCommands != 6 || s.CtrlRejected != 11 {
		t.Fatalf("stats %+v", s)
	}
}

// TestMQNotNegotiated: a driver that acks CTRL_VQ but not MQ uses pair
// 1 with the control queue at 2, as with one pair; VQ_PAIRS_SET is
// refused and the other pairs stay detached.
func TestMQNotNegotiated(t *testing.T) {
	d, bes := newMQ(t, 2)
	h := activate(t, d, fCtrl, virtiotest.Options{Enabled: []bool{true, true, true}})
	if ack := ctrlCmd(t, h, CtrlQueue, pairsSet(1)...); ack != ctrlErr {
		t.Fatalf("VQ_PAIRS_SET without MQ: ack %d", ack)
	}
	if bes[1].attached() {
		t.Fatal("pair 2 attached without MQ")
	}
	postOn(t, h, RxQueue, 4)
	for i := range 4 {
		tapSwitch(bes, i, frame(i, 60, 0, 0))
	}
	if got := receiveOn(t, h, RxQueue, 4); !slices.Equal(got, []uint32{0, 1, 2, 3}) {
		t.Fatalf("received %v", got)
	}
	// MQ negotiated, pair 2's queues not enabled: only pair 1 runs.
	h.Close()
	h = activate(t, d, fMQ, virtiotest.Options{Enabled: []bool{true, true, false, false, true}})
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlErr {
		t.Fatalf("VQ_PAIRS_SET 2 with pair 2 disabled: ack %d", ack)
	}
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(1)...); ack != ctrlOK {
		t.Fatalf("VQ_PAIRS_SET 1: ack %d", ack)
	}
	// MQ negotiated without the control queue enabled: refused.
	h.Close()
	if _, err := virtiotest.Activate(d, fMQ|fCommon, virtiotest.Options{Enabled: []bool{true, true, true, true}}); err == nil {
		t.Fatal("activated with MQ and no control queue")
	}
	d.Reset()
}

// TestMQTraffic: before VQ_PAIRS_SET every frame arrives on pair 1;
// after it, on both, and pair 2's transmit queue reaches its backend.
// The per-pair counters say which pair carried what.
func TestMQTraffic(t *testing.T) {
	d, bes := newMQ(t, 2)
	h := activate(t, d, fMQ, virtiotest.Options{})
	rx2, tx2 := RxQueueOf(1), TxQueueOf(1)
	postOn(t, h, RxQueue, 32)
	postOn(t, h, rx2, 32)
	for i := range 8 {
		if k := tapSwitch(bes, i, frame(i, 60, 0, 0)); k != 0 {
			t.Fatalf("frame %d steered to pair %d before VQ_PAIRS_SET", i, k+1)
		}
	}
	receiveOn(t, h, RxQueue, 8)
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlOK {
		t.Fatalf("ack %d", ack)
	}
	on2 := 0
	for i := 8; i < 24; i++ {
		if tapSwitch(bes, i, frame(i, 60, 0, 0)) == 1 {
			on2++
		}
	}
	got := append(receiveOn(t, h, RxQueue, 16-on2), receiveOn(t, h, rx2, on2)...)
	if slices.Sort(got); len(got) != 16 || got[0] != 8 || got[15] != 23 || on2 != 8 {
		t.Fatalf("received %v (%d on pair 2)", got, on2)
	}
	if _, err := h.Drivers[tx2].Add(qt.R(frame(100, 60, 0, 0))); err != nil {
		t.Fatal(err)
	}
	h.Kick(tx2)
	bes[1].WaitSent(t, 1)
	if bes[0].SentCount() != 0 {
		t.Fatal("pair 2's frame sent on pair 1's backend")
	}
	want := []PairStats{{RxPackets: 16, RxBytes: 16 * 60}, {RxPackets: 8, RxBytes: 8 * 60, TxPackets: 1, TxBytes: 60}}
	st := finalStats(h, d)
	if ps := d.PairStats(); !slices.Equal(ps, want) || st.RxPackets != 24 || st.TxPackets != 1 {
		t.Fatalf("pair stats %+v, totals rx %d tx %d", ps, st.RxPackets, st.TxPackets)
	}
}

// shrinkRig is two pairs in use, 20 frames steered over both while the
// guest has buffers on pair 1 only, and what went to pair 2.
func shrinkRig(t *testing.T) (*virtiotest.Harness, []*steerFake, int) {
	t.Helper()
	d, bes := newMQ(t, 2)
	h := activate(t, d, fMQ, virtiotest.Options{})
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlOK {
		t.Fatalf("ack %d", ack)
	}
	postOn(t, h, RxQueue, 64)
	on2 := 0
	for i := range 20 {
		if tapSwitch(bes, i, frame(i, 60, 0, 0)) == 1 {
			on2++
		}
	}
	if on2 == 0 {
		t.Fatal("no frame went to pair 2")
	}
	return h, bes, on2
}

// setDrainWait sets drainWait for one test.
func setDrainWait(t *testing.T, d time.Duration) {
	old := drainWait
	drainWait = d
	t.Cleanup(func() { drainWait = old })
}

// TestMQShrinkLosesNothing: frames waiting on pair 2 (the guest had no
// buffers there) when the driver goes down to one pair are delivered on
// pair 2 before its TAP queue is detached (which would drop them), once
// the driver posts buffers there while it waits for the answer, as
// Linux's NAPI does; frames sent after the answer go to pair 1: every
// frame arrives exactly once. Without the drain the detach drops them.
func TestMQShrinkLosesNothing(t *testing.T) {
	setDrainWait(t, 10*time.Second) // a loaded machine: the bound is not what is tested
	h, bes, on2 := shrinkRig(t)
	rx2 := RxQueueOf(1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		postOn(t, h, rx2, 64)
	}()
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(1)...); ack != ctrlOK {
		t.Fatalf("ack %d", ack)
	}
	if bes[1].attached() || bes[1].purgedFrames() != 0 {
		t.Fatalf("pair 2 attached %v, %d frames dropped at the detach, want 0 of the %d waiting", bes[1].attached(), bes[1].purgedFrames(), on2)
	}
	for i := 20; i < 30; i++ {
		if k := tapSwitch(bes, i, frame(i, 60, 0, 0)); k != 0 {
			t.Fatalf("frame %d steered to detached pair %d", i, k+1)
		}
	}
	got := append(receiveOn(t, h, RxQueue, 30-on2), receiveOn(t, h, rx2, on2)...)
	slices.Sort(got)
	for i, s := range got {
		if s != uint32(i) {
			t.Fatalf("received %v", got)
		}
	}
	if len(got) != 30 {
		t.Fatalf("%d frames received, want 30", len(got))
	}
}

// TestMQShrinkPinned: a frame the host steers to pair 2 after its
// drain, as its TAP queue is being detached, is not dropped with the
// queue: the first pair's pin (a TAP steering program) sends it to pair
// 1 instead, and the pin is off again once the answer comes. Without the
// pin the frame is purged; with a pin that cannot be set, the device
// still detaches (the old way) and answers OK.
func TestMQShrinkPinned(t *testing.T) {
	setDrainWait(t, 10*time.Second)
	for _, pinFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinFails=%v", pinFails), func(t *testing.T) {
			d, bes := newMQ(t, 2)
			h := activate(t, d, fMQ, virtiotest.Options{})
			if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlOK {
				t.Fatalf("ack %d", ack)
			}
			postOn(t, h, RxQueue, 64)
			if pinFails {
				bes[0].pin.fail = unix.EPERM
			}
			// A flow that goes to pair 2 when both are attached and
			// nothing is pinned (hash 1 of two queues).
			var late int
			bes[1].onDetach = func() { late = tapSwitch(bes, 1, frame(7, 60, 0, 0)) }
			if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(1)...); ack != ctrlOK {
				t.Fatalf("ack %d", ack)
			}
			wantPinned := uint64(1)
			if pinFails {
				wantPinned = 0
			}
			if all, pinned := d.Shrinks(); all != 1 || pinned != wantPinned {
				t.Errorf("Shrinks() = %d, %d; want 1, %d", all, pinned, wantPinned)
			}
			if pinFails {
				if late != 1 || bes[1].purgedFrames() != 1 {
					t.Fatalf("unpinned: late frame on pair %d, %d purged; want pair 2, 1 purged", late+1, bes[1].purgedFrames())
				}
				return
			}
			if late != 0 || bes[1].purgedFrames() != 0 {
				t.Fatalf("pinned: late frame on pair %d, %d purged; want pair 1, none purged", late+1, bes[1].purgedFrames())
			}
			if got := receiveOn(t, h, RxQueue, 1); !slices.Equal(got, []uint32{7}) {
				t.Fatalf("pair 1 received %v, want the late frame 7", got)
			}
			if hist := bes[0].pin.history(); !slices.Equal(hist, []bool{true, false}) || bes[0].pin.pinned() {
				t.Fatalf("pin calls %v, pinned %v; want on then off", hist, bes[0].pin.pinned())
			}
		})
	}
}

// TestMQUnpinFails: a pin that cannot be taken off after the detach
// does not turn VQ_PAIRS_SET into ERR: the pairs were detached as asked
// (a driver told ERR keeps its old count, as ActivePairs did) and every
// frame still reaches pair 1. The next VQ_PAIRS_SET takes the pin off.
func TestMQUnpinFails(t *testing.T) {
	setDrainWait(t, 10*time.Second)
	d, bes := newMQ(t, 2)
	h := activate(t, d, fMQ, virtiotest.Options{})
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlOK {
		t.Fatalf("set 2: ack %d", ack)
	}
	pin := bes[0].pin
	pin.mu.Lock()
	pin.failOff = unix.EBADF
	pin.mu.Unlock()
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(1)...); ack != ctrlOK || d.ActivePairs() != 1 || bes[1].attached() {
		t.Fatalf("set 1 with the unpin failing: ack %d, %d pairs active, pair 2 attached %v; want OK, 1, false",
			ack, d.ActivePairs(), bes[1].attached())
	}
	if !pin.pinned() {
		t.Fatal("the pin is off although taking it off failed")
	}
	pin.mu.Lock()
	pin.failOff = nil
	pin.mu.Unlock()
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlOK || d.ActivePairs() != 2 {
		t.Fatalf("set 2: ack %d, %d pairs active", ack, d.ActivePairs())
	}
	if hist := pin.history(); pin.pinned() || !slices.Equal(hist, []bool{true, false, false}) {
		t.Fatalf("pin calls %v, pinned %v; want on, off (failed), off and not pinned", hist, pin.pinned())
	}
}

// TestMQShrinkDrainBounded: a driver that never posts buffers on the
// pair it gives up still gets its answer, after drainWait: the frames
// waiting there are dropped with the queue, as before the drain.
func TestMQShrinkDrainBounded(t *testing.T) {
	setDrainWait(t, 50*time.Millisecond)
	h, bes, on2 := shrinkRig(t)
	start := time.Now()
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(1)...); ack != ctrlOK {
		t.Fatalf("ack %d", ack)
	}
	if d := time.Since(start); d < drainWait {
		t.Errorf("answered after %v, before the drain's %v", d, drainWait)
	}
	if bes[1].attached() || bes[1].purgedFrames() != on2 {
		t.Fatalf("pair 2 attached %v, %d frames dropped, want %d", bes[1].attached(), bes[1].purgedFrames(), on2)
	}
}

// TestMQReset: a reset and a new activation start over with one pair
// in use and the others detached (before DRIVER_OK the control queue
// has no engine: a VQ_PAIRS_SET queued then is answered after it, like
// any other).
func TestMQReset(t *testing.T) {
	d, bes := newMQ(t, 2)
	h := activate(t, d, fMQ, virtiotest.Options{})
	if ack := ctrlCmd(t, h, CtrlQueueOf(2), pairsSet(2)...); ack != ctrlOK || !bes[1].attached() {
		t.Fatalf("ack %d", ack)
	}
	h.Close()
	if d.ActivePairs() != 2 {
		t.Fatalf("%d pairs after reset", d.ActivePairs())
	}
	activate(t, d, fMQ, virtiotest.Options{})
	if d.ActivePairs() != 1 || bes[1].attached() {
		t.Fatalf("after re-activation: %d pairs, pair 2 attached %v", d.ActivePairs(), bes[1].attached())
	}
}

// TestMQNoAllocs: pair 2's data path allocates no more than pair 1's
// (the per-pair counters are published per batch, without allocating).
func TestMQNoAllocs(t *testing.T) {
	be := &memBackend{frame: frame(0, 1500, 0, 0)}
	d, err := NewMulti([]Backend{newFake(), be}, Options{Features: SupportedFeatures &^ FeatureMAC.Mask()})
	if err != nil {
		t.Fatal(err)
	}
	cfgs := make([]qt.Config, len(d.QueueMaxSizes()))
	for i := range 4 {
		cfgs[i] = qt.Config{Size: 256, DataSize: 1 << 20}
	}
	ds, queues, irq := virtiotest.SyncQueues(t, d, fMQ|fCommon, cfgs...)
	if err := d.configure(queues, 2, false); err != nil {
		t.Fatal(err)
	}
	if err := d.engines.Bind(queues, irq, 2, 3); err != nil {
		t.Fatal(err)
	}
	rxd := ds[RxQueueOf(1)]
	for range 256 {
		rxd.Add(qt.W(1530))
	}
	rxd.Kick()
	p := &d.pairs[1]
	step := func() int {
		be.avail = 32
		if r := p.rx.eng.Step(); r.Do == virtio.WaitBackend {
			p.rx.win.giveBack(queues[RxQueueOf(1)].Ring)
		}
		return recycle(rxd)
	}
	for range 100 { // warm every head's cached chain
		step()
	}
	virtiotest.NoAllocs(t, "pair 2 receive", 32, step)
	if d.PairStats()[1].RxPackets == 0 {
		t.Fatal("nothing received on pair 2")
	}
}
