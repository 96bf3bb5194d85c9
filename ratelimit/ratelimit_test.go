package ratelimit

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock: tests move it, nothing sleeps.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *fakeClock) read() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
}

func newLimiter(tb testing.TB, cfg Config) (*Limiter, *fakeClock) {
	tb.Helper()
	c := &fakeClock{now: time.Hour}
	l, err := New(cfg, c.read)
	if err != nil {
		tb.Fatal(err)
	}
	return l, c
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string // "" means valid
	}{
		{"zero is unlimited", Config{}, ""},
		{"size 0 ignores the rest", Config{Ops: BucketConfig{OneTimeBurst: 5}}, ""},
		{"valid", Config{Bandwidth: BucketConfig{Size: 1 << 20, RefillTime: 100}, Ops: BucketConfig{Size: 10, OneTimeBurst: 5, RefillTime: 1}}, ""},
		{"max", Config{Bandwidth: BucketConfig{Size: MaxSize, OneTimeBurst: MaxSize, RefillTime: MaxRefillTime}}, ""},
		{"no refill time", Config{Bandwidth: BucketConfig{Size: 100}}, "bandwidth.refill_time"},
		{"ops no refill time", Config{Ops: BucketConfig{Size: 100}}, "ops.refill_time"},
		{"size too big", Config{Ops: BucketConfig{Size: MaxSize + 1, RefillTime: 1}}, "ops.size"},
		{"burst too big", Config{Bandwidth: BucketConfig{Size: 1, OneTimeBurst: math.MaxUint64, RefillTime: 1}}, "bandwidth.one_time_burst"},
		{"refill too long", Config{Bandwidth: BucketConfig{Size: 1, RefillTime: MaxRefillTime + 1}}, "bandwidth.refill_time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if _, err := New(tc.cfg, nil); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
			if _, err := New(tc.cfg, nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
			if got := fe.Under("rate_limiter").Field; got != "rate_limiter."+tc.field {
				t.Fatalf("Under: %s", got)
			}
		})
	}
}

// step is one action of a bucket scenario.
type step struct {
	advance time.Duration
	n       uint64
	ok      bool
	wait    time.Duration // checked when !ok
	budget  int64
	burst   uint64
}

func TestTokenBucket(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		cfg   BucketConfig
		steps []step
	}{
		{"unlimited", BucketConfig{}, []step{{n: math.MaxUint64, ok: true}, {n: 1, ok: true}}},
		{"drain and refill", BucketConfig{Size: 1000, RefillTime: 1000}, []step{
			{n: 600, ok: true, budget: 400},
			{n: 600, ok: false, wait: 200 * ms, budget: 400},
			{advance: 199 * ms, n: 600, ok: false, wait: ms, budget: 599},
			{advance: ms, n: 600, ok: true, budget: 0},
			{advance: 10 * time.Second, n: 0, ok: true, budget: 1000}, // capped at size
		}},
		{"fractional refill keeps its remainder", BucketConfig{Size: 3, RefillTime: 1}, []step{
			{n: 3, ok: true, budget: 0},
			{advance: 333333, n: 1, ok: false, wait: 1, budget: 0}, // 0.999999 tokens
			{advance: 1, n: 1, ok: true, budget: 0},
			{advance: 333333, n: 1, ok: true, budget: 0}, // remainder carried: 1.0 again
		}},
		{"one-time burst first, never refilled", BucketConfig{Size: 100, OneTimeBurst: 50, RefillTime: 100}, []step{
			{n: 30, ok: true, budget: 100, burst: 20},
			{n: 50, ok: true, budget: 70, burst: 0},
			{advance: time.Second, n: 0, ok: true, budget: 100, burst: 0},
		}},
		{"burst pays part of an oversized request", BucketConfig{Size: 10, OneTimeBurst: 5, RefillTime: 10}, []step{
			{n: 16, ok: true, budget: -1, burst: 0}, // 5 from the burst, 11 (> size) from a full budget
			{n: 1, ok: false, wait: 2 * ms, budget: -1},
		}},
		{"oversized goes when full, then debt", BucketConfig{Size: 100, RefillTime: 100}, []step{
			{n: 10, ok: true, budget: 90},
			{n: 250, ok: false, wait: 10 * ms, budget: 90},
			{advance: 10 * ms, n: 250, ok: true, budget: -150},
			{n: 1, ok: false, wait: 151 * ms, budget: -150},
			{advance: 151 * ms, n: 1, ok: true, budget: 0},
		}},
		{"clock going backwards earns nothing", BucketConfig{Size: 10, RefillTime: 10}, []step{
			{n: 10, ok: true, budget: 0},
			{advance: -time.Second, n: 1, ok: false, wait: ms, budget: 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Hour
			b, err := NewTokenBucket(tc.cfg, now)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				now += s.advance
				ok, wait := b.Consume(s.n, now)
				if ok != s.ok || (!ok && wait != s.wait) {
					t.Fatalf("step %d: Consume(%d) = %v, %v; want %v, %v", i, s.n, ok, wait, s.ok, s.wait)
				}
				if ok && wait != 0 {
					t.Fatalf("step %d: ok with wait %v", i, wait)
				}
				if !b.Unlimited() && (b.Budget() != s.budget || b.OneTimeBurst() != s.burst) {
					t.Fatalf("step %d: budget %d burst %d, want %d %d", i, b.Budget(), b.OneTimeBurst(), s.budget, s.burst)
				}
			}
		})
	}
}

// TestWaitIsExact: after waiting exactly what Consume said, the same
// request goes; one nanosecond earlier it does not.
func TestWaitIsExact(t *testing.T) {
	for _, cfg := range []BucketConfig{
		{Size: 1000, RefillTime: 7},
		{Size: 3, RefillTime: 1000},
		{Size: 1 << 40, RefillTime: 3},
		{Size: 7, RefillTime: MaxRefillTime},
	} {
		for _, n := range []uint64{1, cfg.Size / 2, cfg.Size, cfg.Size * 3} {
			now := time.Duration(0)
			b, _ := NewTokenBucket(cfg, now)
			b.Consume(cfg.Size-1, now) // leave 1 token
			ok, wait := b.Consume(n, now)
			if ok {
				continue // n <= 1
			}
			early := b
			if ok, _ := early.Consume(n, now+wait-1); ok {
				t.Errorf("%+v n=%d: went %v early", cfg, n, time.Duration(1))
			}
			if ok, w := b.Consume(n, now+wait); !ok {
				t.Errorf("%+v n=%d: refused after the wait %v (new wait %v)", cfg, n, wait, w)
			}
		}
	}
}

// TestNoDrift: refilling in many tiny steps earns exactly what one big
// step does.
func TestNoDrift(t *testing.T) {
	cfg := BucketConfig{Size: 1_000_003, RefillTime: 997}
	a, _ := NewTokenBucket(cfg, 0)
	b, _ := NewTokenBucket(cfg, 0)
	a.Consume(cfg.Size, 0)
	b.Consume(cfg.Size, 0)
	var now time.Duration
	for range 100000 {
		now += 7777
		a.Refill(now)
	}
	b.Refill(now)
	if a.Budget() != b.Budget() || a.frac != b.frac {
		t.Fatalf("stepwise %d/%d, at once %d/%d", a.Budget(), a.frac, b.Budget(), b.frac)
	}
	want := int64(uint64(now) * cfg.Size / (cfg.RefillTime * 1e6))
	if b.Budget() != want {
		t.Fatalf("budget %d, want %d", b.Budget(), want)
	}
}

func TestLimiterBothOrNeither(t *testing.T) {
	l, clk := newLimiter(t, Config{
		Bandwidth: BucketConfig{Size: 1000, RefillTime: 1000},
		Ops:       BucketConfig{Size: 2, RefillTime: 1000},
	})
	if ok, _ := l.Consume(900); !ok {
		t.Fatal("first op refused")
	}
	// Bandwidth refuses: the op must not be taken from the ops bucket.
	ok, wait := l.Consume(500)
	if ok || wait != 400*time.Millisecond {
		t.Fatalf("Consume(500) = %v, %v; want refused for 400ms", ok, wait)
	}
	if bw, ops := l.Budgets(); bw != 100 || ops != 1 {
		t.Fatalf("budgets %d %d after a refusal, want 100 1", bw, ops)
	}
	if ok, _ := l.Consume(100); !ok {
		t.Fatal("second op refused")
	}
	// Ops refuses now (0 left), bandwidth would grant 0 bytes.
	ok, wait = l.Consume(0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("Consume(0) = %v, %v; want refused for 500ms", ok, wait)
	}
	if got := l.Throttled(); got != 2 {
		t.Fatalf("throttled %d, want 2", got)
	}
	clk.advance(500 * time.Millisecond)
	if ok, _ := l.Consume(0); !ok {
		t.Fatal("refused after the wait")
	}
}

func TestLimiterNilAndUnlimited(t *testing.T) {
	var l *Limiter
	if ok, w := l.Consume(1 << 40); !ok || w != 0 || l.Throttled() != 0 || !l.Config().Unlimited() {
		t.Fatal("nil limiter limits")
	}
	u, _ := newLimiter(t, Config{})
	for range 1000 {
		if ok, _ := u.Consume(1 << 40); !ok {
			t.Fatal("unlimited limiter refused")
		}
	}
}

func TestLimiterUpdate(t *testing.T) {
	l, _ := newLimiter(t, Config{Ops: BucketConfig{Size: 1, RefillTime: 1000}})
	l.Consume(0)
	if ok, _ := l.Consume(0); ok {
		t.Fatal("second op went")
	}
	bad := Config{Ops: BucketConfig{Size: 5}}
	if err := l.Update(bad); err == nil {
		t.Fatal("Update accepted an invalid config")
	}
	if l.Config().Ops.Size != 1 {
		t.Fatal("failed Update changed the config")
	}
	if err := l.Update(Config{Ops: BucketConfig{Size: 5, RefillTime: 1000}}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if ok, _ := l.Consume(0); !ok {
			t.Fatalf("op %d after Update refused (buckets restart full)", i)
		}
	}
	if l.Throttled() != 1 {
		t.Fatalf("Update lost the throttled count: %d", l.Throttled())
	}
}

// TestLimiterConcurrent hammers one limiter from several goroutines (run
// with -race): the total granted never exceeds what the buckets allow.
func TestLimiterConcurrent(t *testing.T) {
	l, clk := newLimiter(t, Config{Ops: BucketConfig{Size: 100, RefillTime: 10}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if ok, _ := l.Consume(0); ok {
					mu.Lock()
					granted++
					mu.Unlock()
				}
				l.Budgets()
				l.Throttled()
			}
		}()
	}
	wg.Wait()
	if granted != 100 {
		t.Fatalf("granted %d ops with a frozen clock, want 100", granted)
	}
	clk.advance(10 * time.Millisecond)
	if ok, _ := l.Consume(0); !ok {
		t.Fatal("refused after refill")
	}
}

func TestRealClock(t *testing.T) {
	l, err := New(Config{Bandwidth: BucketConfig{Size: 10, RefillTime: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Consume(10); !ok {
		t.Fatal("refused on a full bucket")
	}
	if ok, w := l.Consume(10); ok || w <= 0 || w > time.Millisecond {
		// It may have refilled a little since; never more than 1 ms wait.
		t.Fatalf("Consume on an empty bucket: %v %v", ok, w)
	}
}
