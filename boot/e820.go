package boot

import (
	"sort"

	"github.com/flintvm/flint/mem"
)

// E820 memory types.
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one entry of the BIOS-style memory map in the zero page.
type E820Entry struct {
	Addr uint64 // first byte
	Size uint64 // length in bytes
	Type uint32 // E820RAM or E820Reserved
}

// E820Map returns the memory map for m: every RAM region as usable RAM,
// except [EBDAStart, 1 MiB), which is reserved (EBDA, VGA hole, BIOS area
// with the ACPI tables). The MMIO hole is simply absent.
func E820Map(m *mem.Memory) ([]E820Entry, error) {
	var out []E820Entry
	hole := mem.Range{Start: EBDAStart, Size: KernelAddr - EBDAStart}
	for _, r := range m.Regions() {
		start, end := r.GuestAddr, r.End()
		if start < hole.End() && hole.Start < end {
			if start < hole.Start {
				out = append(out, E820Entry{Addr: start, Size: hole.Start - start, Type: E820RAM})
			}
			if end > hole.End() {
				out = append(out, E820Entry{Addr: hole.End(), Size: end - hole.End(), Type: E820RAM})
			}
			continue
		}
		out = append(out, E820Entry{Addr: start, Size: end - start, Type: E820RAM})
	}
	out = append(out, E820Entry{Addr: hole.Start, Size: hole.Size, Type: E820Reserved})
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	if len(out) > E820MaxEntries {
		return nil, configErr(ErrNoFit, "guest memory has %d ranges, the e820 map holds at most %d", len(out), E820MaxEntries)
	}
	return out, nil
}
