package virtiotest

// What every device's tests, benchmarks and fuzzers share besides the
// Harness: waiting for the device's goroutines, test data, queues for an
// engine driven without goroutines (Engine.Step), the benchmark loop and
// the zero-allocation check.

import (
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// WaitTimeout is how long WaitUntil waits.
const WaitTimeout = 10 * time.Second

// WaitUntil polls cond every 100 µs until it holds, and fails tb after
// WaitTimeout ("timed out waiting for " what).
func WaitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// Pattern returns n bytes whose values depend on their offset and on
// seed, so misplaced, reordered or lost bytes show.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>8) ^ seed
	}
	return b
}

// ReadFile returns the file at path, and fails tb if it cannot be read
// (a device's host side: an image, a shared file).
func ReadFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// SyncQueues negotiates acked with dev (it must include VERSION_1) and
// returns one guest driver per cfgs entry (their Features set to acked,
// sharing one fake guest memory), the device-side queues over them
// (without kick files) and an Interrupt for nqueues queues: what a
// device's Engines.Bind takes, for tests that drive its engines with
// Engine.Step on their own goroutine. A nil cfgs entry's queue is left
// disabled (Size 0).
func SyncQueues(tb testing.TB, dev virtio.Device, acked uint64, cfgs ...qt.Config) ([]*qt.Driver, []virtio.Queue, *Interrupt) {
	tb.Helper()
	if err := dev.AckFeatures(acked); err != nil {
		tb.Fatal(err)
	}
	var on []qt.Config
	for _, c := range cfgs {
		if c.Size != 0 {
			c.Features = acked
			on = append(on, c)
		}
	}
	set := qt.MustNewSet(tb, on...)
	drvs := make([]*qt.Driver, len(cfgs))
	queues := make([]virtio.Queue, len(cfgs))
	for i, c := range cfgs {
		if c.Size != 0 {
			drvs[i], set = set[0], set[1:]
			queues[i] = virtio.Queue{Ring: drvs[i].MustQueue(tb)}
		}
	}
	return drvs, queues, NewInterrupt(len(cfgs))
}

// Recycle makes every chain drv's device used available again as it was
// (AddHead), notifies (without a kick file: the caller steps the engine)
// and returns how many there were: a benchmark's guest, which submits
// the same requests over and over without allocating.
func Recycle(drv *qt.Driver) int {
	n := 0
	for {
		u, ok := drv.Used()
		if !ok {
			break
		}
		drv.AddHead(uint16(u.ID))
		n++
	}
	drv.Kick()
	return n
}

// RunBatches is a benchmark's loop over a device driven by step: it runs
// warmup steps, then steps until b.N operations are done, with bytes per
// operation for b.SetBytes and allocations reported. step gets the
// operations still to do (math.MaxInt while warming up; it may do fewer
// or, by a batch, more) and returns how many it did.
func RunBatches(b *testing.B, bytes int64, warmup int, step func(left int) int) {
	b.Helper()
	for range warmup {
		step(math.MaxInt)
	}
	b.SetBytes(bytes)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		done += step(b.N - done)
	}
	b.StopTimer()
}

// NoAllocs checks that step allocates nothing once warm (after 3 calls,
// over 20) and that each call does want operations; what names the
// case in the error.
func NoAllocs(t *testing.T, what string, want int, step func() int) {
	t.Helper()
	for range 3 {
		step()
	}
	lost := ""
	if a := testing.AllocsPerRun(20, func() {
		if n := step(); n != want && lost == "" {
			lost = fmt.Sprintf("%d operations, want %d", n, want)
		}
	}); a != 0 {
		t.Errorf("%s: %v allocations per batch of %d", what, a, want)
	}
	if lost != "" {
		t.Errorf("%s: %s", what, lost)
	}
}
