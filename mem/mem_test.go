package mem

import (
	"errors"
	"testing"
)

func TestLayoutSplitsAroundHole(t *testing.T) {
	cases := []struct {
		size uint64
		want []Range
	}{
		{256 << 20, []Range{{0, 256 << 20}}},
		{MMIOHoleStart, []Range{{0, MMIOHoleStart}}},
		{4 << 30, []Range{{0, MMIOHoleStart}, {HighMemStart, 1 << 30}}},
	}
	for _, c := range cases {
		got := Layout(c.size)
		if len(got) != len(c.want) {
			t.Fatalf("Layout(%#x) = %v, want %v", c.size, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("Layout(%#x) = %v, want %v", c.size, got, c.want)
			}
		}
	}
}

func TestNewRejectsBadSizes(t *testing.T) {
	for _, s := range []uint64{0, 4095, MaxSize + 4096} {
		if m, err := New(s); err == nil {
			m.Close()
			t.Errorf("New(%d) succeeded", s)
		}
	}
}

func TestNewMapsHighMemory(t *testing.T) {
	m, err := New(MMIOHoleStart + 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.Regions()) != 2 || m.Size() != MMIOHoleStart+8192 {
		t.Fatalf("regions %v size %d", m.Regions(), m.Size())
	}
	if err := m.WriteU64(HighMemStart+8184, 0x1122334455667788); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.ReadU64(HighMemStart + 8184); v != 0x1122334455667788 {
		t.Fatalf("read back %#x", v)
	}
	if _, err := m.Slice(MMIOHoleStart, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("access in the MMIO hole: %v", err)
	}
}

func TestSliceBounds(t *testing.T) {
	m, err := FromRegions(NewRegion(0x1000, make([]byte, 0x1000)), NewRegion(0x3000, make([]byte, 0x100)))
	if err != nil {
		t.Fatal(err)
	}
	ok := []struct{ addr, n uint64 }{{0x1000, 0x1000}, {0x1fff, 1}, {0x2000, 0}, {0x3000, 0x100}, {0x30ff, 1}}
	for _, c := range ok {
		b, err := m.Slice(c.addr, c.n)
		if err != nil || uint64(len(b)) != c.n {
			t.Errorf("Slice(%#x,%#x) = %d bytes, %v", c.addr, c.n, len(b), err)
		}
	}
	bad := []struct{ addr, n uint64 }{
		{0, 1}, {0xfff, 2}, {0x1fff, 2}, {0x2000, 1}, {0x1000, 0x2001}, {0x30ff, 2},
		{0x3100, 1}, {^uint64(0), 2}, {0x1000, ^uint64(0)}, {0x1001, ^uint64(0)},
	}
	for _, c := range bad {
		if _, err := m.Slice(c.addr, c.n); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Slice(%#x,%#x) = %v, want ErrOutOfRange", c.addr, c.n, err)
		}
	}
	if _, err := m.ReadU32(0x1ffe); err == nil {
		t.Error("ReadU32 across region end succeeded")
	}
	if err := m.Write(0x30f0, make([]byte, 0x20)); err == nil {
		t.Error("Write past end succeeded")
	}
}

func TestSliceAdjacentRegions(t *testing.T) {
	m, err := FromRegions(NewRegion(0, make([]byte, 0x1000)), NewRegion(0x1000, make([]byte, 0x1000)))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := m.Slice(0x1000, 4); err != nil || len(b) != 4 {
		t.Fatalf("Slice at the start of the second region: %v", err)
	}
	if _, err := m.Slice(0xffe, 4); err == nil {
		t.Fatal("an access spanning two regions succeeded")
	}
	if b, err := m.Slice(0x1000, 0); err != nil || len(b) != 0 {
		t.Fatalf("empty Slice at the boundary: %v", err)
	}
}

func TestFromRegionsRejectsOverlap(t *testing.T) {
	if _, err := FromRegions(NewRegion(0, make([]byte, 0x2000)), NewRegion(0x1000, make([]byte, 0x10))); err == nil {
		t.Fatal("overlapping regions accepted")
	}
	if _, err := FromRegions(NewRegion(0, nil)); err == nil {
		t.Fatal("empty region accepted")
	}
	if _, err := FromRegions(NewRegion(^uint64(0)-1, make([]byte, 4))); err == nil {
		t.Fatal("wrapping region accepted")
	}
}

func FuzzSlice(f *testing.F) {
	f.Add(uint64(0x1000), uint64(0x10))
	f.Add(^uint64(0), uint64(2))
	m, _ := FromRegions(NewRegion(0x1000, make([]byte, 0x1000)), NewRegion(HighMemStart, make([]byte, 0x1000)))
	f.Fuzz(func(t *testing.T, addr, n uint64) {
		b, err := m.Slice(addr, n)
		if err == nil && uint64(len(b)) != n {
			t.Fatalf("len %d want %d", len(b), n)
		}
		inside := (addr >= 0x1000 && n <= 0x1000 && addr-0x1000 <= 0x1000-n) ||
			(addr >= HighMemStart && n <= 0x1000 && addr-HighMemStart <= 0x1000-n)
		if inside != (err == nil) {
			t.Fatalf("Slice(%#x,%#x) err=%v inside=%v", addr, n, err, inside)
		}
	})
}
