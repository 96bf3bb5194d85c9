package vmm

import (
	"sync"
	"sync/atomic"
	"time"
)

// After a stop, every vCPU leaves KVM_RUN at its kick: the signal makes
// KVM return at once, from inside the guest or from a halt. A vCPU still
// inside stopWait later is stuck in the kernel, or in whatever
// virtualizes the CPU under it (a nested emulator that lost the
// interrupt, or the vCPU itself); Run says so instead of waiting in
// silence, and kicks it again in case one interrupt was lost.
const (
	stopWait    = 5 * time.Second
	rekickEvery = time.Second
)

// VCPUStopStuckMsg is logged, once per vCPU, when a vCPU has not left
// KVM_RUN stopWait after the VM was told to stop. Tests match this text.
const VCPUStopStuckMsg = "stop: vCPU did not leave KVM_RUN"

// VCPUStopStuckInFlintMsg is logged instead when the vCPU's goroutine is
// not in KVM_RUN but in Flint's own handling of an exit (a device's
// register access that does not return): Flint's bug, not the kernel's.
const VCPUStopStuckInFlintMsg = "stop: vCPU stuck in flint's handling of a guest exit"

// vcpuGroup tracks the vCPU goroutines Run starts: which of them are
// still in their run loop.
type vcpuGroup struct {
	wg   sync.WaitGroup
	left []atomic.Bool // vCPU i's run loop has returned
}

func newVCPUGroup(n int) *vcpuGroup { return &vcpuGroup{left: make([]atomic.Bool, n)} }

// run runs vCPU i's loop on a goroutine of its own.
func (g *vcpuGroup) run(i int, loop func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.left[i].Store(true)
		loop()
	}()
}

// await waits until every vCPU goroutine has ended. From wait on it
// reports each vCPU still running (stuck, once per vCPU), and every
// `every` it kicks those still running again.
func (g *vcpuGroup) await(wait, every time.Duration, kick func(i int), stuck func(i int, waited time.Duration)) {
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	told := make([]bool, len(g.left))
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		waited := time.Since(start)
		for i := range g.left {
			if g.left[i].Load() {
				continue
			}
			if waited >= wait && !told[i] {
				told[i] = true
				stuck(i, waited.Round(time.Millisecond))
			}
			kick(i)
		}
	}
}
