package transport

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type countTrigger struct{ n atomic.Uint64 }

func (c *countTrigger) Trigger() error { c.n.Add(1); return nil }

func TestEdgeISRFiresOnNewBits(t *testing.T) {
	trig := &countTrigger{}
	isr := NewEdgeISR(trig)
	for _, step := range []struct {
		raise, ack uint32
		edges      uint64
	}{
		{raise: ISRQueue, edges: 1},
		{raise: ISRQueue, edges: 1},  // already set
		{raise: ISRConfig, edges: 2}, // new bit
		{ack: ISRQueue, edges: 2},
		{raise: ISRQueue | ISRConfig, edges: 3}, // queue bit is new
		{ack: ISRQueue | ISRConfig, edges: 3},
	} {
		if step.raise != 0 {
			isr.Raise(step.raise)
		}
		if step.ack != 0 {
			isr.Ack(step.ack)
		}
		if got := trig.n.Load(); got != step.edges {
			t.Fatalf("after %+v: %d edges", step, got)
		}
	}
	if isr.Load() != 0 || isr.ReadAndClear() != 0 {
		t.Fatal("bits left")
	}
	isr.Raise(ISRQueue)
	isr.Clear()
	if isr.Load() != 0 || isr.Refresh() != nil {
		t.Fatal("Clear or Refresh")
	}
}

type levelRec struct {
	mu    sync.Mutex
	level bool
	calls int
}

func (l *levelRec) set(high bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.level = high
	l.calls++
	return nil
}

func TestLevelISRFollowsBits(t *testing.T) {
	l := &levelRec{}
	isr := NewLevelISR(l.set)
	isr.Raise(ISRQueue)
	isr.Raise(ISRConfig)
	if !l.level || l.calls != 1 {
		t.Fatalf("level %v after %d calls", l.level, l.calls)
	}
	isr.Ack(ISRQueue)
	if !l.level {
		t.Fatal("dropped with a bit set")
	}
	if v := isr.ReadAndClear(); v != ISRConfig || l.level {
		t.Fatalf("read %#x level %v", v, l.level)
	}
	isr.Refresh()
	if l.calls != 3 || l.level {
		t.Fatalf("refresh: %d calls level %v", l.calls, l.level)
	}
}

// TestLevelISRRace: concurrent raises and acknowledgements never leave
// the line out of step with the bits.
func TestLevelISRRace(t *testing.T) {
	l := &levelRec{}
	isr := NewLevelISR(l.set)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				isr.Raise(1 << (g % 2))
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		isr.Ack(ISRQueue | ISRConfig)
	}
	wg.Wait()
	if l.level != (isr.Load() != 0) {
		t.Fatalf("line %v with bits %#x", l.level, isr.Load())
	}
}

func TestKickEventfd(t *testing.T) {
	k, err := newKick("test")
	if err != nil {
		t.Fatal(err)
	}
	defer k.f.Close()
	for i := 0; i < 3; i++ {
		if err := k.signal(); err != nil {
			t.Fatal(err)
		}
	}
	var b [8]byte
	k.f.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := k.f.Read(b[:]); err != nil || n != 8 || b[0] != 3 {
		t.Fatalf("read %d %v %v", n, err, b)
	}
	// Non-blocking: a read with nothing pending times out in the poller
	// instead of blocking the thread.
	k.f.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := k.f.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("empty read: %v", err)
	}
	var got int
	if err := ControlFD(k.f, func(fd int) error { got = fd; return nil }); err != nil || got <= 0 {
		t.Fatalf("ControlFD %d %v", got, err)
	}
}
