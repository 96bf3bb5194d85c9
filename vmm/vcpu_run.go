package vmm

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/kvm"
)

// vcpuExitCounts counts a vCPU's exits by kind (for logs and metrics).
// Only the vCPU's goroutine adds; metrics read them from another, hence
// atomics (an uncontended add, no allocation). The padding keeps vCPUs'
// counters on separate cache lines.
type vcpuExitCounts struct {
	io, mmio, intr, other atomic.Uint64
	again                 atomic.Uint64 // KVM_RUN failed with EAGAIN (kvm.ExitAgain)
	// inKVM: the vCPU's goroutine is inside KVM_RUN (or about to enter
	// it), not in Flint's handling of an exit: what a stuck stop blames.
	inKVM atomic.Bool
	_     [20]byte
}

// An application processor the guest has not started returns from KVM_RUN
// with EAGAIN at once, again and again, while an event it cannot take (an
// NMI IPI) is pending: its run loop would spin a host core until the guest
// starts it, maybe never. After againFree such returns in a row, the loop
// waits before the next KVM_RUN, a step longer each time up to againMaxWait
// (an INIT and SIPI then start the AP at most that late); a stop ends the
// wait.
const (
	againFree    = 16
	againStep    = 100 * time.Microsecond
	againMaxWait = 10 * time.Millisecond
)

// againWait is how long to wait after the n-th EAGAIN in a row.
func againWait(n int) time.Duration {
	if n <= againFree {
		return 0
	}
	return min(time.Duration(n-againFree)*againStep, againMaxWait)
}

// runVCPU runs one vCPU on its own locked OS thread until the machine stops
// or the guest does something that ends the VM. It is the only goroutine
// that touches v's registers and kvm_run page (Kick aside).
func (m *Machine) runVCPU(v *kvm.VCPU) {
	runtime.LockOSThread()
	// The thread stays locked until the goroutine exits: its signal state
	// (the kick target) must not be reused by other goroutines.
	v.BindThread(true)
	defer v.BindThread(false)
	counts := &m.exits[v.ID()]
	defer func() {
		m.log.Debug("vCPU stopped", "vcpu", v.ID(), "io_exits", counts.io.Load(), "mmio_exits", counts.mmio.Load(),
			"intr_exits", counts.intr.Load(), "eagain", counts.again.Load())
	}()
	again := 0 // EAGAIN returns in a row
	for {
		if m.stopping.Load() {
			return
		}
		counts.inKVM.Store(true)
		reason, err := v.Run()
		counts.inKVM.Store(false)
		if err != nil {
			m.stop(stopError, err)
			return
		}
		if reason != kvm.ExitAgain && reason != kvm.ExitIntr {
			again = 0
		}
		switch reason {
		case kvm.ExitAgain:
			counts.again.Add(1)
			again++
			if d := againWait(again); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-m.stopped:
					t.Stop()
				}
			}
		case kvm.ExitIO:
			counts.io.Add(1)
			if err := m.handleIO(v); err != nil {
				m.stop(stopError, err)
				return
			}
		case kvm.ExitMMIO:
			counts.mmio.Add(1)
			if err := m.handleMMIO(v); err != nil {
				m.stop(stopError, err)
				return
			}
		case kvm.ExitIntr:
			counts.intr.Add(1)
			// Clear first, then look: a stop that lands after the clear
			// sets immediate_exit again, so the next Run returns at once.
			v.ClearKick()
			m.answerDump(v, counts)
		case kvm.ExitHLT:
			// Only without an in-kernel irqchip; Flint always has one.
			m.stop(stopPowerOff, nil)
			return
		case kvm.ExitShutdown:
			// A triple fault: what a PC does on a reset request without a
			// reset device. Treat as a guest reset.
			m.log.Warn(TripleFaultMsg+": treating it as a guest reset", "vcpu", v.ID())
			m.logVCPUState(v, counts, "triple fault")
			m.stop(stopReset, nil)
			return
		case kvm.ExitSystemEvent:
			switch ev := v.SystemEvent(); ev {
			case kvm.SystemEventShutdown:
				m.stop(stopPowerOff, nil)
			case kvm.SystemEventReset:
				m.stop(stopReset, nil)
			default:
				m.stop(stopError, fmt.Errorf("vCPU %d: guest system event %d (%s)", v.ID(), ev, kvm.SystemEventName(ev)))
			}
			return
		case kvm.ExitFailEntry:
			m.stop(stopError, fmt.Errorf("vCPU %d: KVM_EXIT_FAIL_ENTRY, hardware reason %#x", v.ID(), v.FailEntry()))
			return
		case kvm.ExitInternalError:
			sub := v.InternalError()
			m.stop(stopError, fmt.Errorf("vCPU %d: KVM_EXIT_INTERNAL_ERROR, suberror %d (%s)", v.ID(), sub, kvm.InternalErrorName(sub)))
			return
		default:
			counts.other.Add(1)
			m.stop(stopError, fmt.Errorf("vCPU %d: unexpected exit %v", v.ID(), reason))
			return
		}
	}
}

// handleIO routes a port I/O exit to the PIO bus. String I/O (rep ins/outs)
// is count accesses of size bytes each.
func (m *Machine) handleIO(v *kvm.VCPU) error {
	out, port, size, data, err := v.IO()
	if err != nil {
		return err
	}
	for off := 0; off+size <= len(data); off += size {
		chunk := data[off : off+size]
		if out {
			m.pio.Write(uint64(port), chunk)
		} else {
			m.pio.Read(uint64(port), chunk)
		}
	}
	return nil
}

// handleMMIO routes an MMIO exit to the MMIO bus. Accesses nothing claims
// read as all ones and are otherwise ignored: a guest probing empty space
// must not stop the VM.
func (m *Machine) handleMMIO(v *kvm.VCPU) error {
	write, addr, data, err := v.MMIO()
	if err != nil {
		return err
	}
	if write {
		m.mmio.Write(addr, data)
	} else {
		m.mmio.Read(addr, data)
	}
	return nil
}
