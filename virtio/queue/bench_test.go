package queue_test

import (
	"fmt"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// benchSetup builds a 256-entry queue with one chain of segs buffers
// added (direct or through an indirect table) and returns its head, which
// the benchmark re-posts over and over as a driver recycling its buffers
// would. One segment is an RX-style writable 1526-byte buffer; more are a
// TX-style 12-byte header plus segs-1 readable 4 KiB fragments.
func benchSetup(tb testing.TB, indirect bool, segs int) (*qt.Driver, *queue.Queue, uint16) {
	d := qt.MustNew(tb, qt.Config{Size: 256, Features: allRing})
	q := d.MustQueue(tb)
	var bufs []qt.Buf
	if segs == 1 {
		bufs = []qt.Buf{qt.W(1526)}
	} else {
		bufs = append(bufs, qt.Buf{Len: 12})
		for range segs - 1 {
			bufs = append(bufs, qt.Buf{Len: 4096})
		}
	}
	add := d.Add
	if indirect {
		add = d.AddIndirect
	}
	head, err := add(bufs...)
	if err != nil {
		tb.Fatal(err)
	}
	// Warm up: grow the chain's slices once.
	var c queue.Chain
	d.Kick()
	if ok, err := q.Pop(&c); !ok || err != nil {
		tb.Fatal(err)
	}
	q.Push(c.Head, 0)
	q.Publish()
	return d, q, head
}

// BenchmarkPopWalkPush is the per-chain device cost: pop, walk, build the
// iovec array, push, publish, decide on the interrupt (plus the mock
// driver's re-post and kick). It must report 0 allocs/op.
func BenchmarkPopWalkPush(b *testing.B) {
	for _, indirect := range []bool{false, true} {
		for _, segs := range []int{1, 17} {
			kind := "direct"
			if indirect {
				kind = "indirect"
			}
			b.Run(fmt.Sprintf("%s-%dseg", kind, segs), func(b *testing.B) {
				d, q, head := benchSetup(b, indirect, segs)
				var c queue.Chain
				b.ReportAllocs()
				for b.Loop() {
					d.AddHead(head)
					d.Kick()
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
			})
		}
	}
}

// BenchmarkPopWalkPushBatch amortises the index loads and the used.idx
// publish over 128 chains, as a busy device loop does. ns/op is per chain.
func BenchmarkPopWalkPushBatch(b *testing.B) {
	for _, indirect := range []bool{false, true} {
		for _, segs := range []int{1, 17} {
			kind := "direct"
			if indirect {
				kind = "indirect"
			}
			b.Run(fmt.Sprintf("%s-%dseg", kind, segs), func(b *testing.B) {
				d, q, head := benchSetup(b, indirect, segs)
				const batch = 128
				b.ReportAllocs()
				for i := 0; i < b.N; i += batch {
					n := min(batch, b.N-i)
					for range n {
						d.AddHead(head)
					}
					d.Kick()
					for range n {
						if c, err := q.PopCached(); c == nil || err != nil {
							b.Fatal(err)
						}
						q.Push(head, 0)
					}
					q.Publish()
					q.NeedsInterrupt()
				}
			})
		}
	}
}
