package console

import "github.com/flintvm/flint/virtio"

// Stats are the device's counters. They accumulate over the device's
// life (Reset keeps them) and are updated atomically, so they can be read
// at any time from any goroutine.
type Stats struct {
	// InBytes counts bytes delivered to the guest (receiveq).
	InBytes uint64
	// InChains counts receive chains filled (used length > 0).
	InChains uint64
	// ReadErrors counts reader errors other than EOF (input then ends).
	ReadErrors uint64
	// OutBytes counts bytes the writer accepted (transmitq).
	OutBytes uint64
	// OutChains counts transmit chains completed, written or not.
	OutChains uint64
	// WriteErrors counts failed Writes; each drops the rest of its chain.
	WriteErrors uint64
	// DroppedBytes counts transmit bytes dropped after a Write error.
	DroppedBytes uint64
	// BadChains counts chains with buffers of the wrong direction,
	// completed with used length 0.
	BadChains uint64
	// Malformed counts chains the queues rejected (completed with used
	// length 0 by the queue).
	Malformed uint64
	// Interrupts counts used-buffer notifications sent (both queues).
	Interrupts uint64
	// Broken counts queues the driver broke (the device then asked for
	// DEVICE_NEEDS_RESET).
	Broken uint64
}

type counter int

const (
	cInBytes counter = iota
	cInChains
	cReadErrors
	cOutBytes
	cOutChains
	cWriteErrors
	cDroppedBytes
	cBadChains
	cMalformed
	cInterrupts
	cBroken
	numCounters
)

// tally is the device's live counters.
type tally = virtio.Tally[Stats, counter]

// names is the one place that names each Stats field (TestCountersNamed
// checks it covers Stats).
var names = [numCounters]virtio.Named[Stats]{
	cInBytes:      virtio.Name("in_bytes", "in_bytes", func(s *Stats) *uint64 { return &s.InBytes }),
	cInChains:     virtio.Name("in_chains", "in_chains", func(s *Stats) *uint64 { return &s.InChains }),
	cReadErrors:   virtio.Name("read_errors", "read_errors", func(s *Stats) *uint64 { return &s.ReadErrors }),
	cOutBytes:     virtio.Name("out_bytes", "out_bytes", func(s *Stats) *uint64 { return &s.OutBytes }),
	cOutChains:    virtio.Name("out_chains", "out_chains", func(s *Stats) *uint64 { return &s.OutChains }),
	cWriteErrors:  virtio.Name("write_errors", "write_errors", func(s *Stats) *uint64 { return &s.WriteErrors }),
	cDroppedBytes: virtio.Name("dropped_bytes", "dropped_bytes", func(s *Stats) *uint64 { return &s.DroppedBytes }),
	cBadChains:    virtio.Name("bad_chains", "bad_chains", func(s *Stats) *uint64 { return &s.BadChains }),
	cMalformed:    virtio.Name("malformed", "malformed_chains", func(s *Stats) *uint64 { return &s.Malformed }),
	cInterrupts:   virtio.Name("interrupts", "interrupts", func(s *Stats) *uint64 { return &s.Interrupts }),
	cBroken:       virtio.Name("broken", "broken_queues", func(s *Stats) *uint64 { return &s.Broken }),
}

// Counters lists every field of s with its names, in a fixed order, for
// logs, dumps and metrics.
func (s *Stats) Counters() []virtio.Counter { return virtio.Counters(s, names[:]) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.Stats() }
