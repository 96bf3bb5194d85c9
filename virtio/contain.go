package virtio

// Containment for a device's own goroutines outside its queue engines
// (the engines' is recoverFault, in loop.go).

import (
	"fmt"
	"runtime/debug"
	"sync"
)

// A Guard contains panics on a device's goroutines that are not queue
// engines: vsock's accept, handshake, dial, reader and writer goroutines,
// the console's input reader. Each defers Recover; a panic there ends
// that goroutine and the device's service, never the process (issue 13
// finding 11): with an activation bound, the transport hears why through
// its FaultReporter (the reason and stack logged through its rate limit,
// then DEVICE_NEEDS_RESET), or gets Interrupt.NeedsReset; a fault stays,
// so every later Bind (the device's Activate) refuses with it, and the
// transport sets DEVICE_NEEDS_RESET again. The zero value is ready.
type Guard struct {
	mu     sync.Mutex
	irq    Interrupt // the current activation's; nil between them
	reason string    // the first contained panic's, "" if none
}

// Bind gives g the Interrupt of the activation starting (Activate calls
// it); it returns an error naming an earlier contained panic instead.
func (g *Guard) Bind(irq Interrupt) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reason != "" {
		return fmt.Errorf("a device goroutine failed earlier: %s", g.reason)
	}
	g.irq = irq
	return nil
}

// Unbind forgets the activation's Interrupt (Reset and Close call it).
func (g *Guard) Unbind() {
	g.mu.Lock()
	g.irq = nil
	g.mu.Unlock()
}

// Fault is the first contained panic's reason (with its stack), or "".
func (g *Guard) Fault() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reason
}

// Recover, deferred by a device goroutine, turns a panic in it into the
// device's fault (see Guard); what names the goroutine in the reason.
// The goroutine's other defers (its locks' unlocks, WaitGroup.Done) run
// as the panic unwinds, before or after it, as usual.
func (g *Guard) Recover(what string) {
	r := recover()
	if r == nil {
		return
	}
	reason := fmt.Sprintf("%s: device panic: %v\n%s", what, r, debug.Stack())
	g.mu.Lock()
	if g.reason == "" {
		g.reason = reason
	}
	irq := g.irq
	g.mu.Unlock()
	if irq == nil {
		return // no activation: the next Bind refuses
	}
	reportFault(irq, reason)
}
