package fs

import "github.com/flintvm/flint/virtio"

// Stats are the device's counters. They accumulate over the device's life
// (Reset keeps them) and are updated atomically, so they can be read at
// any time from any goroutine.
type Stats struct {
	// Requests counts request-queue chains served (FORGETs included).
	Requests uint64
	// Errors counts requests answered with an error.
	Errors uint64
	// Unsupported counts requests of an opcode the device does not serve
	// (answered ENOSYS, also in Errors).
	Unsupported uint64
	// BadRequests counts requests whose header does not fit the chain, or
	// whose chain has no room for the reply.
	BadRequests uint64
	// ReadBytes and WriteBytes count READ and WRITE data moved.
	ReadBytes, WriteBytes uint64
	// Forgets counts nodeids whose lookups FORGET took back.
	Forgets uint64
	// Malformed counts chains the queues rejected (completed with used
	// length 0 by the queue).
	Malformed uint64
	// Interrupts counts used-buffer notifications sent (both queues).
	Interrupts uint64
	// Broken counts queues the driver broke.
	Broken uint64
}

type counter int

const (
	cRequests counter = iota
	cErrors
	cUnsupported
	cBadRequests
	cReadBytes
	cWriteBytes
	cForgets
	cMalformed
	cInterrupts
	cBroken
	numCounters
)

// names is the one place that names each Stats field: its key in logs
// and dumps and its path in the metrics file (TestCountersNamed checks it
// covers Stats).
var names = [numCounters]virtio.Named[Stats]{
	cRequests:    virtio.Name("requests", "requests", func(s *Stats) *uint64 { return &s.Requests }),
	cErrors:      virtio.Name("errors", "errors", func(s *Stats) *uint64 { return &s.Errors }),
	cUnsupported: virtio.Name("unsupported", "unsupported", func(s *Stats) *uint64 { return &s.Unsupported }),
	cBadRequests: virtio.Name("bad_requests", "bad_requests", func(s *Stats) *uint64 { return &s.BadRequests }),
	cReadBytes:   virtio.Name("read_bytes", "read_bytes", func(s *Stats) *uint64 { return &s.ReadBytes }),
	cWriteBytes:  virtio.Name("write_bytes", "write_bytes", func(s *Stats) *uint64 { return &s.WriteBytes }),
	cForgets:     virtio.Name("forgets", "forgets", func(s *Stats) *uint64 { return &s.Forgets }),
	cMalformed:   virtio.Name("malformed", "malformed_chains", func(s *Stats) *uint64 { return &s.Malformed }),
	cInterrupts:  virtio.Name("interrupts", "interrupts", func(s *Stats) *uint64 { return &s.Interrupts }),
	cBroken:      virtio.Name("broken", "broken_queues", func(s *Stats) *uint64 { return &s.Broken }),
}

// Counters lists every field of s with its names, in a fixed order, for
// logs, dumps and metrics.
func (s *Stats) Counters() []virtio.Counter { return virtio.Counters(s, names[:]) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.Stats() }
