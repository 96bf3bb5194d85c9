package console

import (
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/virtiotest"
)

// panicReader is an input Reader with a bug: its first Read returns
// bytes, its second panics.
type panicReader struct{ reads int }

func (r *panicReader) Read(p []byte) (int, error) {
	if r.reads++; r.reads == 1 {
		return copy(p, "typed"), nil
	}
	var m map[int]int
	m[1]++ // a bug: assignment to a nil map
	return 0, nil
}

// TestInputPanicIsContained (issue 13 finding 11): a panic on the input
// reader's goroutine ends the console's input, not the process: the
// bytes read before it still reach the guest, the device asks for
// DEVICE_NEEDS_RESET with the reason, the receive engine is not left
// waiting on a locked buffer, later activations are refused, and Close
// returns.
func TestInputPanicIsContained(t *testing.T) {
	r := newRig(t, Options{In: &panicReader{}})
	if got := string(r.recv(5, 64)); got != "typed" {
		t.Fatalf("guest got %q before the panic, want %q", got, "typed")
	}
	irq := r.h.IRQ
	if !irq.Wait(5*time.Second, irq.NeedsResetRequested) {
		t.Fatal("no NeedsReset after a panic in the input reader")
	}
	if f := r.dev.guard.Fault(); !strings.Contains(f, "console input: device panic: assignment to entry in nil map") {
		t.Fatalf("fault %q", f)
	}
	r.h.Close()
	if _, err := virtiotest.Activate(r.dev, fAll, virtiotest.Options{}); err == nil || !strings.Contains(err.Error(), "console input") {
		t.Fatalf("Activate after the panic: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.dev.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs after a contained panic")
	}
}
