package pci

import (
	"sync"
	"sync/atomic"
	"testing"

	pcidev "github.com/flintvm/flint/devices/pci"
)

// TestMaskRaceLosesNothing signals a vector from several goroutines while
// the driver masks and unmasks it (entry and function mask): no trigger
// may hit a masked vector, and once unmasked nothing is left pending.
// Run with -race.
func TestMaskRaceLosesNothing(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(true)
	irq := r.dev.IRQ()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent [2]atomic.Uint64 // per queue: each vector's signallers must have run
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				irq.Signal(g % 2)
				sent[g%2].Add(1)
			}
		}()
	}
	ctrl := MSIXTableOffset + 16 + msixVectorCtrl
	// Keep toggling until the signallers have really run alongside: on a
	// loaded machine 2000 toggles can end before they are scheduled, or
	// before one queue's signallers are.
	for i := 0; i < 2000 || sent[0].Load() < 2000 || sent[1].Load() < 2000; i++ {
		r.iowrite(uint64(ctrl), 4, 1)
		r.iowrite(uint64(ctrl), 4, 0)
		if i%10 == 0 {
			c := r.cfgRead(r.msixCap+2, 2)
			r.cfgWrite(r.msixCap+2, 2, c|msixCtrlFuncMsk)
			r.cfgWrite(r.msixCap+2, 2, c&^msixCtrlFuncMsk)
		}
	}
	stop.Store(true)
	wg.Wait()
	if r.ioread(MSIXPBAOffset, 8) != 0 {
		t.Fatal("interrupt left pending with every vector unmasked")
	}
	for v := 1; v <= 2; v++ {
		x := r.router.Vector(v)
		if x.BadTriggers != 0 || x.Triggers == 0 {
			t.Fatalf("vector %d: %+v (%d signals)", v, x, sent[v-1].Load())
		}
	}
}

// TestINTxRace races signals with ISR reads: the line must end low when
// the ISR is clear and high when it is not.
func TestINTxRace(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.bringUp(false)
	irq := r.dev.IRQ()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				irq.Signal(g % 2)
			}
		}()
	}
	for i := 0; i < 500; i++ {
		r.isr()
	}
	wg.Wait()
	pending := r.tr.isr.Load() != 0
	if r.line.Level() != pending {
		t.Fatalf("line %v with ISR %#x", r.line.Level(), r.tr.isr.Load())
	}
	if pending != (r.cfgRead(pcidev.RegStatus, 2)&pcidev.StatusInterrupt != 0) {
		t.Fatal("status interrupt bit out of step")
	}
	r.isr()
	if r.line.Level() {
		t.Fatal("line high after the final ISR read")
	}
}

// TestSignalDoesNotAllocate checks the data-path interrupt calls.
func TestSignalDoesNotAllocate(t *testing.T) {
	for _, msix := range []bool{true, false} {
		r := newRig(t, rigOpt{})
		r.bringUp(msix)
		irq := r.dev.IRQ()
		if n := testing.AllocsPerRun(100, func() {
			irq.Signal(0)
			r.tr.isr.ReadAndClear()
		}); n != 0 {
			t.Fatalf("msix=%v: %v allocations per signal", msix, n)
		}
	}
}
