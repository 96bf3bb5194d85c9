package devices

import (
	"sync"
	"testing"
)

// regs is a device that records accesses and reads back offset+i.
type regs struct {
	mu     sync.Mutex
	last   uint64
	writes int
	leave  bool // read without filling data
}

func (r *regs) Read(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = off
	if r.leave {
		return
	}
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}

func (r *regs) Write(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = off
	r.writes++
}

func TestInsertRejects(t *testing.T) {
	b := NewBus("pio")
	if err := b.Insert(&regs{}, 0x100, 0x10); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name       string
		base, size uint64
	}{
		{"zero size", 0x200, 0},
		{"wraps", ^uint64(0) - 3, 8},
		{"ends at 2^64", ^uint64(0), 1},
		{"same range", 0x100, 0x10},
		{"overlaps the start", 0xf8, 0x10},
		{"overlaps the end", 0x10f, 0x10},
		{"inside", 0x104, 2},
		{"contains", 0x80, 0x100},
	}
	for _, tc := range bad {
		if err := b.Insert(&regs{}, tc.base, tc.size); err == nil {
			t.Errorf("%s: [%#x, +%#x) accepted", tc.name, tc.base, tc.size)
		}
	}
	// Adjacent ranges on both sides are fine.
	for _, base := range []uint64{0xf0, 0x110} {
		if err := b.Insert(&regs{}, base, 0x10); err != nil {
			t.Errorf("adjacent %#x: %v", base, err)
		}
	}
	// The largest range that does not reach 2^64.
	if err := NewBus("mmio").Insert(&regs{}, 0, ^uint64(0)); err != nil {
		t.Error(err)
	}
}

func TestLookupEdges(t *testing.T) {
	b := NewBus("pio")
	lo, hi := &regs{}, &regs{}
	if err := b.Insert(lo, 0x3f8, 8); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert(hi, 0x400, 4); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		addr    uint64
		n       int
		dev     *regs
		wantOff uint64
	}{
		{"first byte", 0x3f8, 1, lo, 0},
		{"last byte", 0x3ff, 1, lo, 7},
		{"dword at the end", 0x3fc, 4, lo, 4},
		{"next device's first byte", 0x400, 1, hi, 0},
		{"whole next device", 0x400, 4, hi, 0},
		{"below everything", 0x3f7, 1, nil, 0},
		{"straddles the start", 0x3f7, 2, nil, 0},
		{"straddles two devices", 0x3fe, 4, nil, 0},
		{"straddles the end", 0x402, 4, nil, 0},
		{"one past the end", 0x404, 1, nil, 0},
		{"far above", 1 << 40, 8, nil, 0},
	}
	for _, tc := range tests {
		data := make([]byte, tc.n)
		ok := b.Read(tc.addr, data)
		if (tc.dev != nil) != ok {
			t.Errorf("%s: claimed %v", tc.name, ok)
			continue
		}
		if tc.dev == nil {
			for _, v := range data {
				if v != 0xff {
					t.Errorf("%s: unclaimed read %x, want all ones", tc.name, data)
					break
				}
			}
			if b.Write(tc.addr, data) {
				t.Errorf("%s: unclaimed write claimed", tc.name)
			}
			continue
		}
		if tc.dev.last != tc.wantOff || data[0] != byte(tc.wantOff) {
			t.Errorf("%s: device saw offset %#x, data %x", tc.name, tc.dev.last, data)
		}
		if !b.Write(tc.addr, data) || tc.dev.last != tc.wantOff {
			t.Errorf("%s: write not routed", tc.name)
		}
	}
}

func TestReadZeroesData(t *testing.T) {
	b := NewBus("mmio")
	if err := b.Insert(&regs{leave: true}, 0x1000, 0x100); err != nil {
		t.Fatal(err)
	}
	data := []byte{1, 2, 3, 4}
	if !b.Read(0x1000, data) || data[0]|data[1]|data[2]|data[3] != 0 {
		t.Fatalf("data %x: bytes a device leaves must read zero", data)
	}
}

func TestRemove(t *testing.T) {
	b := NewBus("pio")
	d := &regs{}
	if err := b.Insert(d, 0x60, 1); err != nil {
		t.Fatal(err)
	}
	if b.Remove(0x61) {
		t.Fatal("removed a range that is not there")
	}
	if !b.Remove(0x60) || b.Remove(0x60) {
		t.Fatal("Remove results wrong")
	}
	if b.Write(0x60, []byte{1}) {
		t.Fatal("access after remove claimed")
	}
	if err := b.Insert(d, 0x60, 1); err != nil {
		t.Fatal("reinsert after remove:", err)
	}
}

func TestManyRangesStaySorted(t *testing.T) {
	b := NewBus("mmio")
	devs := make([]*regs, 64)
	// Insert in a scrambled order.
	for k := 0; k < 64; k++ {
		i := (k * 37) % 64
		devs[i] = &regs{}
		if err := b.Insert(devs[i], uint64(i)*0x1000, 0x800); err != nil {
			t.Fatal(err)
		}
	}
	for i := range devs {
		var d [4]byte
		if !b.Read(uint64(i)*0x1000+0x7fc, d[:]) || devs[i].last != 0x7fc {
			t.Fatalf("device %d not found", i)
		}
		if b.Read(uint64(i)*0x1000+0x800, d[:]) {
			t.Fatalf("gap after device %d claimed", i)
		}
	}
}

func TestConcurrentInsertAndAccess(t *testing.T) {
	b := NewBus("mmio")
	if err := b.Insert(&regs{}, 0, 0x1000); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d [4]byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !b.Read(0x10, d[:]) {
					t.Error("stable device lost")
					return
				}
				b.Write(0x5000, d[:])
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		if err := b.Insert(&regs{}, 0x5000, 0x1000); err != nil {
			t.Fatal(err)
		}
		if !b.Remove(0x5000) {
			t.Fatal("remove failed")
		}
	}
	close(stop)
	wg.Wait()
}
