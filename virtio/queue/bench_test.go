package queue_test

import (
	"fmt"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// benchRing is a device-side queue with buffers added by a driver double
// that re-posts them over and over, as a driver recycling its buffers
// would: a split ring re-posting one head (ids[0]) into its avail ring
// and kicking, or a packed ring re-posting buffer ids (distinct: a packed
// driver never has one id in flight twice).
type benchRing struct {
	q    *queue.Queue
	ids  []uint16
	post func(id uint16) // make buffer id available again
	kick func()          // publish what post made available
}

// benchSetup builds a 256-entry split queue with one chain of segs
// buffers added (direct or through an indirect table) and popped and
// pushed once to warm up.
func benchSetup(tb testing.TB, indirect bool, segs int) benchRing {
	return benchSplitSetup(tb, indirect, segs, 1)
}

// benchSplitSetup is benchSetup with n chains (distinct heads) in a ring
// of at least 256 entries that holds them all.
func benchSplitSetup(tb testing.TB, indirect bool, segs, n int) benchRing {
	size := uint16(256)
	for int(size) < n*segs {
		size *= 2
	}
	d := qt.MustNew(tb, qt.Config{Size: size, Features: allRing, DataSize: 64 << 20})
	add := d.Add
	if indirect {
		add = d.AddIndirect
	}
	r := benchRing{q: d.MustQueue(tb), post: d.AddHead, kick: func() { d.Kick() }}
	return r.warm(tb, add, segs, n, d.Kick)
}

// benchPackedSetup is benchSetup for a packed ring of the same features
// with n buffers (n*segs slots at least 256).
func benchPackedSetup(tb testing.TB, indirect bool, segs, n int) benchRing {
	d := qt.MustNewPacked(tb, qt.Config{Size: uint16(max(256, n*segs)), Features: allRing, DataSize: 64 << 20})
	add := d.Add
	if indirect {
		add = d.AddIndirect
	}
	r := benchRing{q: d.MustQueue(tb), post: d.Repost, kick: func() {}}
	return r.warm(tb, add, segs, n, d.Kick)
}

func (r benchRing) warm(tb testing.TB, add func(...qt.Buf) (uint16, error), segs, n int, kick func() bool) benchRing {
	for range n {
		id, err := add(benchBufs(segs)...)
		if err != nil {
			tb.Fatal(err)
		}
		r.ids = append(r.ids, id)
	}
	kick()
	for range n {
		if c, err := r.q.PopCached(); c == nil || err != nil {
			tb.Fatal(err)
		}
	}
	for _, id := range r.ids {
		r.q.Push(id, 0)
	}
	r.q.Publish()
	return r
}

// benchBufs is the benchmarks' buffer shape: one segment is an RX-style
// writable 1526-byte buffer; more are a TX-style 12-byte header plus
// segs-1 readable 4 KiB fragments.
func benchBufs(segs int) []qt.Buf {
	if segs == 1 {
		return []qt.Buf{qt.W(1526)}
	}
	bufs := []qt.Buf{{Len: 12}}
	for range segs - 1 {
		bufs = append(bufs, qt.Buf{Len: 4096})
	}
	return bufs
}

// benchKinds runs f for direct and indirect chains of 1 and 17 buffers.
func benchKinds(b *testing.B, f func(b *testing.B, indirect bool, segs int)) {
	for _, indirect := range []bool{false, true} {
		for _, segs := range []int{1, 17} {
			kind := "direct"
			if indirect {
				kind = "indirect"
			}
			b.Run(fmt.Sprintf("%s-%dseg", kind, segs), func(b *testing.B) { f(b, indirect, segs) })
		}
	}
}

// popWalkPush is the per-chain device cost: pop, walk, build the iovec
// array, push, publish, decide on the interrupt (plus the mock driver's
// re-post and kick). It must report 0 allocs/op.
func popWalkPush(b *testing.B, r benchRing, segs int) {
	var c queue.Chain
	q, id := r.q, r.ids[0]
	b.ReportAllocs()
	for b.Loop() {
		r.post(id)
		r.kick()
		if ok, err := q.Pop(&c); !ok || err != nil {
			b.Fatal(err)
		}
		iov := c.ReadableIovecs()
		if segs == 1 {
			iov = c.WritableIovecs()
		}
		_ = iov
		q.Push(c.Head, c.WriteLen)
		q.Publish()
		q.NeedsInterrupt()
	}
}

// popWalkPushBatch amortises the index loads and the used publish over
// 128 chains, as a busy device loop does. ns/op is per chain.
func popWalkPushBatch(b *testing.B, r benchRing) {
	const batch = 128
	q := r.q
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for k := range n {
			r.post(r.ids[k%len(r.ids)])
		}
		r.kick()
		for range n {
			if c, err := q.PopCached(); c == nil || err != nil {
				b.Fatal(err)
			}
		}
		for k := range n {
			q.Push(r.ids[k%len(r.ids)], 0)
		}
		q.Publish()
		q.NeedsInterrupt()
	}
}

// BenchmarkPopWalkPush: see popWalkPush (split ring).
func BenchmarkPopWalkPush(b *testing.B) {
	benchKinds(b, func(b *testing.B, indirect bool, segs int) {
		popWalkPush(b, benchSetup(b, indirect, segs), segs)
	})
}

// BenchmarkPackedPopWalkPush is BenchmarkPopWalkPush on a packed ring.
func BenchmarkPackedPopWalkPush(b *testing.B) {
	benchKinds(b, func(b *testing.B, indirect bool, segs int) {
		popWalkPush(b, benchPackedSetup(b, indirect, segs, 1), segs)
	})
}

// BenchmarkPopWalkPushBatch: see popWalkPushBatch (split ring, one head
// posted 128 times).
func BenchmarkPopWalkPushBatch(b *testing.B) {
	benchKinds(b, func(b *testing.B, indirect bool, segs int) {
		popWalkPushBatch(b, benchSetup(b, indirect, segs))
	})
}

// BenchmarkPopWalkPushBatchDistinct is BenchmarkPopWalkPushBatch with
// 128 distinct heads, as a driver keeps that many buffers in flight and
// as the packed benchmark must: the fair split-ring figure to hold
// BenchmarkPackedPopWalkPushBatch against (the one-head benchmark walks
// the same descriptors and buffers, always in cache).
func BenchmarkPopWalkPushBatchDistinct(b *testing.B) {
	benchKinds(b, func(b *testing.B, indirect bool, segs int) {
		popWalkPushBatch(b, benchSplitSetup(b, indirect, segs, 128))
	})
}

// BenchmarkPackedPopWalkPushBatch is BenchmarkPopWalkPushBatch on a
// packed ring (128 buffers of distinct ids).
func BenchmarkPackedPopWalkPushBatch(b *testing.B) {
	benchKinds(b, func(b *testing.B, indirect bool, segs int) {
		popWalkPushBatch(b, benchPackedSetup(b, indirect, segs, 128))
	})
}

// popUndo is the device's pop and walk alone, without the driver
// double's re-post: each chain is popped and given back with Undo, so
// the same buffer is walked again (its descriptors stay in cache, on
// both formats alike). It must report 0 allocs/op.
func popUndo(b *testing.B, r benchRing) {
	var c queue.Chain
	q, id := r.q, r.ids[0]
	r.post(id)
	r.kick()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := q.Pop(&c); !ok || err != nil {
			b.Fatal(err)
		}
		if q.Undo(1) != 1 {
			b.Fatal("undo refused")
		}
	}
}

// BenchmarkPopUndo runs popUndo on a split and a packed ring of the same
// shapes: the per-descriptor cost of the two walks side by side.
func BenchmarkPopUndo(b *testing.B) {
	for _, packed := range []bool{false, true} {
		name := map[bool]string{false: "split", true: "packed"}[packed]
		b.Run(name, func(b *testing.B) {
			benchKinds(b, func(b *testing.B, indirect bool, segs int) {
				if packed {
					popUndo(b, benchPackedSetup(b, indirect, segs, 1))
				} else {
					popUndo(b, benchSetup(b, indirect, segs))
				}
			})
		})
	}
}
