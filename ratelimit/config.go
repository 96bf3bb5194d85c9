package ratelimit

import "fmt"

// Limits on bucket parameters. They keep every intermediate value of the
// refill arithmetic inside 64 bits.
const (
	// MaxSize is the largest Size or OneTimeBurst (2^62 tokens).
	MaxSize = 1 << 62
	// MaxRefillTime is the largest RefillTime in milliseconds (2^32 ms,
	// about 49 days).
	MaxRefillTime = 1 << 32
)

// BucketConfig is one token bucket as Firecracker's API and config file
// describe it.
type BucketConfig struct {
	// Size is the bucket's capacity in tokens (bytes or operations). 0
	// means unlimited: the other fields are then ignored.
	Size uint64 `json:"size"`
	// OneTimeBurst is an extra initial credit of tokens, spent before
	// the regular budget, that never refills. Optional.
	OneTimeBurst uint64 `json:"one_time_burst,omitempty"`
	// RefillTime is how many milliseconds refilling Size tokens from
	// empty takes. Required (> 0) when Size > 0.
	RefillTime uint64 `json:"refill_time"`
}

// Unlimited reports whether the bucket limits nothing (Size 0).
func (c BucketConfig) Unlimited() bool { return c.Size == 0 }

// Validate checks the bucket. Errors are *FieldError naming the field
// (size, one_time_burst or refill_time).
func (c BucketConfig) Validate() error {
	if c.Size == 0 {
		return nil
	}
	switch {
	case c.Size > MaxSize:
		return &FieldError{Field: "size", Msg: fmt.Sprintf("%d is out of range [0, %d]", c.Size, uint64(MaxSize))}
	case c.OneTimeBurst > MaxSize:
		return &FieldError{Field: "one_time_burst", Msg: fmt.Sprintf("%d is out of range [0, %d]", c.OneTimeBurst, uint64(MaxSize))}
	case c.RefillTime == 0:
		return &FieldError{Field: "refill_time", Msg: "must be at least 1 ms when size is set"}
	case c.RefillTime > MaxRefillTime:
		return &FieldError{Field: "refill_time", Msg: fmt.Sprintf("%d ms is out of range [1, %d]", c.RefillTime, uint64(MaxRefillTime))}
	}
	return nil
}

// Config is a rate limiter: a bandwidth bucket (tokens are bytes) and an
// ops bucket (tokens are operations). The zero value limits nothing.
type Config struct {
	Bandwidth BucketConfig `json:"bandwidth"`
	Ops       BucketConfig `json:"ops"`
}

// Unlimited reports whether neither bucket limits anything.
func (c Config) Unlimited() bool { return c.Bandwidth.Unlimited() && c.Ops.Unlimited() }

// Validate checks both buckets. Errors are *FieldError whose Field is
// the path inside the rate limiter, e.g. "bandwidth.refill_time".
func (c Config) Validate() error {
	if err := c.Bandwidth.Validate(); err != nil {
		return err.(*FieldError).Under("bandwidth")
	}
	if err := c.Ops.Validate(); err != nil {
		return err.(*FieldError).Under("ops")
	}
	return nil
}

// FieldError is a configuration error in one field. Callers that embed a
// rate limiter in a larger config prefix Field with their own path (see
// Under).
type FieldError struct {
	// Field is the dotted path of the offending field, as in the JSON
	// config ("bandwidth.size").
	Field string
	// Msg says what is wrong and what is allowed.
	Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Under returns a copy of e with prefix prepended to its field path
// ("rate_limiter" + "ops.size" -> "rate_limiter.ops.size").
func (e *FieldError) Under(prefix string) *FieldError {
	return &FieldError{Field: prefix + "." + e.Field, Msg: e.Msg}
}
