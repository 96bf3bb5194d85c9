package virtio_test

import (
	"sync"
	"testing"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// TestEngineStatus packs and unpacks every field: the activity, both
// indices at their extremes, and the transition count.
func TestEngineStatus(t *testing.T) {
	var e virtio.EngineStatus
	if s := e.Load(); s != (virtio.EngineState{}) || s.Activity.String() != "inactive" {
		t.Fatalf("zero value: %+v %v", s, s.Activity)
	}
	d := qt.MustNew(t, qt.Config{Size: 8})
	d.Resume(0xffff, 0x8001)
	q, err := queue.New(8)
	if err != nil {
		t.Fatal(err)
	}
	q.SetNextAvail(0xffff)
	q.SetNextUsed(0x8001)
	if err := d.Configure(q); err != nil {
		t.Fatal(err)
	}
	e.Set(virtio.ActivityWaitKick, q)
	want := virtio.EngineState{Activity: virtio.ActivityWaitKick, NextAvail: 0xffff, NextUsed: 0x8001, Transitions: 1}
	if s := e.Load(); s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	e.Set(virtio.ActivityStopped, nil)
	if s := e.Load(); s != (virtio.EngineState{Activity: virtio.ActivityStopped, Transitions: 2}) {
		t.Fatalf("nil queue: %+v", s)
	}
}

func TestActivityNames(t *testing.T) {
	seen := map[string]bool{}
	for a := virtio.ActivityInactive; a <= virtio.ActivityStopped; a++ {
		n := a.String()
		if n == "" || seen[n] {
			t.Fatalf("activity %d: name %q", a, n)
		}
		seen[n] = true
	}
	if virtio.ActivityWaitKick.String() != "waiting-kick" || virtio.ActivityWaitReadable.String() != "waiting-readable" ||
		virtio.Activity(200).String() != "activity-200" {
		t.Fatal("names")
	}
}

// TestEngineStatusConcurrent: one goroutine records, another reads (run
// with -race).
func TestEngineStatusConcurrent(t *testing.T) {
	var e virtio.EngineStatus
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 10000 {
			e.Set(virtio.ActivityRunning, nil)
			e.Set(virtio.ActivityWaitKick, nil)
		}
	}()
	for range 10000 {
		if a := e.Load().Activity; a > virtio.ActivityWaitKick {
			t.Fatalf("torn read: %v", a)
		}
	}
	wg.Wait()
}

func TestEngineStatusSetDoesNotAllocate(t *testing.T) {
	var e virtio.EngineStatus
	q, _ := queue.New(8)
	if n := testing.AllocsPerRun(100, func() { e.Set(virtio.ActivityWaitReadable, q) }); n != 0 {
		t.Fatalf("%v allocations per Set", n)
	}
}

// BenchmarkEngineStatusSet is the cost an engine pays per wait
// transition (twice per wait: entering and leaving it).
func BenchmarkEngineStatusSet(b *testing.B) {
	var e virtio.EngineStatus
	d := qt.MustNew(b, qt.Config{Size: 8})
	q, _ := queue.New(8)
	if err := d.Configure(q); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Set(virtio.Activity(i&3), q)
	}
}
