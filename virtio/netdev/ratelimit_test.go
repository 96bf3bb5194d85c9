package netdev

import (
	"bytes"
	"testing"
	"time"

	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio/virtiotest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// limiter returns a real-time limiter of size bytes per refill.
func limiter(tb testing.TB, size uint64, refill time.Duration) *ratelimit.Limiter {
	tb.Helper()
	l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.BucketConfig{
		Size: size, RefillTime: uint64(refill / time.Millisecond)}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// TestTxRateLimit: a transmit limiter of 1000 frame bytes per 40 ms holds
// five 1000-byte frames back for at least 4 refills, delivers all of
// them in order (no drops), and counts the pauses.
func TestTxRateLimit(t *testing.T) {
	d, be := newDevice(t, Options{TxLimiter: limiter(t, 1000, 40*time.Millisecond)})
	h := activate(t, d, 0, virtiotest.Options{})
	var frames [][]byte
	for i := range 5 {
		f := frame(i, HdrLen+1000, 0, vnethdr.GSONone)
		frames = append(frames, f)
		sendTx(t, h, f, nil, false)
	}
	start := time.Now()
	h.Kick(TxQueue)
	waitUntil(t, "5 frames sent", func() bool { return len(be.Sent()) == 5 })
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("5 frames of 1000 bytes at 1000 bytes/40ms took %v, want >= 160ms", el)
	}
	for i, g := range be.Sent() {
		if !bytes.Equal(g, frames[i]) {
			t.Fatalf("frame %d differs or out of order", i)
		}
	}
	waitUntil(t, "tx counters", func() bool { return stats(d).TxPackets == 5 }) // published after the writes
	if s := stats(d); s.TxThrottled < 4 || s.TxPackets != 5 || s.TxErrors != 0 {
		t.Errorf("stats %+v: want 4+ throttled pauses, 5 packets", s)
	}
}

// TestRxRateLimit: a receive limiter paces delivery the same way, after
// the fact: the first frame goes at once, later ones wait for the debt to
// be repaid; nothing is dropped.
func TestRxRateLimit(t *testing.T) {
	d, be := newDevice(t, Options{RxLimiter: limiter(t, 1000, 40*time.Millisecond)})
	h := activate(t, d, 0, virtiotest.Options{})
	for i := range 5 {
		be.Inject(frame(i, HdrLen+1000, 0, vnethdr.GSONone))
	}
	start := time.Now()
	postRx(t, h, 8, 1526)
	got := receive(t, h, 5, false)
	if el := time.Since(start); el < 110*time.Millisecond {
		t.Errorf("5 frames of 1000 bytes at 1000 bytes/40ms arrived in %v, want >= 120ms (3 repayments)", el)
	}
	for i, p := range got {
		if want := frame(i, HdrLen+1000, 0, vnethdr.GSONone); !bytes.Equal(p.data, withNumBuffers(want, 1)) {
			t.Fatalf("frame %d differs or out of order", i)
		}
	}
	waitUntil(t, "rx counters", func() bool { return stats(d).RxPackets == 5 }) // published after the used ring
	if s := stats(d); s.RxThrottled < 3 || s.RxPackets != 5 {
		t.Errorf("stats %+v: want 3+ throttled pauses, 5 packets", s)
	}
}

// TestResetWhileThrottled: Reset does not wait for a limiter's timer.
func TestResetWhileThrottled(t *testing.T) {
	d, be := newDevice(t, Options{TxLimiter: limiter(t, 100, time.Hour)})
	h := activate(t, d, 0, virtiotest.Options{})
	for i := range 2 {
		sendTx(t, h, frame(i, HdrLen+100, 0, vnethdr.GSONone), nil, false)
	}
	h.Kick(TxQueue)
	waitUntil(t, "throttled", func() bool { return stats(d).TxThrottled > 0 })
	start := time.Now()
	d.Reset()
	if el := time.Since(start); el > time.Second {
		t.Errorf("Reset took %v while throttled", el)
	}
	if n := len(be.Sent()); n != 1 {
		t.Errorf("%d frames sent, want 1 (the second waits for tokens)", n)
	}
}
