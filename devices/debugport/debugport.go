// Package debugport emulates the PC's POST diagnostic port, I/O port 0x80,
// as a boot-timing probe: every write is recorded with the time since a
// start instant the VMM chooses (typically just before the first KVM_RUN),
// so the VMM can print boot milestones and a benchmark can measure the time
// to the guest's first write.
//
// Insert it on the PIO bus with Insert(p, debugport.Port, debugport.Size).
//
// The log is bounded so a guest writing in a loop cannot grow VMM memory: it
// keeps the most recent Capacity records in a ring, and separately the very
// first write ever (First), plus a count of all writes (Total). Linux may
// write port 0x80 as an I/O delay (outb_p) unless the KVM NOP_IO_DELAY
// feature is exposed, which is why the ring keeps the latest writes, not the
// earliest.
//
// Reads return the last byte written (0 before any), as chipsets that latch
// port 0x80 for POST cards do.
//
// The package imports only devices, never kvm.
package debugport

import (
	"sync"
	"time"

	"github.com/flintvm/flint/devices"
)

const (
	// Port is the POST diagnostic port.
	Port = 0x80
	// Size is the number of ports the device occupies.
	Size = 1
	// DefaultCapacity is the ring size New uses when given 0.
	DefaultCapacity = 1024
)

// Record is one guest write.
type Record struct {
	// At is the time of the write, measured from the start instant on the
	// monotonic clock.
	At time.Duration
	// Value is the value written; a byte for outb, up to 32 bits for the
	// rare outw/outl.
	Value uint32
	// Width is the access width in bytes.
	Width uint8
}

// DebugPort records writes to port 0x80. It is safe for concurrent use.
type DebugPort struct {
	start time.Time

	mu       sync.Mutex
	ring     []Record
	next     int    // ring index the next record goes to
	total    uint64 // writes ever
	first    Record
	last     byte
	firstSet chan struct{} // closed on the first write
}

var _ devices.Device = (*DebugPort)(nil)

// New returns a debug port whose timestamps count from start (pass a
// time.Now() value so the monotonic clock is used). capacity bounds the
// ring of recent records; 0 means DefaultCapacity.
func New(start time.Time, capacity int) *DebugPort {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &DebugPort{
		start:    start,
		ring:     make([]Record, 0, capacity),
		firstSet: make(chan struct{}),
	}
}

// Read implements devices.Device: it returns the last byte written.
func (p *DebugPort) Read(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	p.mu.Lock()
	data[0] = p.last
	p.mu.Unlock()
}

// Write implements devices.Device: it records the write.
func (p *DebugPort) Write(offset uint64, data []byte) {
	if len(data) == 0 || offset != 0 {
		return
	}
	at := time.Since(p.start)
	var v uint32
	for i := min(len(data), 4) - 1; i >= 0; i-- {
		v = v<<8 | uint32(data[i])
	}
	r := Record{At: at, Value: v, Width: uint8(min(len(data), 4))}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = data[0]
	if p.total == 0 {
		p.first = r
		close(p.firstSet)
	}
	p.total++
	if len(p.ring) < cap(p.ring) {
		p.ring = append(p.ring, r)
	} else {
		p.ring[p.next] = r
	}
	p.next = (p.next + 1) % cap(p.ring)
}

// First returns the first write ever made, and false if there was none.
func (p *DebugPort) First() (Record, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first, p.total > 0
}

// FirstWritten returns a channel closed when the guest first writes the
// port; a benchmark waits on it and then calls First.
func (p *DebugPort) FirstWritten() <-chan struct{} { return p.firstSet }

// Records returns a copy of the retained records, oldest first: the most
// recent min(Total(), capacity) writes.
func (p *DebugPort) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Record, 0, len(p.ring))
	if len(p.ring) < cap(p.ring) {
		return append(out, p.ring...)
	}
	out = append(out, p.ring[p.next:]...)
	return append(out, p.ring[:p.next]...)
}

// Total returns the number of writes ever made; Total() minus
// len(Records()) writes were dropped from the ring.
func (p *DebugPort) Total() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
