package fs

import "sync/atomic"

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

type counters [numCounters]atomic.Uint64

func (c *counters) inc(i counter)           { c[i].Add(1) }
func (c *counters) add(i counter, n uint64) { c[i].Add(n) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	c := &d.stats
	return Stats{
		Requests: c[cRequests].Load(), Errors: c[cErrors].Load(), Unsupported: c[cUnsupported].Load(),
		BadRequests: c[cBadRequests].Load(), ReadBytes: c[cReadBytes].Load(), WriteBytes: c[cWriteBytes].Load(),
		Forgets: c[cForgets].Load(), Malformed: c[cMalformed].Load(), Interrupts: c[cInterrupts].Load(),
		Broken: c[cBroken].Load(),
	}
}
