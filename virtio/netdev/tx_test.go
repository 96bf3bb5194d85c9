package netdev

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// sendTx adds frame f to the transmit queue split as layout says (a list
// of segment lengths; the rest of f goes in a last segment), directly or
// through an indirect table.
func sendTx(tb testing.TB, h *virtiotest.Harness, f []byte, layout []int, indirect bool) {
	tb.Helper()
	var bufs []qt.Buf
	rest := f
	for _, n := range layout {
		bufs = append(bufs, qt.R(rest[:n]))
		rest = rest[n:]
	}
	if len(rest) > 0 {
		bufs = append(bufs, qt.R(rest))
	}
	var err error
	if indirect {
		_, err = h.Drivers[TxQueue].AddIndirect(bufs...)
	} else {
		_, err = h.Drivers[TxQueue].Add(bufs...)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

func TestTx(t *testing.T) {
	for _, tc := range []struct {
		name     string
		acked    uint64
		layout   []int
		indirect bool
		size     int
	}{
		{"one-descriptor", 0, nil, false, 1514},
		{"header-own-descriptor", fEvent, []int{HdrLen}, false, 1514},
		{"header-split", 0, []int{3, 5, 4}, false, 60},
		{"header-shares-data", 0, []int{HdrLen + 20}, false, 1514},
		{"indirect-multi-segment", fIndir, []int{HdrLen, 54, 1000, 1000, 4096}, true, 20000},
		{"indirect-gso-64k", fIndir | fEvent, []int{HdrLen, 66, 4096, 4096, 4096, 4096, 4096, 4096, 4096}, true, 65550},
		{"direct-gso-64k", 0, []int{HdrLen, 66, 32768}, false, 65550},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, be := newDevice(t, Options{})
			h := activate(t, d, tc.acked|fHostCsum, virtiotest.Options{})
			var frames [][]byte
			for i := range 20 {
				f := frame(i, tc.size-i, vnethdr.FNeedsCsum, vnethdr.GSONone)
				frames = append(frames, f)
				sendTx(t, h, f, tc.layout, tc.indirect)
			}
			h.Kick(TxQueue)
			txd := h.Drivers[TxQueue]
			var used []qt.Used
			waitUntil(t, "tx completions", func() bool {
				used = append(used, txd.AllUsed()...)
				return len(used) == len(frames)
			})
			for _, u := range used {
				if u.Len != 0 {
					t.Fatalf("tx used length %d, want 0", u.Len)
				}
			}
			got := be.Sent()
			if len(got) != len(frames) {
				t.Fatalf("backend got %d frames", len(got))
			}
			for i := range got {
				if !bytes.Equal(got[i], frames[i]) {
					t.Fatalf("frame %d differs (header passed through as is)", i)
				}
			}
			waitUntil(t, "tx counters", func() bool { return stats(d).TxPackets == 20 }) // published after the writes
			if s := stats(d); s.TxPackets != 20 || s.TxErrors != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestTxShortAndRefused: a chain shorter than a header is dropped; a
// frame the backend refuses is dropped; both are completed and counted.
func TestTxShortAndRefused(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, 0, virtiotest.Options{})
	txd := h.Drivers[TxQueue]
	txd.Add(qt.R(make([]byte, HdrLen-1)))
	txd.Add(qt.W(64)) // no readable part at all
	h.Kick(TxQueue)
	waitUntil(t, "short drops", func() bool { return stats(d).TxDropShort == 2 })
	be.SetTxErr(unix.EINVAL)
	sendTx(t, h, frame(0, 60, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "refused", func() bool { return stats(d).TxErrors == 1 })
	waitUntil(t, "completions", func() bool { txd.AllUsed(); return txd.InFlight() == 0 })
}

// TestTxBackPressure: EAGAIN from the backend makes the device wait, not
// spin or drop; everything goes out in order once the backend drains.
func TestTxBackPressure(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fEvent, virtiotest.Options{})
	be.SetTxBlock(true)
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, frame(i, 100, 0, 0))
		sendTx(t, h, frames[i], nil, false)
	}
	h.Kick(TxQueue)
	waitUntil(t, "the backend to push back", func() bool { return stats(d).TxWaits > 0 })
	settle()
	tries := be.Blocks()
	if tries > 3 {
		t.Fatalf("device retried %d times while the backend was blocked: spinning", tries)
	}
	if n := h.Drivers[TxQueue].PendingUsed(); n != 0 {
		t.Fatalf("%d chains completed while nothing was sent", n)
	}
	be.SetTxBlock(false)
	waitUntil(t, "all sent", func() bool { return len(be.Sent()) == len(frames) })
	for i, f := range be.Sent() {
		if !bytes.Equal(f, frames[i]) {
			t.Fatalf("frame %d out of order or damaged", i)
		}
	}
	waitUntil(t, "tx counters", func() bool { return stats(d).TxPackets == 10 }) // published after the writes
	if s := stats(d); s.TxErrors != 0 || s.TxPackets != 10 {
		t.Fatalf("stats %+v", s)
	}
}

// TestTxResetWhileBlocked: Reset interrupts a device waiting on the
// backend and gives the unsent chain back to the ring.
func TestTxResetWhileBlocked(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, 0, virtiotest.Options{})
	sendTx(t, h, frame(0, 100, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "sent", func() bool { return len(be.Sent()) == 1 })
	be.SetTxBlock(true)
	sendTx(t, h, frame(1, 100, 0, 0), nil, false)
	h.Kick(TxQueue)
	waitUntil(t, "the backend to push back", func() bool { return stats(d).TxWaits > 0 })
	d.Reset()
	if na := h.Queues[TxQueue].NextAvail(); na != 1 {
		t.Fatalf("next avail %d after sending 1 frame", na)
	}
}

// TestInterruptsPerBatch: one interrupt per batch, and notification
// suppression (flags or EVENT_IDX) respected.
func TestInterruptsPerBatch(t *testing.T) {
	for _, event := range []bool{false, true} {
		t.Run(fmt.Sprintf("event_idx=%v", event), func(t *testing.T) {
			acked := fMrg
			if event {
				acked |= fEvent
			}
			d, be := newDevice(t, Options{})
			h := activate(t, d, acked, virtiotest.Options{})
			rxd := h.Drivers[RxQueue]
			postRx(t, h, 100, 1536)
			var frames [][]byte
			for i := range 40 {
				frames = append(frames, frame(i, 100, 0, 0))
			}
			be.Inject(frames...) // all at once: one batch
			receive(t, h, 40, true)
			if n := h.IRQ.Count(RxQueue); n != 1 {
				t.Fatalf("%d rx interrupts for one batch", n)
			}
			// Driver suppresses: no interrupt for the next batch.
			if event {
				rxd.SetUsedEvent(rxd.UsedIdx() + 30) // "interrupt me after 31 more"
			} else {
				rxd.DisableInterrupts()
			}
			be.Inject(frames[:10]...)
			receive(t, h, 10, true)
			settle()
			if n := h.IRQ.Count(RxQueue); n != 1 {
				t.Fatalf("interrupt despite suppression (%d)", n)
			}
			if event {
				be.Inject(frames[:30]...) // crosses used_event
				receive(t, h, 30, true)
				waitUntil(t, "interrupt past used_event", func() bool { return h.IRQ.Count(RxQueue) == 2 })
			}

			// TX: 30 chains, one kick, one batch.
			for i := range 30 {
				sendTx(t, h, frames[i], nil, false)
			}
			h.Kick(TxQueue)
			waitUntil(t, "tx", func() bool { return len(be.Sent()) == 30 })
			waitUntil(t, "tx interrupt", func() bool { return h.IRQ.Count(TxQueue) >= 1 })
			settle()
			if n := h.IRQ.Count(TxQueue); n != 1 {
				t.Fatalf("%d tx interrupts for one batch", n)
			}
			// The device counts an interrupt after sending it.
			if s := finalStats(h, d); s.RxInterrupts != h.IRQ.Count(RxQueue) || s.TxInterrupts != 1 {
				t.Fatalf("interrupt stats %+v", s)
			}
		})
	}
}
