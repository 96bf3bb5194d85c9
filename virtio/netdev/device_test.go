package netdev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"

	"github.com/flintvm/flint/internal/vnethdr"
)

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func TestConfigSpace(t *testing.T) {
	d, _ := newDevice(t, Options{MAC: testMAC, MTU: 9000, LinkDown: true})
	if d.Type() != virtio.DeviceNet || d.ConfigSize() != 12 {
		t.Fatal("identity")
	}
	f := d.Features()
	if f != DefaultFeatures|fCommon || !virtio.Has(f, FeatureMAC) || virtio.Has(f, FeatureCtrlVQ) {
		t.Fatalf("features %#x", f)
	}
	cfg := make([]byte, 16)
	d.ReadConfig(0, cfg)
	want := []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 1, 0, 0x28, 0x23, 0, 0, 0, 0}
	if !bytes.Equal(cfg, want) {
		t.Fatalf("config % x", cfg)
	}
	d.WriteConfig(0, []byte{1, 2, 3, 4, 5, 6}) // read-only
	var mtu [2]byte
	d.ReadConfig(10, mtu[:])
	var mac [6]byte
	d.ReadConfig(0, mac[:])
	if binary.LittleEndian.Uint16(mtu[:]) != 9000 || mac != testMAC {
		t.Fatal("partial reads / write ignored")
	}
	d.ReadConfig(100, mtu[:])
	if mtu != [2]byte{} {
		t.Fatal("out of range read")
	}

	// Link changes notify the driver only when STATUS is negotiated.
	h := activate(t, d, FeatureStatus.Mask(), virtiotest.Options{})
	d.SetLinkUp(true)
	d.SetLinkUp(true)
	var st [2]byte
	d.ReadConfig(6, st[:])
	if st[0] != statusLinkUp || h.IRQ.ConfigCount() != 1 {
		t.Fatalf("status %v, %d config interrupts", st, h.IRQ.ConfigCount())
	}
	h.Close()
	h = activate(t, d, 0, virtiotest.Options{})
	d.SetLinkUp(false)
	if h.IRQ.ConfigCount() != 0 {
		t.Fatal("config interrupt without STATUS")
	}
}

func TestNewChecksOptions(t *testing.T) {
	be := newFake()
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"unsupported", Options{Features: fCommon | 1<<22}},
		{"tso-without-csum", Options{Features: FeatureGuestTSO4.Mask()}},
		{"ecn-without-tso", Options{Features: fCsum | FeatureGuestECN.Mask()}},
		{"host-ufo-without-csum", Options{Features: FeatureHostUFO.Mask()}},
		{"host-ecn-without-tso", Options{Features: FeatureCsum.Mask() | FeatureHostECN.Mask()}},
		{"ctrl-rx-without-vq", Options{Features: FeatureCtrlRx.Mask()}},
		{"mac-feature-no-mac", Options{Features: FeatureMAC.Mask()}},
		{"multicast-mac", Options{MAC: [6]byte{1, 2, 3, 4, 5, 6}}},
		{"tiny-mtu", Options{MTU: 40}},
		{"queue-size", Options{QueueSize: 100}},
	} {
		if _, err := New(be, tc.o); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("nil backend accepted")
	}
	d, err := New(be, Options{})
	if err != nil || virtio.Has(d.Features(), FeatureMAC) || !virtio.Has(d.Features(), FeatureMrgRxbuf) {
		t.Fatalf("defaults without MAC: %#x %v", d.Features(), err)
	}
	if got := d.QueueMaxSizes(); len(got) != 2 || got[0] != DefaultQueueSize {
		t.Fatalf("queue sizes %v", got)
	}
	d, _ = New(be, Options{Features: DefaultFeatures&^FeatureMAC.Mask() | FeatureCtrlVQ.Mask()})
	if got := d.QueueMaxSizes(); len(got) != 3 {
		t.Fatalf("queue sizes with ctrl %v", got)
	}
}

func TestAckFeaturesDependencies(t *testing.T) {
	d, be := newDevice(t, Options{Features: DefaultFeatures&^FeatureMAC.Mask() | FeatureCtrlVQ.Mask() | FeatureCtrlRx.Mask()})
	for _, bad := range []uint64{
		FeatureGuestTSO4.Mask(),
		FeatureGuestTSO6.Mask(),
		FeatureGuestUFO.Mask(),
		fCsum | FeatureGuestECN.Mask(),
		FeatureHostTSO4.Mask(),
		FeatureCsum.Mask() | FeatureHostECN.Mask(),
		FeatureCtrlRx.Mask(),
		1 << 22, // not offered
	} {
		if err := d.AckFeatures(fCommon | bad); err == nil {
			t.Errorf("accepted %#x", bad)
		}
	}
	if len(be.OffloadCalls()) != 0 {
		t.Fatal("SetOffload called for a refused set")
	}
	if err := d.AckFeatures(fCommon | fGSO | fMrg); err != nil {
		t.Fatal(err)
	}
	if c := be.OffloadCalls(); len(c) != 1 || c[0] != fCommon|fGSO|fMrg {
		t.Fatalf("offload calls %#x", c)
	}
}

// TestResetAndRenegotiate: Reset stops the device and turns offloads
// off; a new negotiation applies the new offloads, and the device works
// in its new mode.
func TestResetAndRenegotiate(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fMrg|fGSO|fIndir, virtiotest.Options{})
	postRx(t, h, 64, 4096)
	be.Inject(frame(0, 65550, 0, vnethdr.GSOTCPv4))
	receive(t, h, 1, true)
	h.Close()
	if d.Negotiated() != 0 {
		t.Fatal("features survived Reset")
	}
	h = activate(t, d, fIndir, virtiotest.Options{}) // small mode, no offloads
	calls := be.OffloadCalls()
	want := []uint64{fCommon | fMrg | fGSO | fIndir, 0, fCommon | fIndir}
	if len(calls) != len(want) {
		t.Fatalf("offload calls %#x, want %#x", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("offload calls %#x, want %#x", calls, want)
		}
	}
	postRx(t, h, 4, 1530)
	be.Inject(frame(1, 1514, 0, 0), frame(2, 100, 0, vnethdr.GSOTCPv4)) // GSO no longer allowed
	got := receive(t, h, 1, false)
	checkPackets(t, got, [][]byte{frame(1, 1514, 0, 0)}, 0, false)
	waitUntil(t, "gso drop", func() bool { return stats(d).RxDropHeader == 1 })
	h.Close()
	d.Reset() // not active: no-op
	for range 3 {
		h = activate(t, d, fMrg, virtiotest.Options{})
		h.Close()
	}
}

func TestActivateErrors(t *testing.T) {
	d, _ := newDevice(t, Options{Features: DefaultFeatures&^FeatureMAC.Mask() | FeatureCtrlVQ.Mask()})
	if _, err := virtiotest.Activate(d, fCommon, virtiotest.Options{Enabled: []bool{true, false, true}}); err == nil {
		t.Fatal("activated without a transmit queue")
	}
	d.Reset()
	if _, err := virtiotest.Activate(d, fCommon|FeatureCtrlVQ.Mask(), virtiotest.Options{Enabled: []bool{true, true}}); err == nil {
		t.Fatal("activated without the negotiated control queue")
	}
	d.Reset()
	// CTRL_VQ offered but not negotiated: queue 2 may stay disabled.
	h := activate(t, d, 0, virtiotest.Options{Enabled: []bool{true, true}})
	if err := d.Activate(h.Drivers[0].Mem, make([]virtio.Queue, 3), h.IRQ); err == nil {
		t.Fatal("double Activate accepted")
	}
}

func TestControlQueue(t *testing.T) {
	d, be := newDevice(t, Options{Features: DefaultFeatures&^FeatureMAC.Mask() | FeatureCtrlVQ.Mask() | FeatureCtrlRx.Mask()})
	h := activate(t, d, FeatureCtrlVQ.Mask()|FeatureCtrlRx.Mask()|fIndir, virtiotest.Options{})
	cq := h.Drivers[CtrlQueue]
	cmds := []struct {
		buf []qt.Buf
		ack byte
	}{
		{[]qt.Buf{qt.R([]byte{ctrlClassRx, 0}), qt.R([]byte{1}), qt.W(1)}, ctrlOK},         // PROMISC on
		{[]qt.Buf{qt.R([]byte{ctrlClassRx, 1, 0}), qt.W(1)}, ctrlOK},                       // ALLMULTI off
		{[]qt.Buf{qt.R([]byte{ctrlClassMAC, 0, 0, 0, 0, 0, 0, 0, 0, 0}), qt.W(1)}, ctrlOK}, // TABLE_SET
		{[]qt.Buf{qt.R([]byte{4, 0, 1, 0}), qt.W(1)}, ctrlErr},                             // MQ: not offered
		{[]qt.Buf{qt.R([]byte{ctrlClassRx}), qt.W(1)}, ctrlErr},                            // too short
	}
	for i, c := range cmds {
		var err error
		if i%2 == 0 {
			_, err = cq.Add(c.buf...)
		} else {
			_, err = cq.AddIndirect(c.buf...)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cq.Add(qt.R([]byte{0, 0})) // no room for the ack
	h.Kick(CtrlQueue)
	var used []qt.Used
	waitUntil(t, "control answers", func() bool {
		used = append(used, cq.AllUsed()...)
		return len(used) == len(cmds)+1
	})
	for i, c := range cmds {
		if w := cq.Written(used[i]); used[i].Len != 1 || w[0] != c.ack {
			t.Errorf("command %d: len %d ack %v, want %d", i, used[i].Len, w, c.ack)
		}
	}
	if used[len(cmds)].Len != 0 {
		t.Error("ack written without room")
	}
	// The data path works alongside.
	postRx(t, h, 2, 1530)
	be.Inject(frame(0, 60, 0, 0))
	receive(t, h, 1, false)
	if s := finalStats(h, d); s.CtrlCommands != 3 || s.CtrlRejected != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// TestMalformedRings: hostile rings never panic the device. Chain-level
// faults are completed and counted while traffic continues; a driver
// that breaks a queue gets DEVICE_NEEDS_RESET, and Reset still works.
func TestMalformedRings(t *testing.T) {
	type fault func(h *virtiotest.Harness, q int)
	base := uint64(1 << 20)
	const bad = 255 // a descriptor the driver's allocator hands out last
	for _, tc := range []struct {
		name   string
		breaks bool
		f      fault
	}{
		{"loop", false, func(h *virtiotest.Harness, q int) {
			d := h.Drivers[q]
			d.SetDesc(bad, qt.Desc{Addr: base + 0x10000, Len: 2048, Flags: qt.DescNext | qt.DescWrite, Next: bad - 1})
			d.SetDesc(bad-1, qt.Desc{Addr: base + 0x10000, Len: 2048, Flags: qt.DescNext | qt.DescWrite, Next: bad})
			d.AddHead(bad)
		}},
		{"out-of-range-address", false, func(h *virtiotest.Harness, q int) {
			h.Drivers[q].SetDesc(bad, qt.Desc{Addr: 1 << 40, Len: 2048, Flags: qt.DescWrite})
			h.Drivers[q].AddHead(bad)
		}},
		{"address-overflow", false, func(h *virtiotest.Harness, q int) {
			h.Drivers[q].SetDesc(bad, qt.Desc{Addr: ^uint64(0) - 10, Len: 2048, Flags: qt.DescWrite})
			h.Drivers[q].AddHead(bad)
		}},
		{"nested-indirect", false, func(h *virtiotest.Harness, q int) {
			d := h.Drivers[q]
			tab := d.Alloc(32)
			d.WriteDescs(tab, qt.Desc{Addr: tab, Len: 16, Flags: qt.DescIndirect})
			d.SetDesc(bad, qt.Desc{Addr: tab, Len: 16, Flags: qt.DescIndirect})
			d.AddHead(bad)
		}},
		{"huge-length", false, func(h *virtiotest.Harness, q int) {
			h.Drivers[q].SetDesc(bad, qt.Desc{Addr: base, Len: 0xffffffff, Flags: qt.DescWrite})
			h.Drivers[q].AddHead(bad)
		}},
		{"head-out-of-range", false, func(h *virtiotest.Harness, q int) {
			h.Drivers[q].AddHead(60000)
		}},
		{"avail-index-jump", true, func(h *virtiotest.Harness, q int) {
			h.Drivers[q].SetAvailIdx(h.Drivers[q].AvailIdx() + 1000)
		}},
	} {
		for _, q := range []int{RxQueue, TxQueue} {
			t.Run(tc.name+"/"+[]string{"rx", "tx"}[q], func(t *testing.T) {
				d, be := newDevice(t, Options{})
				h := activate(t, d, fMrg|fIndir, virtiotest.Options{})
				tc.f(h, q)
				if !tc.breaks {
					// Well-formed chains after the bad one.
					postRx(t, h, 4, 1536)
					sendTx(t, h, frame(0, 60, 0, 0), nil, false)
				}
				h.ForceKick(q)
				h.Kick(RxQueue)
				h.Kick(TxQueue)
				if tc.breaks {
					if !h.IRQ.Wait(5*time.Second, h.IRQ.NeedsResetRequested) {
						t.Fatal("no DEVICE_NEEDS_RESET")
					}
					if !h.Queues[q].Broken() {
						// read after the goroutine parked: it no longer
						// touches the queue
						t.Fatal("queue not broken")
					}
				} else {
					be.Inject(frame(1, 60, 0, 0))
					receive(t, h, 1, true)
					waitUntil(t, "tx", func() bool { return len(be.Sent()) == 1 })
					// The good traffic moved; the counts are complete only
					// once the engines stopped (see finalStats): exactly
					// the one bad chain, on the queue it was posted to.
					s := finalStats(h, d)
					malformed := [2]uint64{s.RxMalformed, s.TxMalformed}
					want := [2]uint64{}
					want[q] = 1
					if malformed != want || s.RxPackets != 1 || s.TxPackets != 1 || h.IRQ.NeedsResetRequested() {
						t.Fatalf("stats %+v, needs reset %v", s, h.IRQ.NeedsResetRequested())
					}
				}
				h.Close()
				if tc.breaks && stats(d).Broken != 1 {
					t.Fatalf("broken count %d", stats(d).Broken)
				}
			})
		}
	}
}

var _ = queue.ErrBroken

// TestDuplicateHeads: a driver that makes the same head available twice
// (hostile, or buggy) gets what it asked for, and the device keeps its
// own state consistent (it keeps snapshots, not the queue's chains).
func TestDuplicateHeads(t *testing.T) {
	for _, acked := range []uint64{fMrg | fGSO, fMrg, 0} {
		d, be := newDevice(t, Options{})
		h := activate(t, d, acked, virtiotest.Options{})
		rxd, txd := h.Drivers[RxQueue], h.Drivers[TxQueue]
		a, _ := rxd.Add(qt.W(1536))
		rxd.Add(qt.W(1536))
		rxd.AddHead(a)
		rxd.AddHead(a)
		h.Kick(RxQueue)
		tx, _ := txd.Add(qt.R(frame(9, 60, 0, 0)))
		txd.AddHead(tx)
		h.Kick(TxQueue)
		be.Inject(frame(0, 60, 0, 0), frame(1, 1514, 0, 0), frame(2, 100, 0, 0), frame(3, 100, 0, 0))
		waitUntil(t, "tx", func() bool { return len(be.Sent()) == 2 })
		if acked&fGSO == 0 {
			waitUntil(t, "rx", func() bool { return stats(d).RxPackets == 4 })
		}
		h.Close()
	}
}

// TestTxBackendGone: frames the backend cannot take any more are dropped
// and counted; the ring keeps draining.
func TestTxBackendGone(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, 0, virtiotest.Options{})
	be.Close()
	for i := range 5 {
		sendTx(t, h, frame(i, 60, 0, 0), nil, false)
	}
	h.Kick(TxQueue)
	waitUntil(t, "drops", func() bool { return stats(d).TxErrors == 5 })
	waitUntil(t, "completions", func() bool { h.Drivers[TxQueue].AllUsed(); return h.Drivers[TxQueue].InFlight() == 0 })
}

// TestTrafficAndResets resets the device at arbitrary moments while the
// guest and the backend keep traffic flowing both ways: Reset must always
// return promptly, and what the device completed before it must be
// intact.
func TestTrafficAndResets(t *testing.T) {
	d, be := newDevice(t, Options{})
	modes := []uint64{fMrg | fGSO | fEvent, fMrg | fIndir, fGSO | fIndir | fEvent, 0}
	for round := range 24 {
		h := activate(t, d, modes[round%len(modes)], virtiotest.Options{DataSize: 24 << 20})
		mrg := modes[round%len(modes)]&fMrg != 0
		big := modes[round%len(modes)]&fGSO != 0 && !mrg
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() { // the guest
			rxd, txd := h.Drivers[RxQueue], h.Drivers[TxQueue]
			seq := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				for rxd.FreeDescs() >= 18 && rxd.InFlight() < 64 {
					if big {
						rxd.AddIndirect(qt.W(HdrLen), qt.W(65550))
					} else {
						rxd.Add(qt.W(1536 + uint32(i%3)*1280))
					}
				}
				h.Kick(RxQueue)
				for _, u := range rxd.AllUsed() {
					if u.Len != 0 && u.Len < HdrLen {
						done <- fmt.Errorf("used length %d", u.Len)
						return
					}
				}
				txd.AllUsed()
				if txd.FreeDescs() > 2 {
					sendTx(t, h, frame(seq, 60+seq%1400, 0, 0), []int{HdrLen}, false)
					h.Kick(TxQueue)
				}
				if be.Queued() < 32 {
					be.Inject(frame(seq, 60+seq%3000, 0, 0))
				}
				seq++
				time.Sleep(50 * time.Microsecond)
			}
		}()
		time.Sleep(time.Duration(round%5) * 3 * time.Millisecond)
		resetDone := make(chan struct{})
		go func() { d.Reset(); close(resetDone) }()
		select {
		case <-resetDone:
		case <-time.After(5 * time.Second):
			t.Fatal("Reset hung")
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	s := stats(d)
	if s.RxPackets == 0 || s.TxPackets == 0 || s.Broken != 0 {
		t.Fatalf("stats %+v", s)
	}
}
