// Package ratelimit implements Firecracker's I/O rate limiters: token
// buckets for bandwidth (bytes) and operations, with the same
// configuration fields and meaning as Firecracker's `rate_limiter`
// objects (`bandwidth` and `ops`, each {size, one_time_burst,
// refill_time}).
//
// # Semantics
//
// A TokenBucket holds up to Size tokens and starts full. It refills
// continuously at Size tokens per RefillTime milliseconds (exact integer
// arithmetic, no drift). OneTimeBurst is an extra initial credit that is
// spent before the regular budget and never refills. A bucket with Size 0
// is unlimited.
//
// A request for n tokens goes when the bucket holds n tokens. A request
// bigger than Size can never find that many tokens; as in Firecracker it
// is let through rather than starved, but only once the bucket is full
// (or the one-time burst covers it): the bucket then goes into debt (a
// negative budget) and later requests wait until the debt is refilled, so
// the long-run rate still equals Size per RefillTime.
//
// A Limiter combines a bandwidth and an ops bucket: Consume(bytes) takes
// one operation and bytes tokens, from both buckets or from neither. When
// it refuses, it says how long until both buckets could grant the
// request, so a device arms one timer instead of polling, and it counts
// the refusal as a throttled event for metrics.
//
// # Differences from Firecracker
//
// Firecracker also treats refill_time 0 as "unlimited"; Flint's
// Validate rejects a size without a refill_time, because such a bucket
// is almost certainly a mistake. Firecracker lets an oversized request
// through at any budget level; Flint waits for a full bucket first.
//
// # Allocation and concurrency
//
// Consume never allocates and never sleeps. A Limiter is safe for
// concurrent use (a device queue goroutine consumes, the API thread
// updates, the metrics writer reads counters); a bare TokenBucket is not.
// Time comes from a Clock, injectable for tests.
//
// # Imports
//
// ratelimit imports only the standard library: nothing from this module,
// so network devices, block devices and the VMM can all use it.
package ratelimit
