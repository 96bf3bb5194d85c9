package queuetest_test

import (
	"bytes"
	"testing"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

func TestNewSetSharesMemory(t *testing.T) {
	ds := qt.MustNewSet(t, qt.Config{Size: 16, Features: qt.FeatureEventIdx}, qt.Config{Size: 64, DataSize: 1 << 16})
	if ds[0].Mem != ds[1].Mem || ds[0].Size() != 16 || ds[1].Size() != 64 {
		t.Fatal("drivers do not share one memory")
	}
	a, b := ds[0].Config(), ds[1].Config()
	if b.DescAddr < a.DataAddr+a.DataSize || b.DescAddr%16 != 0 || b.UsedAddr%4 != 0 {
		t.Fatalf("overlapping or misaligned layout: %+v %+v", a, b)
	}
	for i, d := range ds {
		q := d.MustQueue(t)
		head, err := d.Add(qt.R([]byte{byte(i)}), qt.W(8))
		if err != nil {
			t.Fatal(err)
		}
		d.Kick()
		var c queue.Chain
		if ok, err := q.Pop(&c); !ok || err != nil || c.Head != head || c.Readable[0][0] != byte(i) {
			t.Fatalf("queue %d: %v %v %+v", i, ok, err, c)
		}
		c.WriteAt([]byte("reply"), 0)
		q.Push(c.Head, 5)
		q.Publish()
		u, ok := d.Used()
		if !ok || !bytes.Equal(d.Written(u), []byte("reply")) {
			t.Fatalf("queue %d used %+v", i, u)
		}
	}
}

func TestAllocatorRecyclesAndFills(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 4, DataSize: 4096})
	q := d.MustQueue(t)
	for range 100 { // far more than the data area holds without reuse
		if _, err := d.Add(qt.W(1000)); err != nil {
			t.Fatal(err)
		}
		d.Kick()
		var c queue.Chain
		if ok, _ := q.Pop(&c); !ok {
			t.Fatal("pop")
		}
		q.Push(c.Head, 0)
		q.Publish()
		if _, ok := d.Used(); !ok {
			t.Fatal("used")
		}
	}
	if d.InFlight() != 0 || d.FreeDescs() != 4 {
		t.Fatalf("in flight %d free %d", d.InFlight(), d.FreeDescs())
	}
	if _, err := d.Add(qt.W(8192)); err == nil {
		t.Fatal("oversized buffer accepted")
	}
	if _, err := d.Add(qt.W(1), qt.W(1), qt.W(1), qt.W(1), qt.W(1)); err == nil {
		t.Fatal("more buffers than descriptors accepted")
	}
}

// TestNewPackedIn: a packed ring laid out in caller-provided RAM (a
// window of a larger memory, as a vhost-user frontend's memfd) keeps its
// ring and buffers inside that window, which the device reads and writes
// through the caller's memory.
func TestNewPackedIn(t *testing.T) {
	const base, off, size = 1 << 20, 8192, 4096
	host := make([]byte, 64<<10)
	m, err := mem.FromRegions(mem.NewRegion(base, host))
	if err != nil {
		t.Fatal(err)
	}
	ram := host[off : off+size]
	d, err := qt.NewPackedIn(qt.Config{Size: 4, MemBase: base + off}, m, ram)
	if err != nil {
		t.Fatal(err)
	}
	if c := d.Config(); c.DescAddr != base+off || c.MemSize != size || c.DataSize == 0 || c.UsedAddr+4 > base+off+size {
		t.Fatalf("layout %+v", c)
	}
	q := d.MustQueue(t)
	for i := range 6 { // two slots each: wraps the 4-slot ring three times
		if _, err := d.Add(qt.R([]byte{byte(i)}), qt.W(8)); err != nil {
			t.Fatal(err)
		}
		d.Kick()
		var c queue.Chain
		if ok, err := q.Pop(&c); !ok || err != nil || c.Readable[0][0] != byte(i) {
			t.Fatalf("pop %d: %v %v", i, ok, err)
		}
		c.WriteAt([]byte("reply"), 0)
		q.Push(c.Head, 5)
		q.Publish()
		u, ok := d.Used()
		if !ok || !bytes.Equal(d.Written(u), []byte("reply")) {
			t.Fatalf("used %d: %+v", i, u)
		}
		if a := u.Bufs[1].Addr; a < base+off || a+8 > base+off+size {
			t.Fatalf("buffer %#x outside the caller's RAM", a)
		}
	}
	// 12 slots: three wraps, slot 0 with wrap counter 0.
	if d.AvailPos() != 0 || d.UsedPos() != 0 || q.NextAvail() != 0 || q.NextUsed() != 0 {
		t.Fatalf("positions %#x/%#x, queue %#x/%#x", d.AvailPos(), d.UsedPos(), q.NextAvail(), q.NextUsed())
	}
	if d.Alloc(size) != 0 {
		t.Fatal("data area runs past the caller's RAM")
	}
	if bytes.Count(host[:off], []byte{0}) != off || bytes.Count(host[off+size:], []byte{0}) != len(host)-off-size {
		t.Fatal("wrote outside the caller's RAM")
	}
	if _, err := qt.NewPackedIn(qt.Config{Size: 512, MemBase: base + off}, m, ram); err == nil {
		t.Fatal("a ring larger than the RAM accepted")
	}
}
