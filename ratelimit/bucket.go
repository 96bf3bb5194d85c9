package ratelimit

import (
	"math"
	"math/bits"
	"time"
)

// maxWait is what Wait reports when the answer does not fit a Duration.
const maxWait = time.Duration(math.MaxInt64)

// TokenBucket is one bucket with Firecracker's semantics (see the package
// documentation). Time is passed in explicitly as a monotonic Duration
// since any fixed origin (a Clock's reading), so the bucket itself never
// reads a clock. The zero value is an unlimited bucket. A TokenBucket is
// not safe for concurrent use; Limiter adds the locking.
type TokenBucket struct {
	size     uint64 // 0: unlimited
	refillNs uint64 // nanoseconds to refill size tokens
	budget   int64  // tokens available; negative after an oversized request
	burst    uint64 // one-time burst left
	frac     uint64 // refill remainder in token*ns units, < refillNs
	last     time.Duration
}

// NewTokenBucket returns a full bucket configured by c (which must be
// valid, see BucketConfig.Validate), refilling from time now.
func NewTokenBucket(c BucketConfig, now time.Duration) (TokenBucket, error) {
	if err := c.Validate(); err != nil {
		return TokenBucket{}, err
	}
	if c.Size == 0 {
		return TokenBucket{}, nil
	}
	return TokenBucket{size: c.Size, refillNs: c.RefillTime * uint64(time.Millisecond),
		budget: int64(c.Size), burst: c.OneTimeBurst, last: now}, nil
}

// Unlimited reports whether the bucket limits nothing.
func (b *TokenBucket) Unlimited() bool { return b.size == 0 }

// Budget is the number of regular tokens available at the last refill
// (negative while an oversized request's debt is being paid back).
func (b *TokenBucket) Budget() int64 { return b.budget }

// OneTimeBurst is the one-time burst credit left.
func (b *TokenBucket) OneTimeBurst() uint64 { return b.burst }

// Consume refills the bucket up to now and takes n tokens if it can: it
// reports ok, or how long from now until it could (for an n larger than
// the size: until the bucket is full). It never allocates.
func (b *TokenBucket) Consume(n uint64, now time.Duration) (ok bool, wait time.Duration) {
	b.Refill(now)
	if w := b.wait(n); w > 0 {
		return false, w
	}
	b.take(n)
	return true, 0
}

// Refill adds the tokens earned since the last refill. A clock that goes
// backwards earns nothing.
func (b *TokenBucket) Refill(now time.Duration) {
	if b.size == 0 || now <= b.last {
		return
	}
	el := uint64(now - b.last)
	b.last = now
	if b.budget >= int64(b.size) {
		b.frac = 0
		return
	}
	// tokens = (el*size + frac) / refillNs, exactly, in 128 bits.
	hi, lo := bits.Mul64(el, b.size)
	lo, c := bits.Add64(lo, b.frac, 0)
	hi += c
	room := uint64(int64(b.size) - b.budget) // > 0, <= 2^63
	if hi >= b.refillNs {
		b.budget, b.frac = int64(b.size), 0 // quotient >= 2^64: full
		return
	}
	q, r := bits.Div64(hi, lo, b.refillNs)
	if q >= room {
		b.budget, b.frac = int64(b.size), 0
		return
	}
	b.budget += int64(q)
	b.frac = r
}

// split returns how many of n tokens come out of the regular budget once
// the one-time burst has paid what it can; it is capped at MaxSize so the
// budget never overflows (such a debt takes years to repay anyway).
func (b *TokenBucket) split(n uint64) (fromBurst, rest uint64) {
	fromBurst = min(n, b.burst)
	return fromBurst, min(n-fromBurst, MaxSize)
}

// wait returns 0 if n tokens can be taken now, else the time until they
// can (a positive Duration).
func (b *TokenBucket) wait(n uint64) time.Duration {
	if b.size == 0 {
		return 0
	}
	_, rest := b.split(n)
	if rest == 0 {
		return 0
	}
	target := min(rest, b.size) // an oversized request waits for a full bucket
	if b.budget >= int64(target) {
		return 0
	}
	need := uint64(int64(target) - b.budget)
	// ceil((need*refillNs - frac) / size), in 128 bits.
	hi, lo := bits.Mul64(need, b.refillNs)
	lo, borrow := bits.Sub64(lo, b.frac, 0)
	hi -= borrow
	lo, c := bits.Add64(lo, b.size-1, 0)
	hi += c
	if hi >= b.size {
		return maxWait
	}
	q, _ := bits.Div64(hi, lo, b.size)
	if q > math.MaxInt64 {
		return maxWait
	}
	return max(time.Duration(q), 1)
}

// take removes n tokens; wait(n) must have returned 0.
func (b *TokenBucket) take(n uint64) {
	if b.size == 0 {
		return
	}
	fromBurst, rest := b.split(n)
	b.burst -= fromBurst
	b.budget -= int64(rest)
}

// charge removes n tokens unconditionally; the debt it can leave is capped
// at MaxSize so the budget never overflows.
func (b *TokenBucket) charge(n uint64) {
	if b.size == 0 {
		return
	}
	fromBurst, rest := b.split(n)
	b.burst -= fromBurst
	b.budget = max(b.budget-int64(rest), -MaxSize)
}
