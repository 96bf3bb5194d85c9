package blk

import (
	"testing"

	"github.com/flintvm/flint/ratelimit"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// Benchmarks measure the device's work per request (ns/op, B/op and
// allocs/op are per request): the engine is driven synchronously (see
// syncEngine), the guest only re-posts the same chains, and the image is a
// page-cached temp file, so the numbers are the device plus one
// preadv/pwritev.

const benchBatch = 32

type benchCase struct {
	name     string
	typ      uint32
	size     int
	split    []int
	indirect bool
}

var benchCases = []benchCase{
	{"read-4KiB", TypeIn, 4096, nil, false},
	{"write-4KiB", TypeOut, 4096, nil, false},
	{"read-64KiB-16seg-indirect", TypeIn, 64 << 10, repeat(4096, 15), true},
	{"write-64KiB-16seg-indirect", TypeOut, 64 << 10, repeat(4096, 15), true},
	{"flush", TypeFlush, 0, nil, false},
}

func repeat(n, k int) []int {
	s := make([]int, k)
	for i := range s {
		s[i] = n
	}
	return s
}

// benchRig posts benchBatch requests of bc and returns the engine and a
// step that completes them all and re-posts them.
func benchRig(tb testing.TB, bc benchCase, opts Options) (*syncEngine, func() int) {
	tb.Helper()
	d, err := Open(image(tb, 8192), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	s := newSync(tb, d, fIndir|fEvent, 256, 8<<20)
	l := layout{split: bc.split, indirect: bc.indirect}
	for i := range benchBatch {
		var bufs []qt.Buf
		switch bc.typ {
		case TypeIn:
			bufs = inBufs(l, uint64(i*(bc.size/SectorSize)), bc.size)
		case TypeOut:
			bufs = outBufs(l, uint64(i*(bc.size/SectorSize)), make([]byte, bc.size))
		default:
			bufs = []qt.Buf{qt.R(hdr(bc.typ, 0)), qt.W(1)}
		}
		add := s.drv.Add
		if bc.indirect {
			add = s.drv.AddIndirect
		}
		if _, err := add(bufs...); err != nil {
			tb.Fatal(err)
		}
	}
	s.drv.Kick()
	return s, func() int { s.round(); return virtiotest.Recycle(s.drv) }
}

func BenchmarkRequest(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			s, step := benchRig(b, bc, Options{Writeback: false})
			virtiotest.RunBatches(b, int64(bc.size), 10, func(int) int { return step() })
			if st := s.d.Stats(); st.IOErrors != 0 || st.BadChains != 0 {
				b.Fatalf("errors: %+v", st)
			}
		})
	}
}

// TestNoAllocPerRequest: after warm-up, completing requests of every
// benchmark shape, rate-limited or not, allocates nothing.
func TestNoAllocPerRequest(t *testing.T) {
	for _, bc := range benchCases {
		lim, _ := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.BucketConfig{Size: 1 << 40, RefillTime: 1}}, nil)
		s, step := benchRig(t, bc, Options{Limiter: lim})
		virtiotest.NoAllocs(t, bc.name, benchBatch, step)
		if st := s.d.Stats(); st.IOErrors != 0 || st.BadChains != 0 {
			t.Errorf("%s: errors %+v", bc.name, st)
		}
	}
}
