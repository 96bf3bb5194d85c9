package virtio_test

import (
	"strings"
	"testing"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// contained runs f on a goroutine guarded by g and waits for it.
func contained(g *virtio.Guard, what string, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer g.Recover(what)
		f()
	}()
	<-done
}

// TestGuardContainsGoroutinePanics: a panic on a guarded goroutine ends
// that goroutine only (this test binary lives on); with an activation
// bound the transport hears the reason and stack (FaultReporter) or gets
// NeedsReset; without one the fault is kept, and the next Bind refuses
// with it. A goroutine that returns normally reports nothing.
func TestGuardContainsGoroutinePanics(t *testing.T) {
	t.Run("reporter", func(t *testing.T) {
		var g virtio.Guard
		fi := &faultIRQ{Interrupt: virtiotest.NewInterrupt(1)}
		if err := g.Bind(fi); err != nil {
			t.Fatal(err)
		}
		contained(&g, "fine", func() {})
		if fi.got() != "" || g.Fault() != "" {
			t.Fatalf("a normal return reported %q", fi.got())
		}
		contained(&g, "vsock reader", func() { var m map[int]int; m[1]++ })
		r := fi.got()
		if !strings.Contains(r, "vsock reader: device panic: assignment to entry in nil map") ||
			!strings.Contains(r, "goroutine") || g.Fault() != r {
			t.Fatalf("reason %q (kept %q)", r, g.Fault())
		}
		if fi.NeedsResetRequested() {
			t.Error("NeedsReset as well as Fault")
		}
		g.Unbind()
		if err := g.Bind(fi); err == nil || !strings.Contains(err.Error(), "vsock reader") {
			t.Fatalf("Bind after a fault: %v", err)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		var g virtio.Guard
		irq := virtiotest.NewInterrupt(1)
		g.Bind(irq)
		contained(&g, "console input", func() { panic("boom") })
		if !irq.NeedsResetRequested() {
			t.Fatal("no NeedsReset after a panic")
		}
	})
	t.Run("unbound", func(t *testing.T) {
		var g virtio.Guard
		contained(&g, "vsock accept", func() { panic("boom") })
		irq := virtiotest.NewInterrupt(1)
		err := g.Bind(irq)
		if err == nil || !strings.Contains(err.Error(), "vsock accept: device panic: boom") || irq.NeedsResetRequested() {
			t.Fatalf("Bind after a panic with no activation: %v", err)
		}
	})
}
