package vmm

// Debug dumps of a running VM: `kill -USR1 <flint pid>` logs the virtio
// devices' state (dump.go), every vCPU's registers and the devices'
// counters without stopping the guest, the way one looks at a guest that
// seems stuck (is a vCPU spinning with interrupts off, halted waiting for
// an interrupt, or not leaving KVM at all? is a device waiting for a kick
// the driver never sent, or the driver for an interrupt?).

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
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

	unmapped unmappedRIP // the last state seen whose RIP its page tables do not map (the vCPU's goroutine only)
	recheck  atomic.Bool // that state is new: DumpState looks again
}

// unmappedRIP is a vCPU state whose instruction pointer its own page
// tables do not map, and when it was seen.
type unmappedRIP struct {
	rip, cr3 uint64
	at       time.Time
}

// Two looks at a vCPU whose RIP is unmapped (see unmappedImpossible):
// the second comes recheckAfter after the first, and a pair further apart
// than recheckWithin is not compared.
const (
	recheckAfter  = time.Second
	recheckWithin = 30 * time.Second
)

// watchDumpSignal logs a state dump on every SIGUSR1 until the machine
// stops.
func (m *Machine) watchDumpSignal() { onDumpSignal(m.stopped, m.DumpState) }

// onDumpSignal calls dump, from a goroutine of its own, on every SIGUSR1
// until stop is closed. After that SIGUSR1 is ignored, not restored to
// its default action (ending the process): a dump asked for while Flint
// shuts down (a CI job's watchdog) must not kill it before it reports.
func onDumpSignal(stop <-chan struct{}, dump func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	go func() {
		defer signal.Ignore(syscall.SIGUSR1)
		for {
			select {
			case <-sigs:
				dump()
			case <-stop:
				return
			}
		}
	}()
}

// DumpState logs (at warn, so that it shows at the default level) every
// virtio device's state (transport, interrupt and MSI-X bits, each
// queue's ring words and engine state: see logDeviceState) and counters,
// then each vCPU's state (registers, mode, exit counts). The devices come
// first: kicking the vCPUs may let the guest move on. The vCPUs are kicked
// out of KVM_RUN to read their registers and continue at once; a vCPU
// that does not come out within dumpWait is reported as such. --timeout
// calls it before it stops the guest.
//
// A vCPU whose RIP its page tables do not map is looked at once more,
// recheckAfter later (see unmappedImpossible).
func (m *Machine) DumpState() {
	m.logDeviceState("dump")
	m.logIOAPIC("dump")
	var again []int
	for i := range m.vcpus {
		if !m.dumpVCPU(i) {
			return
		}
		if m.dumps[i].recheck.Load() {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return
	}
	select {
	case <-time.After(recheckAfter):
	case <-m.stopped:
		return
	}
	for _, i := range again {
		if !m.dumpVCPU(i) {
			return
		}
	}
}

// dumpVCPU asks vCPU i for its state and waits up to dumpWait for it;
// false: the machine stopped.
func (m *Machine) dumpVCPU(i int) bool {
	v, d := m.vcpus[i], &m.dumps[i]
	select {
	case <-d.done: // a stale answer from an earlier timed-out request
	default:
	}
	d.recheck.Store(false)
	d.want.Store(true)
	v.Kick()
	select {
	case <-d.done:
	case <-time.After(dumpWait):
		m.log.Warn(VCPUStuckMsg, "vcpu", v.ID(), "waited", dumpWait)
	case <-m.stopped:
		return false
	}
	return true
}

// answerDump logs v's state if a dump was requested. It runs on v's own
// goroutine, after KVM_RUN returned.
func (m *Machine) answerDump(v *kvm.VCPU, counts *vcpuExitCounts) {
	d := &m.dumps[v.ID()]
	if !d.want.Swap(false) {
		return
	}
	defer func() { d.done <- struct{}{} }()
	m.logVCPUState(v, counts, "dump")
}

// ImpossibleStateMsg starts the warning logged when a vCPU's state cannot
// belong to this guest: its page tables lie outside the guest's RAM, so
// no instruction could have run with them. KVM (or whatever virtualizes
// the CPU under it) lost the guest's state; Flint cannot recover it.
// Tests match this text.
const ImpossibleStateMsg = "vCPU state is impossible for this guest"

// VCPUStuckMsg is logged when a vCPU thread, kicked for a dump, has not
// come out of KVM_RUN: a kick (a signal) makes KVM return at once, so the
// thread is stuck in the kernel, or in whatever virtualizes the CPU under
// it. Tests match this text.
const VCPUStuckMsg = "dump: vCPU did not leave KVM_RUN"

// TripleFaultMsg starts the warning logged when a vCPU triple-faults
// (KVM_EXIT_SHUTDOWN), which Flint treats as a guest reset. Tests match
// this text.
const TripleFaultMsg = "vCPU triple fault (KVM_EXIT_SHUTDOWN)"

// logVCPUState logs v's registers, the code at RIP and the top of the
// stack (why says what asked for it: a dump, a triple fault), and warns if
// the state is impossible (see ImpossibleStateMsg). It runs on v's own
// goroutine, outside KVM_RUN.
func (m *Machine) logVCPUState(v *kvm.VCPU, counts *vcpuExitCounts, why string) {
	r, err := v.Regs()
	if err != nil {
		m.log.Warn(why+": reading registers", "vcpu", v.ID(), "err", err)
		return
	}
	s, err := v.Sregs()
	if err != nil {
		m.log.Warn(why+": reading system registers", "vcpu", v.ID(), "err", err)
		return
	}
	mp, _ := v.MPState()
	// Where an interrupt stands: requested at the LAPIC (irr), delivered
	// and not yet EOIed (isr), held back by priority (tpr, ppr), being
	// injected by KVM, or delayed by an interrupt shadow.
	var irq []any
	if l, err := v.LAPIC(); err == nil {
		irq = append(irq, "lapic_irr", vectorList(l.IRR()), "lapic_isr", vectorList(l.ISR()),
			"tpr", hex(uint64(l.TPR())), "ppr", hex(uint64(l.PPR())))
	}
	if ev, err := v.Events(); err == nil {
		irq = append(irq, "intr_injected", ev.IntrInjected != 0, "intr_nr", hex(uint64(ev.IntrNr)), "intr_shadow", ev.IntrShadow)
	}
	m.log.Warn(why+": vCPU", append([]any{"vcpu", v.ID(),
		"rip", hex(r.RIP), "rsp", hex(r.RSP), "rflags", hex(r.RFLAGS),
		"interrupts_enabled", r.RFLAGS&(1<<9) != 0,
		"cr0", hex(s.CR0), "cr3", hex(s.CR3), "cr4", hex(s.CR4), "efer", hex(s.EFER),
		"cs", hex(uint64(s.CS.Selector)), "mp_state", mp,
		"rax", hex(r.RAX), "rbx", hex(r.RBX), "rcx", hex(r.RCX), "rdx", hex(r.RDX),
		"rsi", hex(r.RSI), "rdi", hex(r.RDI), "rbp", hex(r.RBP),
		"io_exits", counts.io.Load(), "mmio_exits", counts.mmio.Load(), "intr_exits", counts.intr.Load()}, irq...)...)
	m.logGuestMemory(why, v.ID(), s.CR3, s.CR4, r.RIP, r.RSP)
	if s.CR0&1 == 0 && r.RIP == 0xfff0 && s.CS.Selector == 0xf000 {
		m.log.Warn(why+": the vCPU is at its reset vector: KVM on AMD SVM reinitialises a vCPU on a shutdown, so the state that faulted is lost", "vcpu", v.ID())
	}
	if !m.pageTablesInRAM(s.CR0, s.CR3) {
		m.log.Warn(ImpossibleStateMsg+": its page tables (CR3) are outside guest RAM, so KVM or the hypervisor under it lost the guest's state",
			"vcpu", v.ID(), "why", why, "cr3", hex(s.CR3), "rip", hex(r.RIP), "guest_ram", m.mem.Size())
		return
	}
	if s.CR0&(1<<31) == 0 || s.EFER&(1<<10) == 0 {
		return // not in long mode: translate does not apply
	}
	d := &m.dumps[v.ID()]
	if _, ok := m.translate(s.CR3, s.CR4, r.RIP); ok {
		d.unmapped = unmappedRIP{}
		return
	}
	now := unmappedRIP{rip: r.RIP, cr3: s.CR3, at: time.Now()}
	if gap, lost := unmappedImpossible(d.unmapped, now); lost {
		m.log.Warn(ImpossibleStateMsg+": its instruction pointer is not mapped by its own page tables, the same at two looks, so KVM or the hypervisor under it lost the guest's state",
			"vcpu", v.ID(), "why", why, "cr3", hex(s.CR3), "rip", hex(r.RIP), "apart", gap.Round(time.Millisecond))
	} else {
		m.log.Warn(why+": the vCPU's instruction pointer is not mapped by its page tables (a lost state if a second look finds the same)",
			"vcpu", v.ID(), "cr3", hex(s.CR3), "rip", hex(r.RIP))
		d.recheck.Store(true)
	}
	d.unmapped = now
}

// unmappedImpossible reports whether two looks at a vCPU, prev and then
// now, both with a RIP that the page tables at CR3 do not map, prove its
// state lost, and how far apart they were. A guest never runs there: its
// first fetch faults and the #PF handler (mapped) takes over. An exit can
// fall between a jump to an unmapped page and that fault, so one look
// proves nothing; but a vCPU that entered the guest again between two
// looks at least recheckAfter apart cannot be at the same unmapped RIP
// with the same CR3 at both. Seen in the nested test host: QEMU's TCG
// emulation of SVM handing the L1 kernel's registers (a RIP in kvm_amd)
// to the L2 vCPU, with a CR3 that happens to lie inside the guest's RAM.
func unmappedImpossible(prev, now unmappedRIP) (time.Duration, bool) {
	if prev.at.IsZero() || prev.rip != now.rip || prev.cr3 != now.cr3 {
		return 0, false
	}
	gap := now.at.Sub(prev.at)
	return gap, gap >= recheckAfter-recheckAfter/10 && gap <= recheckWithin
}

// pageTablesInRAM reports whether a vCPU with cr0 and cr3 could fetch
// instructions: with paging on, the top-level table must be guest RAM.
func (m *Machine) pageTablesInRAM(cr0, cr3 uint64) bool {
	const pg = 1 << 31
	return cr0&pg == 0 || m.mem.Contains(cr3&0x000f_ffff_ffff_f000, 0x1000)
}

// hex formats v as 0x-prefixed hexadecimal for logs.
func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// translate maps a guest virtual address to a guest physical one through
// the page tables at cr3 (4-level, or 5-level when CR4.LA57 is set), as
// the vCPU would. It is for dumps only: it reads the tables as they are,
// without setting accessed bits.
func (m *Machine) translate(cr3, cr4, va uint64) (uint64, bool) {
	const (
		present  = 1 << 0
		pageSize = 1 << 7
		addrMask = 0x000f_ffff_ffff_f000
	)
	levels := 4
	if cr4&(1<<12) != 0 {
		levels = 5
	}
	table := cr3 & addrMask
	for l := levels; l >= 1; l-- {
		shift := 12 + 9*uint(l-1)
		e, err := m.mem.ReadU64(table + 8*((va>>shift)&0x1ff))
		if err != nil || e&present == 0 {
			return 0, false
		}
		if l == 1 || (l <= 3 && e&pageSize != 0) {
			size := uint64(1) << shift
			return e&addrMask&^(size-1) | va&(size-1), true
		}
		table = e & addrMask
	}
	return 0, false
}

// readVirt reads up to len(p) bytes at guest virtual address va (stopping
// at the first unmapped page) and returns how many it read.
func (m *Machine) readVirt(cr3, cr4, va uint64, p []byte) int {
	n := 0
	for n < len(p) {
		pa, ok := m.translate(cr3, cr4, va+uint64(n))
		if !ok {
			break
		}
		chunk := min(len(p)-n, int(0x1000-(pa&0xfff)))
		if m.mem.Read(pa, p[n:n+chunk]) != nil {
			break
		}
		n += chunk
	}
	return n
}

// logGuestMemory logs the code bytes around rip and the top of the stack,
// so a dump of a stuck vCPU shows what it executes and who called it.
func (m *Machine) logGuestMemory(why string, id int, cr3, cr4, rip, rsp uint64) {
	var code [48]byte
	n := m.readVirt(cr3, cr4, rip-16, code[:])
	var stack [16 * 8]byte
	k := m.readVirt(cr3, cr4, rsp, stack[:]) / 8
	words := make([]string, k)
	for i := range words {
		words[i] = hex(binary.LittleEndian.Uint64(stack[8*i:]))
	}
	m.log.Warn(why+": vCPU memory", "vcpu", id,
		"code_at_rip_minus_16", fmt.Sprintf("%x", code[:n]),
		"stack", strings.Join(words, " "))
}
