package ratelimit

import (
	"testing"
	"time"
)

// TestChargeAndReady: charging after the fact can go into debt; Ready
// then holds the next request exactly until the debt is repaid, so the
// long-run rate is the configured one.
func TestChargeAndReady(t *testing.T) {
	// 1000 bytes per 100 ms = 10 bytes/ms.
	l, c := newLimiter(t, Config{Bandwidth: BucketConfig{Size: 1000, RefillTime: 100}})
	if w := l.Ready(); w != 0 {
		t.Fatalf("full bucket: Ready %v, want 0", w)
	}
	l.Charge(1500) // a frame larger than the bucket: 500 bytes of debt
	if bw, _ := l.Budgets(); bw != -500 {
		t.Fatalf("budget after charging 1500 of 1000: %d, want -500", bw)
	}
	// Repaying 501 bytes (to a budget of 1) takes 50.1 ms.
	if w := l.Ready(); w != 50100*time.Microsecond {
		t.Fatalf("in debt: Ready %v, want 50.1ms", w)
	}
	if l.Throttled() != 1 {
		t.Errorf("throttled %d, want 1", l.Throttled())
	}
	c.advance(50 * time.Millisecond)
	if w := l.Ready(); w <= 0 {
		t.Fatalf("budget still 0 after 50ms: Ready %v, want > 0", w)
	}
	c.advance(100 * time.Microsecond)
	if w := l.Ready(); w != 0 {
		t.Fatalf("debt repaid: Ready %v, want 0", w)
	}
	// Long run: charging 1000-byte frames whenever Ready says 0 moves
	// 10 bytes/ms.
	var moved uint64
	start := c.read()
	for c.read()-start < 10*time.Second {
		if w := l.Ready(); w > 0 {
			c.advance(w)
			continue
		}
		l.Charge(1000)
		moved += 1000
	}
	if rate := float64(moved) / 10000; rate < 9.9 || rate > 10.2 {
		t.Errorf("long-run rate %.2f bytes/ms, want 10", rate)
	}
	// The ops bucket is charged one per call; a nil limiter does nothing.
	o, _ := newLimiter(t, Config{Ops: BucketConfig{Size: 2, RefillTime: 1000}})
	o.Charge(0)
	o.Charge(0)
	if w := o.Ready(); w <= 0 {
		t.Errorf("ops bucket empty: Ready %v, want > 0", w)
	}
	var none *Limiter
	none.Charge(1 << 40)
	if w := none.Ready(); w != 0 {
		t.Errorf("nil limiter: Ready %v", w)
	}
}

// TestChargeDebtIsBounded: endless charging cannot overflow the budget.
func TestChargeDebtIsBounded(t *testing.T) {
	l, _ := newLimiter(t, Config{Bandwidth: BucketConfig{Size: 1, RefillTime: 1}})
	for range 8 {
		l.Charge(MaxSize)
	}
	if bw, _ := l.Budgets(); bw != -MaxSize {
		t.Errorf("budget %d, want %d", bw, int64(-MaxSize))
	}
}
