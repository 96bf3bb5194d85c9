package vmm

// Debug dumps of a running VM: `kill -USR1 <flint pid>` logs every vCPU's
// registers and the devices' counters without stopping the guest, the way
// one looks at a guest that seems stuck (is a vCPU spinning with
// interrupts off, halted waiting for an interrupt, or not leaving KVM at
// all?).

import (
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flintvm/flint/kvm"
)

// dumpWait is how long a dump waits for each vCPU to leave KVM_RUN before
// it reports that vCPU as not responding.
const dumpWait = 2 * time.Second

// vcpuDump is one vCPU's pending dump request: the vCPU goroutine answers
// it the next time it leaves KVM_RUN.
type vcpuDump struct {
	want atomic.Bool
	done chan struct{} // capacity 1
}

// watchDumpSignal logs a state dump on every SIGUSR1 until the machine
// stops.
func (m *Machine) watchDumpSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-sigs:
				m.DumpState()
			case <-m.stopped:
				return
			}
		}
	}()
}

// DumpState logs each vCPU's state (registers, mode, exit counts) and the
// devices' counters. The vCPUs are kicked out of KVM_RUN to read their
// registers and continue at once; a vCPU that does not come out within
// dumpWait is reported as such.
func (m *Machine) DumpState() {
	for i, v := range m.vcpus {
		d := &m.dumps[i]
		select {
		case <-d.done: // a stale answer from an earlier timed-out request
		default:
		}
		d.want.Store(true)
		v.Kick()
		select {
		case <-d.done:
		case <-time.After(dumpWait):
			m.log.Warn("dump: vCPU did not leave KVM_RUN", "vcpu", v.ID(), "waited", dumpWait)
		case <-m.stopped:
			return
		}
	}
	m.logNetStats("dump")
}

// answerDump logs v's state if a dump was requested. It runs on v's own
// goroutine, after KVM_RUN returned.
func (m *Machine) answerDump(v *kvm.VCPU, counts *vcpuExitCounts) {
	d := &m.dumps[v.ID()]
	if !d.want.Swap(false) {
		return
	}
	defer func() { d.done <- struct{}{} }()
	r, err := v.Regs()
	if err != nil {
		m.log.Warn("dump: reading registers", "vcpu", v.ID(), "err", err)
		return
	}
	s, err := v.Sregs()
	if err != nil {
		m.log.Warn("dump: reading system registers", "vcpu", v.ID(), "err", err)
		return
	}
	mp, _ := v.MPState()
	m.log.Info("dump: vCPU", "vcpu", v.ID(),
		"rip", hex(r.RIP), "rsp", hex(r.RSP), "rflags", hex(r.RFLAGS),
		"interrupts_enabled", r.RFLAGS&(1<<9) != 0,
		"cr0", hex(s.CR0), "cr3", hex(s.CR3), "cr4", hex(s.CR4), "efer", hex(s.EFER),
		"cs", hex(uint64(s.CS.Selector)), "mp_state", mp,
		"rax", hex(r.RAX), "rbx", hex(r.RBX), "rcx", hex(r.RCX), "rdx", hex(r.RDX),
		"rsi", hex(r.RSI), "rdi", hex(r.RDI), "rbp", hex(r.RBP),
		"io_exits", counts.io, "mmio_exits", counts.mmio, "intr_exits", counts.intr)
}

// hex formats v as 0x-prefixed hexadecimal for logs.
func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }
