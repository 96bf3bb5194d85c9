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
	if err := v.SetSregs(entrySregs(s, e)); err != nil {
		return err
	}
	return v.SetRegs(entryRegs(e))
}

func kvmSegment(s boot.Segment) kvm.Segment {
	return kvm.Segment{
		Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type, Present: s.Present,
		DPL: s.DPL, DB: s.DB, S: s.S, L: s.L, G: s.G, AVL: s.AVL,
	}
}
