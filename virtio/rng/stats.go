package rng

import "github.com/flintvm/flint/virtio"

// Stats are the device's counters (atomic, kept across resets).
type Stats struct {
	// Requests and Bytes count requests served and random bytes given.
	Requests, Bytes uint64
	// Throttled counts pauses for the rate limiter.
	Throttled uint64
	// ReadErrors counts failed reads of the random source.
	ReadErrors uint64
	// BadChains counts chains with device-readable buffers.
	BadChains uint64
	// Malformed counts chains the queue rejected.
	Malformed uint64
	// Interrupts counts used-buffer notifications sent.
	Interrupts uint64
	// Broken counts queues the driver broke.
	Broken uint64
}

type counter int

const (
	cRequests counter = iota
	cBytes
	cThrottled
	cReadErrors
	cBadChains
	cMalformed
	cInterrupts
	cBroken
	numCounters
)

var names = [numCounters]virtio.Named[Stats]{
	cRequests:   virtio.Key("requests", func(s *Stats) *uint64 { return &s.Requests }),
	cBytes:      virtio.Key("bytes", func(s *Stats) *uint64 { return &s.Bytes }),
	cThrottled:  virtio.Key("throttled", func(s *Stats) *uint64 { return &s.Throttled }),
	cReadErrors: virtio.Key("read_errors", func(s *Stats) *uint64 { return &s.ReadErrors }),
	cBadChains:  virtio.Key("bad_chains", func(s *Stats) *uint64 { return &s.BadChains }),
	cMalformed:  virtio.Key("malformed_chains", func(s *Stats) *uint64 { return &s.Malformed }),
	cInterrupts: virtio.Key("interrupts", func(s *Stats) *uint64 { return &s.Interrupts }),
	cBroken:     virtio.Key("broken_queues", func(s *Stats) *uint64 { return &s.Broken }),
}

// Counters lists every field of s with its names, in a fixed order.
func (s *Stats) Counters() []virtio.Counter { return virtio.Counters(s, names[:]) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.Stats() }
