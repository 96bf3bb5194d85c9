package devices

import (
	"fmt"
	"sort"
	"sync"
)

// Bus routes guest accesses to the device whose range contains them. Ranges
// never overlap. A Bus is safe for concurrent use: vCPUs read it while
// devices may be added before the VM starts (and hot-added later).
type Bus struct {
	name    string
	mu      sync.RWMutex
	entries []busEntry // sorted by base
}

type busEntry struct {
	base, size uint64
	dev        Device
}

// NewBus returns an empty bus; name appears in errors ("pio", "mmio").
func NewBus(name string) *Bus { return &Bus{name: name} }

// Insert maps dev at [base, base+size). It fails if size is zero, the range
// wraps, or it overlaps a range already on the bus.
func (b *Bus) Insert(dev Device, base, size uint64) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("%s bus: invalid range [%#x, +%#x)", b.name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base >= base })
	if i > 0 {
		if p := b.entries[i-1]; p.base+p.size > base {
			return fmt.Errorf("%s bus: range [%#x, +%#x) overlaps [%#x, +%#x)", b.name, base, size, p.base, p.size)
		}
	}
	if i < len(b.entries) {
		if n := b.entries[i]; base+size > n.base {
			return fmt.Errorf("%s bus: range [%#x, +%#x) overlaps [%#x, +%#x)", b.name, base, size, n.base, n.size)
		}
	}
	b.entries = append(b.entries, busEntry{})
	copy(b.entries[i+1:], b.entries[i:])
	b.entries[i] = busEntry{base: base, size: size, dev: dev}
	return nil
}

// Remove unmaps the range starting at base. It reports whether one was there.
func (b *Bus) Remove(base uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, e := range b.entries {
		if e.base == base {
			b.entries = append(b.entries[:i], b.entries[i+1:]...)
			return true
		}
	}
	return false
}

// lookup finds the device for an access of n bytes at addr; the whole access
// must fall inside the device's range.
func (b *Bus) lookup(addr uint64, n int) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base > addr }) - 1
	if i < 0 {
		return nil, 0, false
	}
	e := b.entries[i]
	off := addr - e.base
	if off >= e.size || uint64(n) > e.size-off {
		return nil, 0, false
	}
	return e.dev, off, true
}

// Read dispatches a guest read. It zeroes data first and reports whether a
// device claimed the access; unclaimed reads leave data as all ones, as a
// floating bus reads.
func (b *Bus) Read(addr uint64, data []byte) bool {
	dev, off, ok := b.lookup(addr, len(data))
	if !ok {
		for i := range data {
			data[i] = 0xff
		}
		return false
	}
	clear(data)
	dev.Read(off, data)
	return true
}

// Write dispatches a guest write and reports whether a device claimed it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	dev, off, ok := b.lookup(addr, len(data))
	if !ok {
		return false
	}
	dev.Write(off, data)
	return true
}
