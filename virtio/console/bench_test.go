package console

import (
	"fmt"
	"io"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// The transmit benchmark measures the device's work per chain (ns/op,
// B/op and allocs/op are per chain): the engine is driven synchronously,
// the guest re-posts the same chains, and the writer is io.Discard, so
// the numbers are the engine and the device without the host's Write.
const benchBatch = 32

// txRig posts benchBatch chains of size bytes in segs buffers and returns
// the engine and a step that completes them all and re-posts them.
func txRig(tb testing.TB, size, segs int) (*syncQueue, func() int) {
	tb.Helper()
	d, err := New(Options{Out: io.Discard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	s := newSync(tb, d, TransmitQueue, 256, 4<<20)
	for range benchBatch {
		bufs := make([]qt.Buf, segs)
		for i := range bufs {
			bufs[i] = qt.R(pattern(size / segs))
		}
		if _, err := s.drv.Add(bufs...); err != nil {
			tb.Fatal(err)
		}
	}
	s.drv.Kick()
	return s, s.repost
}

// repost runs the engine once and re-posts every chain it returned; it
// reports how many.
func (s *syncQueue) repost() int {
	s.step()
	return virtiotest.Recycle(s.drv)
}

// runChains warms step up and times it over b.N chains of size bytes.
func runChains(b *testing.B, step func() int, size int) {
	virtiotest.RunBatches(b, int64(size), 10, func(int) int { return step() })
}

var txCases = []struct {
	name       string
	size, segs int
}{{"1B", 1, 1}, {"128B", 128, 1}, {"4KiB-4seg", 4096, 4}}

func BenchmarkTransmit(b *testing.B) {
	for _, c := range txCases {
		b.Run(c.name, func(b *testing.B) {
			_, step := txRig(b, c.size, c.segs)
			runChains(b, step, c.size)
		})
	}
}

// TestNoAllocPerTransmitChain: after warm-up, transmitting chains of every
// benchmark shape allocates nothing.
func TestNoAllocPerTransmitChain(t *testing.T) {
	for _, c := range txCases {
		s, step := txRig(t, c.size, c.segs)
		virtiotest.NoAllocs(t, c.name, benchBatch, step)
		if st := s.d.Stats(); st.OutBytes == 0 || st.WriteErrors != 0 {
			t.Errorf("%s: stats %+v", c.name, st)
		}
	}
}

// rxRig posts benchBatch receive chains of size bytes and returns a step
// that makes benchBatch*size bytes of input pending (as the reader
// would), lets the engine fill every chain, and re-posts them.
func rxRig(tb testing.TB, size int) (*syncQueue, func() int) {
	tb.Helper()
	d, err := New(Options{InputBuffer: benchBatch * size})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	s := newSync(tb, d, ReceiveQueue, 256, 4<<20)
	for range benchBatch {
		if _, err := s.drv.Add(qt.W(uint32(size))); err != nil {
			tb.Fatal(err)
		}
	}
	s.drv.Kick()
	input := pattern(benchBatch * size)
	return s, func() int { s.fill(input); return s.repost() }
}

var rxSizes = []int{1, 128, 4096}

func BenchmarkReceive(b *testing.B) {
	for _, size := range rxSizes {
		b.Run(fmt.Sprint(size, "B"), func(b *testing.B) {
			_, step := rxRig(b, size)
			runChains(b, step, size)
		})
	}
}

// TestNoAllocPerReceiveChain: after warm-up, filling receive chains
// allocates nothing, and every chain is filled whole.
func TestNoAllocPerReceiveChain(t *testing.T) {
	for _, size := range rxSizes {
		s, step := rxRig(t, size)
		virtiotest.NoAllocs(t, fmt.Sprint(size, " B"), benchBatch, step)
		if st := s.d.Stats(); st.InBytes != 24*benchBatch*uint64(size) { // 3 warm-up steps, 21 measured
			t.Errorf("%d B: stats %+v", size, st)
		}
	}
}
