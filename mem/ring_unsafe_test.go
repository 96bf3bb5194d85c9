package mem

import (
	"encoding/binary"
	"sync"
	"testing"
)

func TestAtomicU16LoadStoreBothHalves(t *testing.T) {
	buf := make([]byte, 0x100)
	m, err := FromRegions(NewRegion(0x1000, buf))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []uint64{0x1000, 0x1002, 0x1010, 0x1016} {
		a, err := m.AtomicU16(addr)
		if err != nil {
			t.Fatalf("AtomicU16(%#x): %v", addr, err)
		}
		if !a.Valid() || !a.Atomic() {
			t.Fatalf("AtomicU16(%#x): valid=%v atomic=%v", addr, a.Valid(), a.Atomic())
		}
		off := addr - 0x1000
		nb := off ^ 2 // the other half of the containing word
		binary.LittleEndian.PutUint16(buf[nb:], 0xbeef)
		binary.LittleEndian.PutUint16(buf[off:], 0x1234)
		if got := a.Load(); got != 0x1234 {
			t.Fatalf("Load(%#x) = %#x", addr, got)
		}
		a.Store(0xa55a)
		if got := binary.LittleEndian.Uint16(buf[off:]); got != 0xa55a {
			t.Fatalf("Store(%#x) wrote %#x", addr, got)
		}
		if got := binary.LittleEndian.Uint16(buf[nb:]); got != 0xbeef {
			t.Fatalf("Store(%#x) clobbered neighbour: %#x", addr, got)
		}
	}
}

// TestAtomicU16StoreWithNeighbour: both halves of the word written at
// once, for a field in either half; a fallback handle stores nothing and
// says so.
func TestAtomicU16StoreWithNeighbour(t *testing.T) {
	buf := make([]byte, 0x20)
	m, err := FromRegions(NewRegion(0x1000, buf))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []uint64{0x100c, 0x100e} {
		a, err := m.AtomicU16(addr)
		if err != nil {
			t.Fatal(err)
		}
		off := addr - 0x1000
		if !a.StoreWithNeighbour(0x8081, 0x0007) {
			t.Fatalf("%#x: an atomic handle refused", addr)
		}
		if got, nb := binary.LittleEndian.Uint16(buf[off:]), binary.LittleEndian.Uint16(buf[off^2:]); got != 0x8081 || nb != 0x0007 {
			t.Fatalf("%#x: field %#x neighbour %#x, want 0x8081 and 0x7", addr, got, nb)
		}
		if a.Load() != 0x8081 {
			t.Fatalf("%#x: Load after StoreWithNeighbour = %#x", addr, a.Load())
		}
	}
	short := make([]byte, 0x12)
	ms, _ := FromRegions(NewRegion(0x1000, short))
	fb, _ := ms.AtomicU16(0x1010)
	if fb.StoreWithNeighbour(1, 2) || short[0x10] != 0 || short[0x0e] != 0 {
		t.Fatal("a fallback handle stored through StoreWithNeighbour")
	}
}

func TestAtomicU16AtAdjacentRegionStart(t *testing.T) {
	b := make([]byte, 0x10)
	m, _ := FromRegions(NewRegion(0x1000, make([]byte, 0x10)), NewRegion(0x1010, b))
	a, err := m.AtomicU16(0x1012)
	if err != nil || !a.Atomic() {
		t.Fatalf("field at the start of an adjacent region: %v", err)
	}
	a.Store(9)
	if b[2] != 9 {
		t.Fatal("stored in the wrong region")
	}
	// A word that would straddle the two regions is not used atomically.
	m2, _ := FromRegions(NewRegion(0x1000, make([]byte, 0x12)), NewRegion(0x1012, make([]byte, 0x10)))
	if a, err := m2.AtomicU16(0x1010); err != nil || a.Atomic() {
		t.Fatalf("straddling word: %v atomic=%v", err, a.Atomic())
	}
}

func TestAtomicU16Rejects(t *testing.T) {
	m, _ := FromRegions(NewRegion(0x1000, make([]byte, 0x10)))
	for _, addr := range []uint64{0x1001, 0x0ffe, 0x1010, 0x100f} {
		if _, err := m.AtomicU16(addr); err == nil {
			t.Errorf("AtomicU16(%#x) accepted", addr)
		}
	}
	var zero AtomicU16
	if zero.Valid() || zero.Load() != 0 {
		t.Fatal("zero AtomicU16 misbehaves")
	}
	zero.Store(1) // must not panic
}

func TestAtomicU16FallbackAtRegionEdge(t *testing.T) {
	// A region that ends 2 bytes into a word: the field at 0x100e has a
	// containing word [0x100c, 0x1010) inside RAM, but one at 0x1010 would
	// not. Build a region whose last field's word runs past the end.
	buf := make([]byte, 0x12)
	m, _ := FromRegions(NewRegion(0x1000, buf))
	a, err := m.AtomicU16(0x1010)
	if err != nil {
		t.Fatal(err)
	}
	if a.Atomic() {
		t.Fatal("word past region end used atomically")
	}
	a.Store(0x4321)
	if binary.LittleEndian.Uint16(buf[0x10:]) != 0x4321 || a.Load() != 0x4321 {
		t.Fatal("fallback store/load")
	}
}

func TestAtomicU16FallbackMisalignedHost(t *testing.T) {
	backing := make([]byte, 0x21)
	buf := backing[1:] // host address is odd relative to an aligned guest address
	m, _ := FromRegions(NewRegion(0x1000, buf))
	a, err := m.AtomicU16(0x1004)
	if err != nil {
		t.Fatal(err)
	}
	if a.Atomic() {
		t.Fatal("misaligned host word used atomically")
	}
	a.Store(7)
	if a.Load() != 7 || binary.LittleEndian.Uint16(buf[4:]) != 7 {
		t.Fatal("fallback store/load")
	}
}

// TestAtomicU16ConcurrentNeighbours has one goroutine own each half of a
// word; neither may ever lose the other's stores (run with -race).
func TestAtomicU16ConcurrentNeighbours(t *testing.T) {
	buf := make([]byte, 8)
	m, _ := FromRegions(NewRegion(0, buf))
	lo, _ := m.AtomicU16(0)
	hi, _ := m.AtomicU16(2)
	const n = 20000
	var wg sync.WaitGroup
	for _, a := range []AtomicU16{lo, hi} {
		wg.Add(1)
		go func(a AtomicU16) {
			defer wg.Done()
			for i := range n {
				a.Store(uint16(i))
				if got := a.Load(); got != uint16(i) {
					t.Errorf("lost own store: %d != %d", got, i)
					return
				}
			}
		}(a)
	}
	wg.Wait()
	if lo.Load() != n-1 || hi.Load() != n-1 {
		t.Fatalf("final %d %d", lo.Load(), hi.Load())
	}
}

func TestFenceAndAccessorsDoNotAllocate(t *testing.T) {
	m, _ := FromRegions(NewRegion(0, make([]byte, 16)))
	a, _ := m.AtomicU16(2)
	allocs := testing.AllocsPerRun(100, func() {
		Fence()
		a.Store(a.Load() + 1)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs", allocs)
	}
}

func BenchmarkAtomicU16Store(b *testing.B) {
	m, _ := FromRegions(NewRegion(0, make([]byte, 16)))
	a, _ := m.AtomicU16(2)
	for i := 0; b.Loop(); i++ {
		a.Store(uint16(i))
	}
}

func BenchmarkFence(b *testing.B) {
	for b.Loop() {
		Fence()
	}
}
