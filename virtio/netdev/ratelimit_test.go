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
	throttledRounds(t, "TxThrottled", 4, func(refill time.Duration) uint64 {
		d, be := newDevice(t, Options{TxLimiter: limiter(t, 1000, refill)})
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
		if el := time.Since(start); el < 4*refill-10*time.Millisecond {
			t.Errorf("5 frames of 1000 bytes at 1000 bytes/%v took %v, want >= %v", refill, el, 4*refill)
		}
		for i, g := range be.Sent() {
			if !bytes.Equal(g, frames[i]) {
				t.Fatalf("frame %d differs or out of order", i)
			}
		}
		waitUntil(t, "tx counters", func() bool { return stats(d).TxPackets == 5 }) // published after the writes
		if s := stats(d); s.TxPackets != 5 || s.TxErrors != 0 {
			t.Errorf("stats %+v: want 5 packets", s)
		}
		return stats(d).TxThrottled
	})
}

// throttledRounds runs round with a refill time of 40 ms and checks that
// the device counted at least want pauses (the stat named). An engine
// delayed a whole refill between two frames found the tokens there and
// rightly did not pause, so a round that counted fewer runs again with
// twice the refill time, up to 160 ms; fewer pauses in each fails.
func throttledRounds(t *testing.T, stat string, want uint64, round func(refill time.Duration) uint64) {
	t.Helper()
	var got []uint64
	for refill := 40 * time.Millisecond; refill <= 160*time.Millisecond; refill *= 2 {
		n := round(refill)
		if t.Failed() || n >= want {
			return
		}
		got = append(got, n)
		t.Logf("%v refills: %s %d, want %d or more; again with twice the refill time", refill, stat, n, want)
	}
	t.Errorf("%s %v in the rounds of 40, 80 and 160 ms refills, want %d or more", stat, got, want)
}

// TestRxRateLimit: a receive limiter paces delivery the same way, after
// the fact: the first frame goes at once, later ones wait for the debt to
// be repaid; nothing is dropped.
func TestRxRateLimit(t *testing.T) {
	throttledRounds(t, "RxThrottled", 3, func(refill time.Duration) uint64 {
		d, be := newDevice(t, Options{RxLimiter: limiter(t, 1000, refill)})
		h := activate(t, d, 0, virtiotest.Options{})
		for i := range 5 {
			be.Inject(frame(i, HdrLen+1000, 0, vnethdr.GSONone))
		}
		start := time.Now()
		postRx(t, h, 8, 1526)
		got := receive(t, h, 5, false)
		if el := time.Since(start); el < 3*refill-10*time.Millisecond {
			t.Errorf("5 frames of 1000 bytes at 1000 bytes/%v arrived in %v, want >= %v (3 repayments)", refill, el, 3*refill)
		}
		for i, p := range got {
			if want := frame(i, HdrLen+1000, 0, vnethdr.GSONone); !bytes.Equal(p.data, withNumBuffers(want, 1)) {
				t.Fatalf("frame %d differs or out of order", i)
			}
		}
		waitUntil(t, "rx counters", func() bool { return stats(d).RxPackets == 5 }) // published after the used ring
		if s := stats(d); s.RxPackets != 5 {
			t.Errorf("stats %+v: want 5 packets", s)
		}
		return stats(d).RxThrottled
	})
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
	// Waiting for the hour's timer fails; a Reset slowed by a loaded
	// machine (-race) does not.
	reset := make(chan struct{})
	go func() { d.Reset(); close(reset) }()
	select {
	case <-reset:
	case <-time.After(10 * time.Second):
		t.Fatal("Reset waited over 10 s while throttled")
	}
	if n := len(be.Sent()); n != 1 {
		t.Errorf("%d frames sent, want 1 (the second waits for tokens)", n)
	}
}

// TestThrottleSeesUpdate: a limiter put deep in debt (a 10000-byte frame
// against 1000 bytes a second owes 9 s) and then lifted by Update (the
// API's PATCH) lets the next frame through within a fraction of a
// second, in both directions, instead of after the old wait.
func TestThrottleSeesUpdate(t *testing.T) {
	for _, dir := range []string{"tx", "rx"} {
		t.Run(dir, func(t *testing.T) {
			l := limiter(t, 1000, time.Second)
			opts := Options{TxLimiter: l}
			if dir == "rx" {
				opts = Options{RxLimiter: l}
			}
			d, be := newDevice(t, opts)
			h := activate(t, d, 0, virtiotest.Options{})
			big, small := frame(0, HdrLen+10000, 0, vnethdr.GSONone), frame(1, HdrLen+100, 0, vnethdr.GSONone)
			done := func() bool { return len(be.Sent()) == 2 }
			if dir == "tx" {
				sendTx(t, h, big, nil, false)
				sendTx(t, h, small, nil, false)
				h.Kick(TxQueue)
			} else {
				be.Inject(big)
				be.Inject(small)
				postRx(t, h, 4, 10100)
				done = func() bool { return stats(d).RxPackets == 2 }
			}
			waitUntil(t, "throttled", func() bool { s := stats(d); return s.TxThrottled+s.RxThrottled > 0 })
			if done() {
				t.Fatal("both frames passed: the limiter did not hold the second back")
			}
			if err := l.Update(ratelimit.Config{}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for !done() {
				if time.Since(start) > 3*time.Second {
					t.Fatalf("the second frame waited over 3 s after the limiter was lifted")
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}
