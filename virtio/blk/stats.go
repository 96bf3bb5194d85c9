package blk

import "sync/atomic"

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
	// HostErrors counts host preadv/pwritev/fdatasync failures (also in
	// IOErrors).
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

type counters [numCounters]atomic.Uint64

func (c *counters) inc(i counter)           { c[i].Add(1) }
func (c *counters) add(i counter, n uint64) { c[i].Add(n) }
func (c *counters) get(i counter) uint64    { return c[i].Load() }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	c := &d.stats
	return Stats{
		ReadOps: c.get(cReadOps), ReadBytes: c.get(cReadBytes),
		WriteOps: c.get(cWriteOps), WriteBytes: c.get(cWriteBytes),
		Flushes: c.get(cFlushes), IDs: c.get(cIDs),
		IOErrors: c.get(cIOErrors), HostErrors: c.get(cHostErrors), Unsupported: c.get(cUnsupported),
		BadChains: c.get(cBadChains), Malformed: c.get(cMalformed), Throttled: c.get(cThrottled),
		Interrupts: c.get(cInterrupts), Broken: c.get(cBroken),
	}
}
