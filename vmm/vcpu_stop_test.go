package vmm

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestVCPUGroupRekicksAndReports: a vCPU that ignores its first kicks
// (a lost interrupt) is kicked again until it leaves, and reported once
// when it is still in after the wait; one that left at once is never
// kicked or reported.
func TestVCPUGroupRekicksAndReports(t *testing.T) {
	g := newVCPUGroup(2)
	var kicks [2]atomic.Int32
	release := make(chan struct{})
	g.run(0, func() {}) // leaves at the stop's own kick
	g.run(1, func() { <-release })
	var stuck []int
	waitFor := func(cond func() bool) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("timed out")
			}
		}
	}
	waitFor(func() bool { return g.left[0].Load() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.await(30*time.Millisecond, 5*time.Millisecond, func(i int) {
			if kicks[i].Add(1) == 10 {
				close(release) // the tenth kick gets through
			}
		}, func(i int, waited time.Duration) {
			if waited < 30*time.Millisecond {
				t.Errorf("vCPU %d reported stuck after %v, before the wait", i, waited)
			}
			stuck = append(stuck, i)
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("await did not return after the vCPU left")
	}
	if kicks[0].Load() != 0 {
		t.Errorf("vCPU 0 left at once but was kicked %d more times", kicks[0].Load())
	}
	if kicks[1].Load() != 10 {
		t.Errorf("vCPU 1 kicked %d times, want until it left (10)", kicks[1].Load())
	}
	if len(stuck) != 1 || stuck[0] != 1 {
		t.Errorf("reported stuck: %v, want vCPU 1 once", stuck)
	}
}

// TestVCPUGroupQuietWhenAllLeave: a stop every vCPU answers logs nothing
// and kicks nobody again.
func TestVCPUGroupQuietWhenAllLeave(t *testing.T) {
	g := newVCPUGroup(3)
	for i := range 3 {
		g.run(i, func() { time.Sleep(time.Millisecond) })
	}
	g.await(time.Millisecond, time.Hour, func(i int) { t.Errorf("vCPU %d kicked again", i) },
		func(i int, _ time.Duration) { t.Errorf("vCPU %d reported stuck", i) })
}
