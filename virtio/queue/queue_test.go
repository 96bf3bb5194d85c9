package queue_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

const allRing = qt.FeatureIndirectDesc | qt.FeatureEventIdx

func mustPop(t *testing.T, q *queue.Queue, c *queue.Chain) {
	t.Helper()
	ok, err := q.Pop(c)
	if !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
}

func TestDirectChainRoundTrip(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 16})
	q := d.MustQueue(t)
	hdr := []byte("0123456789ab")
	body := bytes.Repeat([]byte{0xab}, 1000)
	head, err := d.Add(qt.R(hdr), qt.R(body), qt.W(64), qt.W(2000))
	if err != nil {
		t.Fatal(err)
	}
	var c queue.Chain
	if ok, _ := q.Pop(&c); ok {
		t.Fatal("popped before the driver published avail.idx")
	}
	d.Kick()
	mustPop(t, q, &c)
	if c.Head != head || c.Indirect || len(c.Readable) != 2 || len(c.Writable) != 2 ||
		c.ReadLen != 1012 || c.WriteLen != 2064 || c.Descs() != 4 {
		t.Fatalf("chain %+v", c)
	}
	if !bytes.Equal(c.Readable[0], hdr) || !bytes.Equal(c.Readable[1], body) {
		t.Fatal("readable segments do not alias the driver's data")
	}
	got := make([]byte, 20)
	if n := c.ReadAt(got, 5); n != 20 || !bytes.Equal(got[:7], hdr[5:]) || got[7] != 0xab {
		t.Fatalf("ReadAt across segments: %d %x", n, got)
	}
	if n := c.WriteAt(bytes.Repeat([]byte{7}, 100), 0); n != 100 {
		t.Fatalf("WriteAt = %d", n)
	}
	q.Push(c.Head, 100)
	if ok, _ := q.Pop(&c); ok {
		t.Fatal("second pop of a one-chain ring")
	}
	if d.PendingUsed() != 0 {
		t.Fatal("used element visible before Publish")
	}
	if !q.Publish() || q.Publish() {
		t.Fatal("Publish should report exactly one batch")
	}
	u, ok := d.Used()
	if !ok || u.ID != uint32(head) || u.Len != 100 {
		t.Fatalf("used %+v %v", u, ok)
	}
	if w := d.Written(u); !bytes.Equal(w, bytes.Repeat([]byte{7}, 100)) {
		t.Fatalf("written %x", w)
	}
	if d.FreeDescs() != 16 {
		t.Fatalf("driver leaked descriptors: %d free", d.FreeDescs())
	}
}

func TestIndirectChainAndIovecs(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: allRing})
	q := d.MustQueue(t)
	bufs := []qt.Buf{qt.R([]byte("hdr")), qt.R([]byte("payload")), qt.W(10), qt.W(30)}
	head, err := d.AddIndirect(bufs...)
	if err != nil {
		t.Fatal(err)
	}
	d.Kick()
	var c queue.Chain
	mustPop(t, q, &c)
	if c.Head != head || !c.Indirect || c.ReadLen != 10 || c.WriteLen != 40 || c.Descs() != 5 {
		t.Fatalf("chain %+v descs %d", c, c.Descs())
	}
	riov, wiov := c.ReadableIovecs(), c.WritableIovecs()
	if len(riov) != 2 || len(wiov) != 2 {
		t.Fatalf("iovecs %d %d", len(riov), len(wiov))
	}
	for i, v := range riov {
		if v.Base != &c.Readable[i][0] || v.Len != uint64(len(c.Readable[i])) {
			t.Fatalf("riov[%d] = %+v", i, v)
		}
	}
	for i, v := range wiov {
		if v.Base != &c.Writable[i][0] || v.Len != uint64(len(c.Writable[i])) {
			t.Fatalf("wiov[%d] = %+v", i, v)
		}
	}
	q.Push(c.Head, 40)
	q.Publish()
	if u, ok := d.Used(); !ok || u.ID != uint32(head) || u.Len != 40 {
		t.Fatalf("used %+v", u)
	}
}

func TestSegmentsSplitAcrossAdjacentRegions(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 4, Features: allRing, SplitAt: 1<<20 + 0x8000})
	q := d.MustQueue(t)
	data := bytes.Repeat([]byte("x"), 0x100)
	d.Add(qt.Buf{Data: data, Addr: 1<<20 + 0x8000 - 0x80})
	d.Kick()
	var c queue.Chain
	mustPop(t, q, &c)
	if len(c.Readable) != 2 || len(c.Readable[0]) != 0x80 || c.ReadLen != 0x100 {
		t.Fatalf("segments %d %d", len(c.Readable), c.ReadLen)
	}
	// An indirect table must lie in one region.
	tab := uint64(1<<20 + 0x8000 - 0x10)
	d.WriteDescs(tab, qt.Desc{Addr: 1<<20 + 0x9000, Len: 4}, qt.Desc{Addr: 1<<20 + 0x9000, Len: 4})
	d.SetDesc(1, qt.Desc{Addr: tab, Len: 32, Flags: qt.DescIndirect})
	d.AddHead(1)
	d.Kick()
	if _, err := q.Pop(&c); err != queue.ErrIndirectAddress {
		t.Fatalf("indirect table across regions: %v", err)
	}
}

func TestUndo(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8})
	q := d.MustQueue(t)
	for range 4 {
		d.Add(qt.W(4))
	}
	d.Kick()
	var c queue.Chain
	mustPop(t, q, &c)
	first := c.Head
	q.Push(c.Head, 4)
	mustPop(t, q, &c)
	second := c.Head
	mustPop(t, q, &c)
	q.Publish()
	// Pushing and publishing the oldest chain leaves the two newest
	// undoable (a receive device keeps them across flushes).
	if got := q.Undo(2); got != 2 {
		t.Fatalf("Undo gave back %d, want the 2 held across Push and Publish", got)
	}
	if n, _ := q.Available(); n != 3 {
		t.Fatalf("available after undo %d", n)
	}
	mustPop(t, q, &c)
	if c.Head != second || c.Head == first {
		t.Fatalf("re-popped %d, want %d", c.Head, second)
	}
}

func TestPopCachedReusesPerHead(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: allRing})
	q := d.MustQueue(t)
	head, _ := d.AddIndirect(qt.R(make([]byte, 12)), qt.R(make([]byte, 100)), qt.R(make([]byte, 200)))
	d.Kick()
	c1, err := q.PopCached()
	if err != nil || c1 == nil || c1.Head != head || len(c1.Readable) != 3 {
		t.Fatalf("PopCached = %+v, %v", c1, err)
	}
	q.Push(head, 0)
	q.Publish()
	d.AllUsed()
	head2, _ := d.AddIndirect(qt.R(make([]byte, 12)), qt.R(make([]byte, 100)), qt.R(make([]byte, 200)))
	d.Kick()
	c2, _ := q.PopCached()
	if head2 != head || c2 != c1 {
		t.Fatalf("head %d->%d, chain %p->%p: cache not keyed by head", head, head2, c1, c2)
	}
	if c, err := q.PopCached(); c != nil || err != nil {
		t.Fatalf("empty ring: %v %v", c, err)
	}
	d.AddHead(100)
	d.Kick()
	if c, err := q.PopCached(); c != nil || err != queue.ErrHeadIndex {
		t.Fatalf("bad head: %v %v", c, err)
	}
	// Undo must not step back over the bad entry onto a good chain.
	if n := q.Undo(1); n != 0 {
		t.Fatalf("Undo after an out-of-range head gave back %d chains", n)
	}
}

func TestValidate(t *testing.T) {
	const base = 1 << 20
	for _, tc := range []struct {
		name              string
		size              uint16
		desc, avail, used uint64
		ok                bool
	}{
		{"good", 8, base, base + 0x200, base + 0x400, true},
		{"avail 2 mod 4", 8, base, base + 0x202, base + 0x400, true},
		{"desc misaligned", 8, base + 8, base + 0x200, base + 0x400, false},
		{"avail misaligned", 8, base, base + 0x201, base + 0x400, false},
		{"used misaligned", 8, base, base + 0x200, base + 0x402, false},
		{"desc outside RAM", 8, 0x1000, base + 0x200, base + 0x400, false},
		{"avail past RAM end", 8, base, base + 0x10000 - 8, base + 0x400, false},
		{"used past RAM end", 8, base, base + 0x200, base + 0x10000 - 0x40, false},
		{"used ends near RAM end", 8, base, base + 0x200, base + 0x10000 - 72, true},
		{"desc overflow", 8, ^uint64(0) - 15, base + 0x200, base + 0x400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := qt.MustNew(t, qt.Config{Size: tc.size, MemSize: 0x10000, DescAddr: tc.desc, AvailAddr: tc.avail, UsedAddr: tc.used, DataAddr: base + 0x1000})
			q, _ := queue.New(16)
			err := d.Configure(q)
			if (err == nil) != tc.ok || q.Ready() != tc.ok {
				t.Fatalf("Configure: %v, ready %v", err, q.Ready())
			}
			if !tc.ok {
				return
			}
			d.Add(qt.R([]byte("hi")))
			d.Kick()
			var c queue.Chain
			mustPop(t, q, &c)
			q.Push(c.Head, 0)
			q.Publish()
			q.EnableNotifications()
			q.NeedsInterrupt()
			if _, ok := d.Used(); !ok {
				t.Fatal("no used element")
			}
		})
	}
	q, _ := queue.New(256)
	for _, n := range []uint16{0, 3, 100, 512} {
		if q.SetSize(n) == nil {
			t.Errorf("SetSize(%d) accepted", n)
		}
	}
	if _, err := queue.New(0); err == nil {
		t.Error("New(0) accepted")
	}
	if q.Validate(nil) == nil {
		t.Error("Validate(nil) accepted")
	}
	// A packed ring takes any size up to the maximum (SetFeatures first).
	if err := q.SetFeatures(1 << 34); err != nil || !q.Packed() {
		t.Fatalf("SetFeatures(RING_PACKED) = %v, Packed %v", err, q.Packed())
	}
	if err := q.SetSize(3); err != nil {
		t.Errorf("packed SetSize(3): %v", err)
	}
	if q.SetSize(0) == nil {
		t.Error("packed SetSize(0) accepted")
	}
}

func TestResetAndReadyGuards(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: allRing})
	q := d.MustQueue(t)
	if q.SetSize(4) == nil || q.SetAddrs(0, 0, 0) == nil || q.SetFeatures(0) == nil || q.SetNextAvail(1) == nil {
		t.Fatal("ready queue accepted reconfiguration")
	}
	d.Add(qt.W(4))
	d.Kick()
	var c queue.Chain
	mustPop(t, q, &c)
	if q.NextAvail() != 1 {
		t.Fatalf("NextAvail %d", q.NextAvail())
	}
	q.Reset()
	if q.Ready() || q.Size() != 8 || q.EventIdx() || q.IndirectDesc() || q.NextAvail() != 0 {
		t.Fatal("Reset left state behind")
	}
	if ok, err := q.Pop(&c); ok || err != queue.ErrNotReady {
		t.Fatalf("Pop after reset: %v %v", ok, err)
	}
	q.Push(0, 0) // must not panic
	if q.Publish() || q.NeedsInterrupt() || q.EnableNotifications() {
		t.Fatal("reset queue reports activity")
	}
	q.DisableNotifications()
	if q.Undo(1) != 0 {
		t.Fatal("undo on reset queue")
	}
	if _, err := q.Available(); err != queue.ErrNotReady {
		t.Fatal(err)
	}
	// A fresh driver session on the same queue.
	d2 := qt.MustNew(t, qt.Config{Size: 8})
	if err := d2.Configure(q); err != nil {
		t.Fatal(err)
	}
	d2.Add(qt.R([]byte("again")))
	d2.Kick()
	mustPop(t, q, &c)
	if c.ReadLen != 5 {
		t.Fatalf("chain after reset %+v", c)
	}
}

// TestAllocationFree: pop, walk, iovecs, push, publish, interrupt and
// notification decisions allocate nothing per chain, on split and
// packed rings.
func TestAllocationFree(t *testing.T) {
	for _, tc := range []struct {
		name     string
		indirect bool
		segs     int
		cached   bool
	}{
		{"direct-1", false, 1, false},
		{"direct-17", false, 17, false},
		{"indirect-1", true, 1, false},
		{"indirect-17", true, 17, false},
		{"direct-17-cached", false, 17, true},
		{"indirect-17-cached", true, 17, true},
	} {
		for _, packed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/packed=%v", tc.name, packed), func(t *testing.T) {
				r := benchSetup(t, tc.indirect, tc.segs)
				if packed {
					r = benchPackedSetup(t, tc.indirect, tc.segs, 1)
				}
				q, id := r.q, r.ids[0]
				var c queue.Chain
				allocs := testing.AllocsPerRun(1000, func() {
					r.post(id)
					r.kick()
					cp := &c
					if tc.cached {
						cp, _ = q.PopCached()
					} else if ok, err := q.Pop(cp); !ok || err != nil {
						t.Fatal(err)
					}
					if cp == nil || cp.Head != id {
						t.Fatal("nothing popped")
					}
					_ = cp.WritableIovecs()
					_ = cp.ReadableIovecs()
					q.Push(cp.Head, cp.WriteLen)
					q.Publish()
					q.NeedsInterrupt()
					q.EnableNotifications()
				})
				if allocs != 0 {
					t.Fatalf("%v allocations per chain", allocs)
				}
				if s := q.Stats(); s.Chains < 1000 || s.Broken != 0 || s.Malformed != 0 {
					t.Fatalf("stats %+v", s)
				}
			})
		}
	}
}

// TestRingWordAtRAMEdge puts the available ring at the very end of a RAM
// region whose size is 2 mod 4, so used_event's containing 32-bit word
// runs past the end and the fenced fallback accessor is used; event-index
// interrupts must still work.
func TestRingWordAtRAMEdge(t *testing.T) {
	const base = 1 << 20
	const size = 8
	end := uint64(base + 0xfffe)
	avail := end - queue.AvailRingBytes(size)
	d := qt.MustNew(t, qt.Config{Size: size, Features: qt.FeatureEventIdx, MemSize: 0xfffe,
		DescAddr: base, UsedAddr: base + 0x200, AvailAddr: avail, DataAddr: base + 0x1000})
	if avail%4 != 0 {
		t.Fatalf("layout: avail %#x", avail)
	}
	if h, err := d.Mem.AtomicU16(avail + 4 + 2*size); err != nil || h.Atomic() {
		t.Fatalf("used_event word should use the fallback: %v", err)
	}
	q := d.MustQueue(t)
	d.SetUsedEvent(1)
	d.Add(qt.W(4))
	d.Kick()
	popPushAll(t, q)
	if q.NeedsInterrupt() {
		t.Fatal("interrupt before used_event")
	}
	d.Add(qt.W(4))
	d.Kick()
	popPushAll(t, q)
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt at used_event")
	}
}

// TestAtomicWordsInRings checks that a normal layout gets real atomics on
// every shared word (not the fenced fallback).
func TestAtomicWordsInRings(t *testing.T) {
	buf := make([]byte, 0x1000)
	m, _ := mem.FromRegions(mem.NewRegion(0, buf))
	for _, a := range []uint64{0x200, 0x202, 0x204 + 16, 0x400, 0x402, 0x404 + 64} {
		h, err := m.AtomicU16(a)
		if err != nil || !h.Atomic() {
			t.Fatalf("%#x: %v atomic=%v", a, err, h.Atomic())
		}
	}
}
