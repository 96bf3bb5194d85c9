package vhostuser

// Faults in the frontend's memory. The frontend owns its memory file and
// may truncate it after SET_MEM_TABLE (a sealed memfd cannot be required:
// UML's memory is a plain tmpfile); the backend's next access to a page
// past the new end then raises SIGBUS, which would end the process. The
// goroutines of this package that touch frontend memory (the session's,
// in setupQueue and the device's Activate; Snapshot's) run with
// debug.SetPanicOnFault, so such a fault is a panic that recoverFault
// turns back into an error: the session ends with the reason logged, its
// memory is unmapped, and the next frontend is served.
//
// The device's own goroutines (the queue engines, and the interrupt
// gaps' timers, which re-read the driver's suppression words) are the
// device's: virtio.Engine.Run gives them the same treatment
// (DEVICE_NEEDS_RESET through the activation's Fault), and a gap's timer
// treats a fault as "notification wanted", leaving the fault to the
// engine.

import (
	"fmt"
	"runtime/debug"
)

// faultAddr is what a memory-fault panic carries under SetPanicOnFault
// (a runtime.Error with the faulting address).
type faultAddr interface {
	error
	Addr() uintptr
}

// errFault wraps a memory fault in the frontend's memory.
type errFault struct {
	what string
	addr uintptr
}

func (e *errFault) Error() string {
	return fmt.Sprintf("%s: the frontend's memory faulted at host address %#x (its memory file shrank after SET_MEM_TABLE?)", e.what, e.addr)
}

// recoverFault, deferred with a pointer to the function's error, turns a
// memory-fault panic into *errFault, and any other panic (a bug in the
// device or in this package under a frontend's request) into an error
// with its stack: either way the session ends with the reason logged and
// the next frontend is served (issue 13 finding 11).
func recoverFault(what string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(faultAddr); ok {
		*err = &errFault{what: what, addr: f.Addr()}
		return
	}
	*err = fmt.Errorf("%s: the device panicked: %v\n%s", what, r, debug.Stack())
}

// faultSafe runs fn with memory faults turned into panics on this
// goroutine (restoring the goroutine's setting after) and recovered as
// *errFault.
func faultSafe(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(what, &err)
	return fn()
}
