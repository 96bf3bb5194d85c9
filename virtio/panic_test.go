package virtio_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// panicky is a handler with a bug: its first chain panics (a nil map
// write, as a real bug would), and its Event panics once the queue broke.
type panicky struct {
	echo
	broken bool
}

func (h *panicky) Chain(c *queue.Chain) virtio.Result {
	var m map[int]int
	m[1]++ // a bug: assignment to a nil map
	return virtio.Result{Do: virtio.Done}
}

func (h *panicky) Event(e virtio.Event) {
	if e == virtio.EventBroken {
		h.broken = true
	}
	if h.broken && e == virtio.EventPublished {
		panic("event after a panic")
	}
	h.echo.Event(e)
}

// faultIRQ is an Interrupt that records the reason of Fault.
type faultIRQ struct {
	*virtiotest.Interrupt
	mu     sync.Mutex
	reason string
}

func (f *faultIRQ) Fault(reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reason = reason
	return nil
}

func (f *faultIRQ) got() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reason
}

// TestEnginePanicBreaksOnlyTheQueue (issue 13 finding 11): a panic in a
// device's handler on the engine's goroutine (net RX/TX/ctrl, blk,
// console... all run there) must not end the process: the queue breaks,
// the transport hears why (FaultReporter, with the stack) or gets
// NeedsReset, and the engine still stops at the reset.
func TestEnginePanicBreaksOnlyTheQueue(t *testing.T) {
	for _, reporter := range []bool{true, false} {
		h := &panicky{}
		r := newRig(t, h, 0, 1)
		var fi *faultIRQ
		if reporter {
			fi = &faultIRQ{Interrupt: r.irq}
			r.eng.Bind(virtio.EngineConfig{Handler: h, Queue: virtio.Queue{Ring: r.q, Kick: r.kr}, IRQ: fi,
				Stopping: &r.stopping, Stop: r.stop, Batch: 1})
		}
		r.start()
		r.kick(t)
		deadline := time.Now().Add(5 * time.Second)
		for r.eng.Status.Load().Activity != virtio.ActivityBroken {
			if time.Now().After(deadline) {
				t.Fatalf("reporter %v: engine %v after a handler panic", reporter, r.eng.Status.Load().Activity)
			}
			time.Sleep(time.Millisecond)
		}
		if reporter {
			if why := fi.got(); !strings.Contains(why, "device panic") || !strings.Contains(why, "nil map") || !strings.Contains(why, "panic_test.go") {
				t.Fatalf("fault reason %q", why)
			}
		} else if !r.irq.NeedsResetRequested() {
			t.Fatal("no NeedsReset after a handler panic")
		}
		r.close(t)
	}
}
