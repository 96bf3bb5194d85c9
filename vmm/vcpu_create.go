package vmm

import (
	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/kvm"
)

// createVCPUs creates every vCPU with its CPUID, MSRs, FPU and LAPIC state,
// and gives the BSP (vCPU 0) the kernel's entry state.
func (m *Machine) createVCPUs(e *boot.Entry) error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	for i := 0; i < m.cfg.CPUs; i++ {
		v, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, v)
		if err := setupVCPU(v, supported, m.cfg.CPUs); err != nil {
			return err
		}
	}
	m.dumps = make([]vcpuDump, len(m.vcpus))
	for i := range m.dumps {
		m.dumps[i].done = make(chan struct{}, 1)
	}
	return setEntryState(m.vcpus[0], e)
}

// setEntryState loads boot's entry state into the BSP's registers.
func setEntryState(v *kvm.VCPU, e *boot.Entry) error {
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	s.CS, s.DS, s.ES, s.FS = kvmSegment(e.CS), kvmSegment(e.DS), kvmSegment(e.ES), kvmSegment(e.FS)
	s.GS, s.SS, s.TR = kvmSegment(e.GS), kvmSegment(e.SS), kvmSegment(e.TR)
	s.GDT = kvm.DTable{Base: e.GDT.Base, Limit: e.GDT.Limit}
	s.IDT = kvm.DTable{Base: e.IDT.Base, Limit: e.IDT.Limit}
	s.CR0, s.CR3, s.CR4, s.EFER = e.CR0, e.CR3, e.CR4, e.EFER
	if err := v.SetSregs(s); err != nil {
		return err
	}
	return v.SetRegs(kvm.Regs{RIP: e.RIP, RSP: e.RSP, RSI: e.RSI, RBX: e.RBX, RFLAGS: e.RFLAGS})
}

func kvmSegment(s boot.Segment) kvm.Segment {
	return kvm.Segment{
		Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type, Present: s.Present,
		DPL: s.DPL, DB: s.DB, S: s.S, L: s.L, G: s.G, AVL: s.AVL,
	}
}
