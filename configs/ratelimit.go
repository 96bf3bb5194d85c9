package configs

import "encoding/json"

// Bucket limits. They equal the ratelimit package's MaxSize and
// MaxRefillTime (configs imports nothing, so cmd/flint's tests check that
// they agree), which keep the refill arithmetic inside 64 bits.
const (
	MaxBucketSize = 1 << 62
	MaxRefillTime = 1 << 32 // milliseconds, about 49 days
)

// TokenBucket is one of a rate limiter's buckets, with Firecracker's
// meaning: the bucket holds at most Size tokens (bytes or operations) and
// refills completely in RefillTime milliseconds; OneTimeBurst extra tokens
// are available once, before the refill starts. A bucket with Size 0
// limits nothing; with a Size, RefillTime must be at least 1 ms.
type TokenBucket struct {
	Size         uint64 `json:"size"`
	OneTimeBurst uint64 `json:"one_time_burst,omitempty"`
	RefillTime   uint64 `json:"refill_time"` // milliseconds
}

// Limits reports whether b limits anything.
func (b *TokenBucket) Limits() bool { return b != nil && b.Size > 0 }

func (b *TokenBucket) validate(path string) error {
	switch {
	case b == nil || b.Size == 0:
		return nil
	case b.Size > MaxBucketSize:
		return fieldErrorf(joinPath(path, "size"), "%d is out of range [0, %d]", b.Size, uint64(MaxBucketSize))
	case b.OneTimeBurst > MaxBucketSize:
		return fieldErrorf(joinPath(path, "one_time_burst"), "%d is out of range [0, %d]", b.OneTimeBurst, uint64(MaxBucketSize))
	case b.RefillTime == 0 || b.RefillTime > MaxRefillTime:
		return fieldErrorf(joinPath(path, "refill_time"), "%d ms is out of range [1, %d] (a bucket with a size needs a refill time)", b.RefillTime, uint64(MaxRefillTime))
	}
	return nil
}

// RateLimiter limits a device's I/O with a bandwidth bucket (bytes) and an
// ops bucket (packets or requests), each optional.
type RateLimiter struct {
	Bandwidth *TokenBucket `json:"bandwidth,omitempty"`
	Ops       *TokenBucket `json:"ops,omitempty"`
}

// Limits reports whether r limits anything.
func (r *RateLimiter) Limits() bool { return r != nil && (r.Bandwidth.Limits() || r.Ops.Limits()) }

func (r *RateLimiter) validate(path string) error {
	if r == nil {
		return nil
	}
	if err := r.Bandwidth.validate(joinPath(path, "bandwidth")); err != nil {
		return err
	}
	return r.Ops.validate(joinPath(path, "ops"))
}

// decodeRateLimiter decodes {"bandwidth": {...}, "ops": {...}} at path.
func decodeRateLimiter(path string, raw json.RawMessage) (*RateLimiter, error) {
	o, err := openObject(path, raw, []string{"bandwidth", "ops"})
	if err != nil {
		return nil, err
	}
	r := &RateLimiter{}
	if v := o.raw("bandwidth"); v != nil {
		r.Bandwidth, err = decodeTokenBucket(joinPath(path, "bandwidth"), v)
		o.fail(err)
	}
	if v := o.raw("ops"); v != nil && o.err == nil {
		r.Ops, err = decodeTokenBucket(joinPath(path, "ops"), v)
		o.fail(err)
	}
	return r, o.err
}

func decodeTokenBucket(path string, raw json.RawMessage) (*TokenBucket, error) {
	o, err := openObject(path, raw, []string{"size", "one_time_burst", "refill_time"})
	if err != nil {
		return nil, err
	}
	b := &TokenBucket{}
	o.require("size", "refill_time")
	o.uint64Field("size", &b.Size)
	o.uint64Field("one_time_burst", &b.OneTimeBurst)
	o.uint64Field("refill_time", &b.RefillTime)
	if o.err != nil {
		return b, o.err
	}
	return b, b.validate(path)
}

// optRateLimiter decodes key of o as a rate limiter when present.
func (o *object) optRateLimiter(key string, dst **RateLimiter) {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return
	}
	r, err := decodeRateLimiter(joinPath(o.path, key), v)
	if err != nil {
		o.fail(err)
		return
	}
	*dst = r
}
