// Package mem owns guest physical memory: the host mappings that back guest
// RAM, the guest-physical layout (RAM below the 32-bit MMIO hole and above
// 4 GiB), and bounds-checked access to it.
//
// Every accessor takes guest-supplied addresses and lengths and returns an
// error for anything outside RAM; nothing here panics on a bad address.
// mem is a leaf: it imports nothing from this module, and everything below
// vmm may import it.
package mem

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

const (
	// MMIOHoleStart is where the 32-bit MMIO hole begins: guest RAM never
	// occupies [MMIOHoleStart, 4 GiB). PCI BARs, virtio-mmio windows, the
	// IOAPIC and the local APIC live there.
	MMIOHoleStart uint64 = 0xC000_0000
	// HighMemStart is where RAM continues above the hole.
	HighMemStart uint64 = 1 << 32

	// MaxSize is the largest guest RAM New accepts (1 TiB).
	MaxSize uint64 = 1 << 40
)

// ErrOutOfRange reports a guest access that is not wholly inside one RAM
// region.
var ErrOutOfRange = errors.New("guest address out of range")

// Region is one contiguous range of guest-physical RAM and the host bytes
// that back it.
type Region struct {
	// GuestAddr is the guest-physical address of the first byte.
	GuestAddr uint64
	host      []byte
	mapped    bool // true when New mmap'd host and Close must unmap it
}

// NewRegion describes guest RAM at guestAddr backed by host. The caller keeps
// ownership of host (for example an mmap of a vhost-user frontend's fd).
func NewRegion(guestAddr uint64, host []byte) Region {
	return Region{GuestAddr: guestAddr, host: host}
}

// Size is the region's length in bytes.
func (r Region) Size() uint64 { return uint64(len(r.host)) }

// End is the guest-physical address one past the region's last byte.
func (r Region) End() uint64 { return r.GuestAddr + uint64(len(r.host)) }

// Host returns the host bytes backing the region.
func (r Region) Host() []byte { return r.host }

// Memory is the guest's physical RAM: sorted, non-overlapping regions.
// Its methods are safe for concurrent use; the data they reach is shared
// with the guest, so callers order their accesses themselves.
type Memory struct {
	regions []Region
}

// Range is a span of guest-physical addresses.
type Range struct {
	Start, Size uint64
}

// End is the address one past the range's last byte.
func (r Range) End() uint64 { return r.Start + r.Size }

// Layout returns the guest-physical RAM ranges for size bytes of RAM: one
// range below the MMIO hole and, when size does not fit there, a second one
// starting at 4 GiB.
func Layout(size uint64) []Range {
	low := min(size, MMIOHoleStart)
	out := []Range{{Start: 0, Size: low}}
	if size > low {
		out = append(out, Range{Start: HighMemStart, Size: size - low})
	}
	return out
}

// New maps size bytes of anonymous guest RAM laid out by Layout. Pages are
// reserved lazily (MAP_NORESERVE) and never touched here, so an idle guest
// costs only what it writes, and left out of core dumps (MADV_DONTDUMP). size must be a positive multiple of 4 KiB and
// at most MaxSize.
func New(size uint64) (*Memory, error) {
	if size == 0 || size%4096 != 0 || size > MaxSize {
		return nil, fmt.Errorf("guest memory size %d: must be a non-zero multiple of 4 KiB up to %d bytes", size, MaxSize)
	}
	m := &Memory{}
	for _, r := range Layout(size) {
		b, err := unix.Mmap(-1, 0, int(r.Size), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("mmap %d bytes of guest memory at %#x: %w", r.Size, r.Start, err)
		}
		m.regions = append(m.regions, Region{GuestAddr: r.Start, host: b, mapped: true})
		// Guest RAM stays out of Flint's core dumps: a crash (a seccomp
		// kill, a fatal fault) would otherwise write the whole guest, its
		// secrets with it, wherever core_pattern says.
		if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
			m.Close()
			return nil, fmt.Errorf("madvise(MADV_DONTDUMP) on %d bytes of guest memory: %w", r.Size, err)
		}
	}
	return m, nil
}

// FromRegions builds a Memory over regions whose host bytes the caller owns
// (tests, vhost-user memory tables). Regions must not overlap.
func FromRegions(regions ...Region) (*Memory, error) {
	rs := append([]Region(nil), regions...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GuestAddr < rs[j].GuestAddr })
	for i, r := range rs {
		if r.Size() == 0 {
			return nil, fmt.Errorf("memory region at %#x is empty", r.GuestAddr)
		}
		if r.End() < r.GuestAddr {
			return nil, fmt.Errorf("memory region at %#x wraps the address space", r.GuestAddr)
		}
		if i > 0 && rs[i-1].End() > r.GuestAddr {
			return nil, fmt.Errorf("memory regions at %#x and %#x overlap", rs[i-1].GuestAddr, r.GuestAddr)
		}
		rs[i].mapped = false
	}
	return &Memory{regions: rs}, nil
}

// Close unmaps the regions New mapped. The Memory must not be used after.
func (m *Memory) Close() error {
	var first error
	for _, r := range m.regions {
		if r.mapped {
			if err := unix.Munmap(r.host); err != nil && first == nil {
				first = err
			}
		}
	}
	m.regions = nil
	return first
}

// Regions returns the RAM regions in ascending guest-address order. The
// slice is shared; do not modify it.
func (m *Memory) Regions() []Region { return m.regions }

// Size is the total RAM in bytes.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += r.Size()
	}
	return n
}

// Span returns the host bytes of the longest prefix of [addr, addr+n)
// that lies inside one RAM region (at least one byte when n > 0), or false
// when addr is not in RAM. With n == 0 it returns an empty slice at an
// address in RAM or one past a region's end. It is the one region lookup:
// it builds no error and does not allocate, so a hostile address costs
// nothing. The returned slice aliases guest memory.
func (m *Memory) Span(addr, n uint64) ([]byte, bool) {
	for i := range m.regions {
		r := &m.regions[i]
		if addr < r.GuestAddr {
			break // regions are sorted
		}
		off, size := addr-r.GuestAddr, uint64(len(r.host))
		if off > size || (off == size && n > 0) {
			continue // past this region: the next one may start right here
		}
		take := min(n, size-off)
		return r.host[off : off+take : off+take], true
	}
	return nil, false
}

// Within returns the host bytes of [addr, addr+n) when the whole range
// lies inside one RAM region. Like Span it builds no error.
func (m *Memory) Within(addr, n uint64) ([]byte, bool) {
	b, ok := m.Span(addr, n)
	return b, ok && uint64(len(b)) == n
}

// Slice returns the host bytes for guest range [addr, addr+n). The range
// must lie inside one region; n may be 0 (an empty slice at a valid or
// one-past-the-end address). The returned slice aliases guest memory.
func (m *Memory) Slice(addr, n uint64) ([]byte, error) {
	if b, ok := m.Within(addr, n); ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, addr, n)
}

// Contains reports whether [addr, addr+n) lies inside one RAM region.
func (m *Memory) Contains(addr, n uint64) bool {
	_, ok := m.Within(addr, n)
	return ok
}

// Read copies len(p) bytes at guest address addr into p.
func (m *Memory) Read(addr uint64, p []byte) error {
	b, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// Write copies p to guest address addr.
func (m *Memory) Write(addr uint64, p []byte) error {
	b, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}
