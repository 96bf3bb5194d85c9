package blk

import "github.com/flintvm/flint/virtio"

// Stats are the device's counters. They accumulate over the device's
// life (Reset keeps them) and are updated atomically as each request
// completes, so they can be read at any time from any goroutine.
type Stats struct {
	// ReadOps and ReadBytes count IN requests completed OK and their data.
	ReadOps, ReadBytes uint64
	// WriteOps and WriteBytes count OUT requests completed OK.
	WriteOps, WriteBytes uint64
	// Flushes counts FLUSH requests completed OK (synced or, without
	// Writeback, no-ops).
	Flushes uint64
	// IDs counts GET_ID requests answered.
	IDs uint64
	// IOErrors counts requests answered IOERR: out of range, a data
	// length that is not a multiple of 512, a write to a read-only drive,
	// a truncated header, or a failed host I/O (HostErrors).
	IOErrors uint64
	// HostErrors counts host preadv/pwritev/fdatasync failures, and the
	// syncs refused after a failed one (also in IOErrors).
	HostErrors uint64
	// Unsupported counts requests of a type the device does not
	// implement, answered UNSUPP.
	Unsupported uint64
	// BadChains counts chains with no writable byte for the status,
	// returned with used length 0.
	BadChains uint64
	// Malformed counts chains the queue rejected (returned with used
	// length 0 by the queue).
	Malformed uint64
	// Throttled counts the times the rate limiter made the queue wait.
	Throttled uint64
	// Interrupts counts used-buffer notifications sent.
	Interrupts uint64
	// Broken counts queues the driver broke (the device then asked for
	// DEVICE_NEEDS_RESET).
	Broken uint64
}

type counter int

const (
	cReadOps counter = iota
	cReadBytes
	cWriteOps
	cWriteBytes
	cFlushes
	cIDs
	cIOErrors
	cHostErrors
	cUnsupported
	cBadChains
	cMalformed
	cThrottled
	cInterrupts
	cBroken
	numCounters
)

// names is the one place that names each Stats field: its key in logs
// and dumps, its path in the metrics file, and the field itself
// (TestCountersNamed checks it covers Stats).
var names = [numCounters]virtio.Named[Stats]{
	cReadOps:     virtio.Name("read_ops", "read_ops", func(s *Stats) *uint64 { return &s.ReadOps }),
	cReadBytes:   virtio.Name("read_bytes", "read_bytes", func(s *Stats) *uint64 { return &s.ReadBytes }),
	cWriteOps:    virtio.Name("write_ops", "write_ops", func(s *Stats) *uint64 { return &s.WriteOps }),
	cWriteBytes:  virtio.Name("write_bytes", "write_bytes", func(s *Stats) *uint64 { return &s.WriteBytes }),
	cFlushes:     virtio.Name("flushes", "flushes", func(s *Stats) *uint64 { return &s.Flushes }),
	cIDs:         virtio.Name("ids", "get_ids", func(s *Stats) *uint64 { return &s.IDs }),
	cIOErrors:    virtio.Name("io_errors", "io_errors", func(s *Stats) *uint64 { return &s.IOErrors }),
	cHostErrors:  virtio.Name("host_errors", "host_errors", func(s *Stats) *uint64 { return &s.HostErrors }),
	cUnsupported: virtio.Name("unsupported", "unsupported", func(s *Stats) *uint64 { return &s.Unsupported }),
	cBadChains:   virtio.Name("bad_chains", "bad_chains", func(s *Stats) *uint64 { return &s.BadChains }),
	cMalformed:   virtio.Name("malformed", "malformed_chains", func(s *Stats) *uint64 { return &s.Malformed }),
	cThrottled:   virtio.Name("throttled", "rate_limiter_throttled", func(s *Stats) *uint64 { return &s.Throttled }),
	cInterrupts:  virtio.Name("interrupts", "interrupts", func(s *Stats) *uint64 { return &s.Interrupts }),
	cBroken:      virtio.Name("broken", "broken_queues", func(s *Stats) *uint64 { return &s.Broken }),
}

// Counters lists every field of s with its names, in a fixed order, for
// logs, dumps and metrics (and pointers into s, to fill it from them).
func (s *Stats) Counters() []virtio.Counter { return virtio.Counters(s, names[:]) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.Stats() }
