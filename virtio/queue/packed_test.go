package queue_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

func packedPair(t testing.TB, cfg qt.Config) (*qt.PackedDriver, *queue.Queue) {
	t.Helper()
	d := qt.MustNewPacked(t, cfg)
	return d, d.MustQueue(t)
}

func TestPackedRoundTrip(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 8})
	id, err := d.Add(qt.R([]byte("hello")), qt.R([]byte(" world")), qt.W(16))
	if err != nil {
		t.Fatal(err)
	}
	var c queue.Chain
	if ok, err := q.Pop(&c); ok || err != nil {
		t.Fatalf("Pop before the head's flags are written = %v, %v", ok, err)
	}
	d.Kick()
	mustPop(t, q, &c)
	var got [11]byte
	if c.Head != id || c.ReadAt(got[:], 0) != 11 || string(got[:]) != "hello world" || c.WriteLen != 16 || c.Descs() != 3 {
		t.Fatalf("chain: head %d (want %d), %q, write %d, descs %d", c.Head, id, got, c.WriteLen, c.Descs())
	}
	c.WriteAt([]byte("ok"), 0)
	q.Push(c.Head, 2)
	if _, ok := d.Used(); ok {
		t.Fatal("used descriptor visible before Publish")
	}
	if !q.Publish() || q.Publish() {
		t.Fatal("Publish: want true then false")
	}
	u, ok := d.Used()
	if !ok || u.ID != uint32(id) || u.Len != 2 || string(d.Written(u)) != "ok" {
		t.Fatalf("used %+v %v", u, ok)
	}
	// Both positions moved three slots, wrap counter still 1.
	if q.NextAvail() != 0x8003 || q.NextUsed() != 0x8003 || d.UsedPos() != 0x8003 {
		t.Fatalf("positions avail %#x used %#x driver %#x", q.NextAvail(), q.NextUsed(), d.UsedPos())
	}
}

// TestPackedWrap runs chains of 1-3 descriptors through a ring of

// non-power-of-two size many times round, so chains span the wrap, with

// the wrap counters flipping on both sides, and completions out of order.

func TestPackedWrap(t *testing.T) {
	for _, size := range []uint16{1, 3, 5, 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			d, q := packedPair(t, qt.Config{Size: size})
			var cs [2]queue.Chain
			wraps := 0
			prev := q.NextAvail()
			for round := range 200 {
				k := 1 + round%3
				if k > int(size) {
					k = 1
				}
				var ids []uint16
				var want []string
				// Two buffers per round when they fit, completed in reverse.
				for j := range 2 {
					if k > d.FreeSlots() {
						break
					}
					bufs := make([]qt.Buf, k)
					msg := fmt.Sprintf("r%d.%d", round, j)
					bufs[0] = qt.R([]byte(msg))
					for b := 1; b < k; b++ {
						bufs[b] = qt.W(8)
					}
					id, err := d.Add(bufs...)
					if err != nil {
						t.Fatal(err)
					}
					ids, want = append(ids, id), append(want, msg)
				}
				d.Kick()
				for j := range ids {
					mustPop(t, q, &cs[j])
					got := make([]byte, len(want[j]))
					if cs[j].Head != ids[j] || cs[j].ReadAt(got, 0) != len(got) || string(got) != want[j] {
						t.Fatalf("round %d: chain %d head %d %q, want %d %q", round, j, cs[j].Head, got, ids[j], want[j])
					}
				}
				for j := len(ids) - 1; j >= 0; j-- {
					q.Push(cs[j].Head, uint32(j))
				}
				q.Publish()
				used := d.AllUsed()
				if len(used) != len(ids) {
					t.Fatalf("round %d: %d used, want %d", round, len(used), len(ids))
				}
				for j, u := range used {
					if want := ids[len(ids)-1-j]; u.ID != uint32(want) {
						t.Fatalf("round %d: used %d id %d, want %d", round, j, u.ID, want)
					}
				}
				if cur := q.NextAvail(); cur&0x8000 != prev&0x8000 {
					wraps++
				}
				prev = q.NextAvail()
				if q.NextAvail() != d.AvailPos() || q.NextUsed() != d.UsedPos() {
					t.Fatalf("round %d: device %#x/%#x driver %#x/%#x", round, q.NextAvail(), q.NextUsed(), d.AvailPos(), d.UsedPos())
				}
			}
			if wraps < 10 {
				t.Fatalf("only %d wraps", wraps)
			}
			if s := q.Stats(); s.Malformed != 0 || s.Broken != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestPackedIndirect(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 4, Features: qt.FeatureIndirectDesc})
	for round := range 10 { // indirect buffers take one slot: wraps often
		id, err := d.AddIndirect(qt.R([]byte("ab")), qt.R([]byte("cd")), qt.W(4), qt.W(4))
		if err != nil {
			t.Fatal(err)
		}
		d.Kick()
		c, err := q.PopCached()
		if err != nil || c == nil {
			t.Fatalf("round %d: PopCached = %v, %v", round, c, err)
		}
		var got [4]byte
		if c.Head != id || !c.Indirect || c.ReadAt(got[:], 0) != 4 || string(got[:]) != "abcd" || c.WriteLen != 8 || len(c.Writable) != 2 {
			t.Fatalf("round %d: chain %+v %q", round, c, got)
		}
		q.Push(c.Head, 8)
		q.Publish()
		if u, ok := d.Used(); !ok || u.ID != uint32(id) || u.Len != 8 {
			t.Fatalf("round %d: used %+v %v", round, u, ok)
		}
	}
	if q.NextUsed() != 0x8002 { // 10 slots in a ring of 4: two wraps, slot 2
		t.Fatalf("next used %#x", q.NextUsed())
	}
}

// TestPackedUndoAcrossWrap gives back chains whose slots span the wrap

// and pops them again.

func TestPackedUndoAcrossWrap(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 5})
	var c queue.Chain
	for range 4 { // move both sides to slot 4
		d.Add(qt.W(1))
		d.Kick()
		mustPop(t, q, &c)
		q.Push(c.Head, 0)
		q.Publish()
		d.AllUsed()
	}
	a, _ := d.Add(qt.R([]byte("A")), qt.W(1)) // slots 4, 0 (wrap)
	b, _ := d.Add(qt.R([]byte("B")), qt.W(1)) // slots 1, 2
	d.Kick()
	start := q.NextAvail()
	var ca, cb queue.Chain
	mustPop(t, q, &ca)
	mustPop(t, q, &cb)
	if q.NextAvail() != 0x0003 {
		t.Fatalf("after two pops next avail %#x, want 0x0003", q.NextAvail())
	}
	if n := q.Undo(1); n != 1 || q.NextAvail() != 0x0001 {
		t.Fatalf("Undo(1) = %d, next avail %#x", n, q.NextAvail())
	}
	if n := q.Undo(1); n != 1 || q.NextAvail() != start {
		t.Fatalf("Undo(1) = %d, next avail %#x want %#x", n, q.NextAvail(), start)
	}
	mustPop(t, q, &ca)
	mustPop(t, q, &cb)
	var x, y [1]byte
	ca.ReadAt(x[:], 0)
	cb.ReadAt(y[:], 0)
	if ca.Head != a || cb.Head != b || x[0] != 'A' || y[0] != 'B' {
		t.Fatalf("re-popped %d %q, %d %q", ca.Head, x, cb.Head, y)
	}
	q.Push(b, 1)
	q.Push(a, 1)
	q.Publish()
	if u := d.AllUsed(); len(u) != 2 || u[0].ID != uint32(b) || u[1].ID != uint32(a) {
		t.Fatalf("used %+v", u)
	}
}

func TestPackedMalformed(t *testing.T) {
	const size = 8
	outside := uint64(0x10) // below the fake RAM
	cases := []struct {
		name  string
		feats uint64
		add   func(d *qt.PackedDriver)
		want  queue.ChainError
	}{
		{"address", 0, func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: outside, Len: 16, ID: 3})
		}, queue.ErrBufferAddress},
		{"too long", 0, func(d *qt.PackedDriver) {
			a := d.Alloc(64)
			d.AddRaw(qt.PDesc{Addr: a, Len: 1, ID: 3, Flags: qt.DescNext},
				qt.PDesc{Addr: a, Len: 0xffffffff, ID: 3})
		}, queue.ErrChainTooLong},
		{"read after write", 0, func(d *qt.PackedDriver) {
			a := d.Alloc(64)
			d.AddRaw(qt.PDesc{Addr: a, Len: 8, ID: 3, Flags: qt.DescWrite | qt.DescNext},
				qt.PDesc{Addr: a, Len: 8, ID: 3})
		}, queue.ErrReadAfterWrite},
		{"indirect not negotiated", 0, func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: d.Alloc(16), Len: 16, ID: 3, Flags: qt.DescIndirect})
		}, queue.ErrIndirectNotNegotiated},
		{"next on indirect", qt.FeatureIndirectDesc, func(d *qt.PackedDriver) {
			t := d.Alloc(16)
			d.WriteTable(t, qt.PDesc{Addr: d.Alloc(8), Len: 8})
			d.AddRaw(qt.PDesc{Addr: t, Len: 16, ID: 3, Flags: qt.DescIndirect | qt.DescNext},
				qt.PDesc{Addr: d.Alloc(8), Len: 8, ID: 3})
		}, queue.ErrIndirectNext},
		{"indirect after a direct descriptor", qt.FeatureIndirectDesc, func(d *qt.PackedDriver) {
			t := d.Alloc(16)
			d.WriteTable(t, qt.PDesc{Addr: d.Alloc(8), Len: 8})
			d.AddRaw(qt.PDesc{Addr: d.Alloc(8), Len: 8, ID: 3, Flags: qt.DescNext},
				qt.PDesc{Addr: t, Len: 16, ID: 3, Flags: qt.DescIndirect})
		}, queue.ErrIndirectNext},
		{"indirect in indirect", qt.FeatureIndirectDesc, func(d *qt.PackedDriver) {
			t := d.Alloc(32)
			d.WriteTable(t, qt.PDesc{Addr: d.Alloc(8), Len: 8}, qt.PDesc{Addr: t, Len: 32, Flags: qt.DescIndirect})
			d.AddRaw(qt.PDesc{Addr: t, Len: 32, ID: 3, Flags: qt.DescIndirect})
		}, queue.ErrIndirectNested},
		{"indirect length", qt.FeatureIndirectDesc, func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: d.Alloc(32), Len: 20, ID: 3, Flags: qt.DescIndirect})
		}, queue.ErrIndirectLen},
		{"indirect table outside", qt.FeatureIndirectDesc, func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: outside, Len: 16, ID: 3, Flags: qt.DescIndirect})
		}, queue.ErrIndirectAddress},
		{"indirect buffer outside", qt.FeatureIndirectDesc, func(d *qt.PackedDriver) {
			t := d.Alloc(16)
			d.WriteTable(t, qt.PDesc{Addr: outside, Len: 8})
			d.AddRaw(qt.PDesc{Addr: t, Len: 16, ID: 3, Flags: qt.DescIndirect})
		}, queue.ErrBufferAddress},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, q := packedPair(t, qt.Config{Size: size, Features: tc.feats})
			tc.add(d)
			d.Kick()
			var c queue.Chain
			ok, err := q.Pop(&c)
			if ok || !errors.Is(err, queue.ErrMalformedChain) || err != tc.want {
				t.Fatalf("Pop = %v, %v; want %v", ok, err, tc.want)
			}
			if q.Broken() || q.Stats().ByReason[tc.want] != 1 {
				t.Fatalf("broken %v, stats %+v", q.Broken(), q.Stats())
			}
			q.Publish()
			u, got := d.Used()
			if !got || u.ID != 3 || u.Len != 0 {
				t.Fatalf("malformed buffer completed as %+v %v, want id 3 len 0", u, got)
			}
			// The queue keeps working, and the used position skipped
			// every slot of the malformed buffer.
			id, _ := d.Add(qt.R([]byte("z")))
			d.Kick()
			mustPop(t, q, &c)
			q.Push(c.Head, 0)
			q.Publish()
			if u, ok := d.Used(); !ok || u.ID != uint32(id) {
				t.Fatalf("after the malformed buffer: used %+v %v", u, ok)
			}
		})
	}
}

// TestPackedBroken: faults that leave no buffer boundary or id to

// complete break the queue (ErrBroken) until reset.

func TestPackedBroken(t *testing.T) {
	cases := []struct {
		name string
		add  func(d *qt.PackedDriver)
	}{
		{"id out of range", func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: d.Alloc(8), Len: 8, ID: 4})
		}},
		{"loop: NEXT through the whole ring", func(d *qt.PackedDriver) {
			descs := make([]qt.PDesc, 4)
			for i := range descs {
				descs[i] = qt.PDesc{Addr: d.Alloc(8), Len: 8, Flags: qt.DescNext}
			}
			d.AddRaw(descs...)
		}},
		{"NEXT into a slot not available", func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: d.Alloc(8), Len: 8, Flags: qt.DescNext},
				qt.PDesc{Addr: d.Alloc(8), Len: 8, Flags: qt.DescAvail | qt.DescUsed}) // XOR: AVAIL == USED
		}},
		{"id reused while in flight", func(d *qt.PackedDriver) {
			d.AddRaw(qt.PDesc{Addr: d.Alloc(8), Len: 8, ID: 1})
			d.AddRaw(qt.PDesc{Addr: d.Alloc(8), Len: 8, ID: 1})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, q := packedPair(t, qt.Config{Size: 4})
			tc.add(d)
			d.Kick()
			var c queue.Chain
			var err error
			for range 3 {
				if _, err = q.Pop(&c); err != nil {
					break
				}
			}
			if err != queue.ErrBroken || !q.Broken() || q.Stats().Broken != 1 {
				t.Fatalf("err %v, broken %v, stats %+v", err, q.Broken(), q.Stats())
			}
			if _, err := q.Pop(&c); err != queue.ErrBroken {
				t.Fatalf("Pop on a broken queue: %v", err)
			}
			if _, err := q.Available(); err != queue.ErrBroken {
				t.Fatalf("Available on a broken queue: %v", err)
			}
			q.Reset()
			if err := d.Configure(q); err != nil || q.Broken() {
				t.Fatalf("after reset: %v, broken %v", err, q.Broken())
			}
		})
	}
}

func TestPackedAvailableAndPushUnknown(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 6})
	d.Add(qt.R([]byte("a")), qt.W(2))
	d.Add(qt.R([]byte("b")))
	if n, err := q.Available(); n != 0 || err != nil {
		t.Fatalf("Available before kick = %d, %v", n, err)
	}
	d.Kick()
	if n, err := q.Available(); n != 2 || err != nil {
		t.Fatalf("Available = %d, %v", n, err)
	}
	q.Push(5, 9) // never popped: ignored, no used descriptor written
	if q.Publish() {
		t.Fatal("Publish after pushing an id not in flight")
	}
}

func TestPackedValidate(t *testing.T) {
	d := qt.MustNewPacked(t, qt.Config{Size: 6})
	cfg := d.Config()
	bad := []struct {
		name              string
		desc, drv, dev    uint64
		startAv, startUse uint16
	}{
		{"desc misaligned", cfg.DescAddr + 8, cfg.AvailAddr, cfg.UsedAddr, 0x8000, 0x8000},
		{"driver area misaligned", cfg.DescAddr, cfg.AvailAddr + 2, cfg.UsedAddr, 0x8000, 0x8000},
		{"device area outside", cfg.DescAddr, cfg.AvailAddr, 0x100, 0x8000, 0x8000},
		{"desc ring outside", 0x1000, cfg.AvailAddr, cfg.UsedAddr, 0x8000, 0x8000},
		{"avail slot past size", cfg.DescAddr, cfg.AvailAddr, cfg.UsedAddr, 0x8006, 0x8000},
		{"used slot past size", cfg.DescAddr, cfg.AvailAddr, cfg.UsedAddr, 0x8000, 6},
	}
	for _, tc := range bad {
		q, _ := queue.New(8)
		q.SetFeatures(qt.FeatureRingPacked)
		q.SetSize(6)
		q.SetAddrs(tc.desc, tc.drv, tc.dev)
		q.SetNextAvail(tc.startAv)
		q.SetNextUsed(tc.startUse)
		if err := q.Validate(d.Mem); err == nil || q.Ready() {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	q, _ := queue.New(8)
	q.SetFeatures(qt.FeatureRingPacked)
	if q.NextAvail() != 0x8000 || q.NextUsed() != 0x8000 {
		t.Fatalf("fresh packed queue at %#x/%#x, want wrap counter 1", q.NextAvail(), q.NextUsed())
	}
	if q.SetSize(9) == nil {
		t.Fatal("size above the maximum accepted")
	}
}

// TestPackedResume starts a packed queue where vhost-user's

// SET_VRING_BASE would: slot in bits 0-14, wrap counter in bit 15.

func TestPackedResume(t *testing.T) {
	d := qt.MustNewPacked(t, qt.Config{Size: 5})
	d.Resume(0x0004, 0x0004) // slot 4, wrap counter 0
	q, _ := queue.New(8)
	q.SetFeatures(qt.FeatureRingPacked)
	q.SetNextAvail(0x0004)
	q.SetNextUsed(0x0004)
	if err := d.Configure(q); err != nil {
		t.Fatal(err)
	}
	id, _ := d.Add(qt.R([]byte("r")), qt.W(1)) // slots 4 and 0 (wrap counter 1)
	d.Kick()
	var c queue.Chain
	mustPop(t, q, &c)
	q.Push(c.Head, 1)
	q.Publish()
	if u, ok := d.Used(); !ok || u.ID != uint32(id) || q.NextAvail() != 0x8001 || q.NextUsed() != 0x8001 {
		t.Fatalf("used %+v %v, positions %#x/%#x", u, ok, q.NextAvail(), q.NextUsed())
	}
}

// TestPackedRingState: a dump of a packed queue shows the two event

// suppression structures as the driver and the device wrote them.

// TestPackedDelayedCallbacks plays Linux's transmit pattern on a packed

// ring with EVENT_IDX: 18-descriptor chains until the ring is full, then

// virtqueue_enable_cb_delayed (off_wrap three quarters of the way into

// what is in flight, in slots, across the wrap) and a wait; the device

// completes in batches of random size, deciding on the interrupt after

// each Publish. The interrupt must come before the device has completed

// everything (no lost wakeup), and never before the used position has

// reached off_wrap (no spurious ones).

// TestPackedInterruptCountsPublishedOnly: a decision taken between Push

// and Publish sees nothing published and must not swallow the pushed

// slots: the decision after Publish still covers them.
