package mem

import "testing"

// TestSpanLookup: Span, Within, Slice and Contains share one lookup; the
// miss path builds no error (no allocation), and ranges split across
// adjacent regions are seen as prefixes by Span only.
func TestSpanLookup(t *testing.T) {
	m, err := FromRegions(NewRegion(0x1000, make([]byte, 0x1000)), NewRegion(0x2000, make([]byte, 0x1000)))
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := m.Span(0x1ff0, 0x20); !ok || len(b) != 0x10 {
		t.Fatalf("Span across regions: %d %v", len(b), ok)
	}
	if _, ok := m.Within(0x1ff0, 0x20); ok {
		t.Fatal("Within across regions")
	}
	if b, ok := m.Within(0x2000, 0x10); !ok || len(b) != 0x10 {
		t.Fatalf("Within at a region start: %d %v", len(b), ok)
	}
	if b, err := m.Slice(0x3000, 0); err != nil || len(b) != 0 {
		t.Fatalf("empty Slice one past the end: %v", err)
	}
	if _, ok := m.Span(0x3000, 1); ok {
		t.Fatal("Span past the end")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		_ = m.Contains(0x3000, 8)
		_, _ = m.Span(0x10, 8)
		_, _ = m.Within(0x1ff0, 0x20)
	}); allocs != 0 {
		t.Fatalf("%v allocs per miss", allocs)
	}
}
