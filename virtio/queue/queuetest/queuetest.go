// Package queuetest is a driver-side double for split virtqueues: it lays
// out a descriptor table, available ring and used ring in a fake guest
// memory (mem.FromRegions over a Go byte slice) and plays the guest
// driver: it adds buffers as direct chains or through indirect tables,
// publishes and "kicks", reads used elements back, and sets the
// notification-suppression fields. It also writes raw descriptors and ring
// entries, for malformed-ring tests.
//
// It is for tests only (of package queue, of devices, of transports). It
// imports mem and virtio/queue and nothing else from this module. A Driver
// is used from one goroutine (the "vCPU"); the device side may run in
// another, since the shared index words are accessed with the same
// ordered accessors the device uses.
package queuetest

import (
	"fmt"
	"testing"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
)

// Descriptor flag bits (virtio 1.2 §2.7.5), for raw descriptors.
const (
	DescNext     uint16 = 1
	DescWrite    uint16 = 2
	DescIndirect uint16 = 4
)

// Ring feature bits, for Config.Features.
const (
	FeatureIndirectDesc uint64 = 1 << 28
	FeatureEventIdx     uint64 = 1 << 29
)

// Config describes the fake guest and where its rings go. Zero fields get
// defaults.
type Config struct {
	// Size is the queue size (default 256).
	Size uint16
	// Features are the negotiated features the queue is configured with
	// (FeatureIndirectDesc, FeatureEventIdx).
	Features uint64
	// MemBase is the guest-physical address of the fake RAM (default
	// 1 MiB, so that low addresses are outside RAM).
	MemBase uint64
	// MemSize is the fake RAM's size (default: the rings plus DataSize).
	MemSize uint64
	// DataSize is the space for buffers and indirect tables when MemSize
	// is not given (default 4 MiB).
	DataSize uint64
	// DescAddr, AvailAddr and UsedAddr place the rings explicitly; zero
	// means packed one after another from MemBase.
	DescAddr, AvailAddr, UsedAddr uint64
	// DataAddr places the data area (buffers and indirect tables, up to
	// the end of the fake RAM) explicitly; zero means right after the
	// rings.
	DataAddr uint64
	// SplitAt, if inside the fake RAM, backs it with two adjacent regions
	// that meet at this guest address.
	SplitAt uint64
}

// Desc is a raw split-ring descriptor.
type Desc struct {
	Addr  uint64 // guest-physical buffer (or indirect table) address
	Len   uint32 // length in bytes
	Flags uint16 // DescNext, DescWrite, DescIndirect
	Next  uint16 // next descriptor index when DescNext is set
}

// Buf is one buffer of a chain the driver adds.
type Buf struct {
	// Data is copied into the buffer; for a writable buffer it may be nil.
	Data []byte
	// Len is the buffer length; 0 means len(Data).
	Len uint32
	// Write marks the buffer device-writable.
	Write bool
	// Addr places the buffer at a given guest address (it must lie in the
	// fake RAM if Data is set); 0 means allocate it from the data area.
	Addr uint64
}

// R is a device-readable buffer holding data.
func R(data []byte) Buf { return Buf{Data: data} }

// W is a device-writable buffer of n bytes.
func W(n uint32) Buf { return Buf{Len: n, Write: true} }

// Used is a used element the device returned.
type Used struct {
	// ID is the head index the device returned.
	ID uint32
	// Len is the number of bytes the device says it wrote.
	Len uint32
	// Bufs are the buffers of the chain as the driver added it (with their
	// addresses), or nil if the driver did not add this head through
	// Add/AddIndirect. They stay readable until the head is reused.
	Bufs []Buf
}

type chainRec struct {
	live   bool
	descs  []uint16 // descriptor-table entries the chain occupies
	bufs   []Buf
	owned  []bool // bufs[i] was allocated by the driver
	table  uint64 // indirect table address, 0 if direct
	tabCap uint32 // descriptors the table can hold (cached across reuse)
}

// Driver plays the guest driver of one split virtqueue.
type Driver struct {
	// Mem is the fake guest memory.
	Mem *mem.Memory
	// RAM is its backing; RAM[0] is guest address Config.MemBase.
	RAM []byte
	cfg Config

	availFlags, availIdx, usedEvent mem.AtomicU16
	usedFlags, usedIdx, availEvent  mem.AtomicU16

	nextAvail  uint16 // avail.idx shadow (entries added)
	kickedAt   uint16 // avail.idx at the previous Kick
	lastUsed   uint16 // next used element to read
	free       []uint16
	chains     []chainRec
	dataNext   uint64
	dataEnd    uint64
	freeBufs   map[uint64][]uint64 // buffer free lists by rounded size
	availFlagV uint16
}

// New builds the fake guest memory and lays out empty rings.
func New(cfg Config) (*Driver, error) {
	if err := defaults(&cfg); err != nil {
		return nil, err
	}
	next := cfg.MemBase
	place := func(a *uint64, size, align uint64) {
		if *a == 0 {
			*a = (next + align - 1) &^ (align - 1)
		}
		next = max(next, *a+size)
	}
	n := cfg.Size
	place(&cfg.DescAddr, queue.DescTableBytes(n), 16)
	place(&cfg.AvailAddr, queue.AvailRingBytes(n), 2)
	place(&cfg.UsedAddr, queue.UsedRingBytes(n)+2, 4) // +2: avail_event's word
	dataStart := (next + 63) &^ 63
	if cfg.DataAddr != 0 {
		dataStart = cfg.DataAddr
	}
	if cfg.MemSize == 0 {
		cfg.MemSize = dataStart - cfg.MemBase + cfg.DataSize
	}
	ram := make([]byte, cfg.MemSize)
	end := cfg.MemBase + cfg.MemSize
	var m *mem.Memory
	var err error
	if cfg.SplitAt > cfg.MemBase && cfg.SplitAt < end {
		k := cfg.SplitAt - cfg.MemBase
		m, err = mem.FromRegions(mem.NewRegion(cfg.MemBase, ram[:k]), mem.NewRegion(cfg.SplitAt, ram[k:]))
	} else {
		m, err = mem.FromRegions(mem.NewRegion(cfg.MemBase, ram))
	}
	if err != nil {
		return nil, err
	}
	return newDriver(cfg, m, ram, dataStart, end), nil
}

// NewSet lays out one driver per config in a single fake guest memory, as
// a device with several queues sees it (virtio-net: receiveq, transmitq,
// controlq...). Each config's Size, Features and DataSize are used; ring
// and data placement is automatic, one block per queue, and MemBase comes
// from the first config.
func NewSet(cfgs ...Config) ([]*Driver, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("queuetest: no queues")
	}
	base := cfgs[0].MemBase
	if base == 0 {
		base = 1 << 20
	}
	type block struct{ desc, avail, used, data, end uint64 }
	blocks := make([]block, len(cfgs))
	next := base
	for i := range cfgs {
		c := &cfgs[i]
		c.MemBase, c.MemSize, c.SplitAt, c.DataAddr = base, 0, 0, 0
		c.DescAddr, c.AvailAddr, c.UsedAddr = 0, 0, 0
		if err := defaults(c); err != nil {
			return nil, err
		}
		b := &blocks[i]
		b.desc = (next + 63) &^ 63
		b.avail = b.desc + queue.DescTableBytes(c.Size)
		b.used = (b.avail + queue.AvailRingBytes(c.Size) + 3) &^ 3
		b.data = (b.used + queue.UsedRingBytes(c.Size) + 2 + 63) &^ 63
		b.end = b.data + c.DataSize
		next = b.end
	}
	ram := make([]byte, next-base)
	m, err := mem.FromRegions(mem.NewRegion(base, ram))
	if err != nil {
		return nil, err
	}
	ds := make([]*Driver, len(cfgs))
	for i, c := range cfgs {
		b := blocks[i]
		c.MemSize = uint64(len(ram))
		c.DescAddr, c.AvailAddr, c.UsedAddr, c.DataAddr = b.desc, b.avail, b.used, b.data
		ds[i] = newDriver(c, m, ram, b.data, b.end)
	}
	return ds, nil
}

// MustNewSet is NewSet for tests: it fails tb on error.
func MustNewSet(tb testing.TB, cfgs ...Config) []*Driver {
	tb.Helper()
	ds, err := NewSet(cfgs...)
	if err != nil {
		tb.Fatal(err)
	}
	return ds
}

func defaults(cfg *Config) error {
	if cfg.Size == 0 {
		cfg.Size = 256
	}
	if cfg.Size > queue.MaxSize || cfg.Size&(cfg.Size-1) != 0 {
		return fmt.Errorf("queuetest: size %d is not a power of two <= %d", cfg.Size, queue.MaxSize)
	}
	if cfg.MemBase == 0 {
		cfg.MemBase = 1 << 20
	}
	if cfg.DataSize == 0 {
		cfg.DataSize = 4 << 20
	}
	return nil
}

func newDriver(cfg Config, m *mem.Memory, ram []byte, dataStart, dataEnd uint64) *Driver {
	d := &Driver{cfg: cfg, Mem: m, RAM: ram, freeBufs: map[uint64][]uint64{}}
	d.dataNext, d.dataEnd = dataStart, dataEnd
	n := cfg.Size
	// The ring words may lie outside RAM when placed explicitly: tests of
	// Validate do that. Handles stay invalid (and inert) then.
	d.availFlags, _ = m.AtomicU16(cfg.AvailAddr)
	d.availIdx, _ = m.AtomicU16(cfg.AvailAddr + 2)
	d.usedEvent, _ = m.AtomicU16(cfg.AvailAddr + 4 + 2*uint64(n))
	d.usedFlags, _ = m.AtomicU16(cfg.UsedAddr)
	d.usedIdx, _ = m.AtomicU16(cfg.UsedAddr + 2)
	d.availEvent, _ = m.AtomicU16(cfg.UsedAddr + 4 + 8*uint64(n))
	d.chains = make([]chainRec, n)
	for i := int(n) - 1; i >= 0; i-- {
		d.free = append(d.free, uint16(i))
	}
	return d
}

// MustNew is New for tests: it fails tb on error.
func MustNew(tb testing.TB, cfg Config) *Driver {
	tb.Helper()
	d, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Config returns the configuration with defaults filled in and the ring
// addresses chosen.
func (d *Driver) Config() Config { return d.cfg }

// Size is the queue size.
func (d *Driver) Size() uint16 { return d.cfg.Size }

// Configure programs q as a transport would (size, addresses, features)
// and validates it against the fake memory.
func (d *Driver) Configure(q *queue.Queue) error {
	if err := q.SetSize(d.cfg.Size); err != nil {
		return err
	}
	if err := q.SetAddrs(d.cfg.DescAddr, d.cfg.AvailAddr, d.cfg.UsedAddr); err != nil {
		return err
	}
	if err := q.SetFeatures(d.cfg.Features); err != nil {
		return err
	}
	return q.Validate(d.Mem)
}

// NewQueue returns a device-side queue (max size = Size) configured and
// validated over this driver's rings.
func (d *Driver) NewQueue() (*queue.Queue, error) {
	q, err := queue.New(d.cfg.Size)
	if err != nil {
		return nil, err
	}
	return q, d.Configure(q)
}

// MustQueue is NewQueue for tests: it fails tb on error.
func (d *Driver) MustQueue(tb testing.TB) *queue.Queue {
	tb.Helper()
	q, err := d.NewQueue()
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

// Bytes returns the fake RAM at [addr, addr+n), or nil if it is outside.
// Unlike Mem.Slice it may span the SplitAt boundary.
func (d *Driver) Bytes(addr, n uint64) []byte {
	base, size := d.cfg.MemBase, uint64(len(d.RAM))
	if addr < base || addr-base > size || n > size-(addr-base) {
		return nil
	}
	off := addr - base
	return d.RAM[off : off+n : off+n]
}

// Alloc reserves n bytes (16-byte aligned) in the data area and returns
// their guest address, or 0 when the data area is full.
func (d *Driver) Alloc(n uint64) uint64 {
	n = max((n+15)&^15, 16)
	if l := d.freeBufs[n]; len(l) > 0 {
		a := l[len(l)-1]
		d.freeBufs[n] = l[:len(l)-1]
		return a
	}
	if d.dataNext+n > d.dataEnd || d.dataNext+n < d.dataNext {
		return 0
	}
	a := d.dataNext
	d.dataNext += n
	return a
}

func (d *Driver) release(addr uint64, n uint64) {
	n = max((n+15)&^15, 16)
	d.freeBufs[n] = append(d.freeBufs[n], addr)
}

// FreeDescs is the number of free descriptor-table entries.
func (d *Driver) FreeDescs() int { return len(d.free) }

// InFlight is the number of chains added and not yet returned in Used.
func (d *Driver) InFlight() int { return int(d.cfg.Size) - len(d.free) }
