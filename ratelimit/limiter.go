package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock returns monotonic time since a fixed, arbitrary origin. Tests
// inject a fake one; nil means the process's monotonic clock.
type Clock func() time.Duration

var epoch = time.Now()

// monotonic reads the monotonic clock (time.Since does not allocate).
func monotonic() time.Duration { return time.Since(epoch) }

// Limiter is a rate limiter: a bandwidth bucket and an ops bucket (see
// Config). Every method is safe for concurrent use, and a nil *Limiter is
// valid and limits nothing, so a device can hold an optional limiter
// without checks.
type Limiter struct {
	clock Clock

	mu  sync.Mutex
	cfg Config
	bw  TokenBucket
	ops TokenBucket

	throttled atomic.Uint64
}

// New returns a limiter configured by cfg, with both buckets full. clock
// nil means the real monotonic clock. Errors are *FieldError naming the
// field ("ops.refill_time").
func New(cfg Config, clock Clock) (*Limiter, error) {
	if clock == nil {
		clock = monotonic
	}
	l := &Limiter{clock: clock}
	if err := l.Update(cfg); err != nil {
		return nil, err
	}
	return l, nil
}

// Update replaces the configuration, as Firecracker's PATCH does: both
// buckets start over, full, with their one-time bursts. On error nothing
// changes. The throttled count is kept.
func (l *Limiter) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	now := l.clock()
	bw, _ := NewTokenBucket(cfg.Bandwidth, now)
	ops, _ := NewTokenBucket(cfg.Ops, now)
	l.mu.Lock()
	l.cfg, l.bw, l.ops = cfg, bw, ops
	l.mu.Unlock()
	return nil
}

// Config returns the configuration in force.
func (l *Limiter) Config() Config {
	if l == nil {
		return Config{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// Consume asks for one operation moving bytes bytes (0 for operations
// that move no data). If both buckets can grant it, it takes the tokens
// from both and reports ok. Otherwise it takes nothing, counts a
// throttled event, and reports how long from now until both buckets
// could grant it; the caller waits that long (one timer) and asks again.
// It never allocates and never blocks beyond the limiter's mutex.
func (l *Limiter) Consume(bytes uint64) (ok bool, wait time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	now := l.clock()
	l.bw.Refill(now)
	l.ops.Refill(now)
	wait = max(l.bw.wait(bytes), l.ops.wait(1))
	if wait == 0 {
		l.bw.take(bytes)
		l.ops.take(1)
	}
	l.mu.Unlock()
	if wait > 0 {
		l.throttled.Add(1)
		return false, wait
	}
	return true, 0
}

// Throttled counts the Consume calls that were refused (throttled
// events, Firecracker's rate_limiter_throttled_events).
func (l *Limiter) Throttled() uint64 {
	if l == nil {
		return 0
	}
	return l.throttled.Load()
}

// Budgets returns the bandwidth and ops budgets (regular tokens, without
// the one-time bursts) refilled up to now, for metrics and tests.
func (l *Limiter) Budgets() (bandwidth, ops int64) {
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	l.bw.Refill(now)
	l.ops.Refill(now)
	return l.bw.budget, l.ops.budget
}

// Ready reports how long from now until both buckets hold at least one
// token (0: now). It is the check before I/O whose size is known only
// afterwards (a frame read from a TAP straight into guest buffers), which
// then pays with Charge. A positive answer counts a throttled event.
func (l *Limiter) Ready() time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	now := l.clock()
	l.bw.Refill(now)
	l.ops.Refill(now)
	wait := max(l.bw.wait(1), l.ops.wait(1))
	l.mu.Unlock()
	if wait > 0 {
		l.throttled.Add(1)
	}
	return wait
}

// Charge takes one operation and bytes tokens whether or not the buckets
// hold them: the I/O has already happened. A bucket may go into debt;
// Ready and Consume hold later requests until it is repaid, so over time
// the rate is still the configured one (it may run ahead by one request).
func (l *Limiter) Charge(bytes uint64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	now := l.clock()
	l.bw.Refill(now)
	l.ops.Refill(now)
	l.bw.charge(bytes)
	l.ops.charge(1)
	l.mu.Unlock()
}
