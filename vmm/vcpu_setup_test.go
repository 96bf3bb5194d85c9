package vmm

import (
	"strings"
	"testing"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/kvm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestEntryRegisters: every register of boot's entry state reaches the
// KVM register structures, for the PVH entry (RBX, 32-bit CS, no paging)
// as for the 64-bit one (RSI, long mode).
func TestEntryRegisters(t *testing.T) {
	code32 := boot.Segment{Limit: 0xffffffff, Selector: 8, Type: 0xb, Present: 1, S: 1, DB: 1, G: 1}
	code64 := boot.Segment{Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	data := boot.Segment{Limit: 0xffffffff, Selector: 0x18, Type: 3, Present: 1, S: 1, DB: 1, G: 1, AVL: 1, DPL: 0}
	tss := boot.Segment{Base: 0x1234, Limit: 0x67, Selector: 0x20, Type: 0xb, Present: 1}
	for _, e := range []boot.Entry{
		{RIP: 0x1000850, RSP: 0x8ff0, RBX: 0x7000, RFLAGS: 2, CR0: 0x11,
			GDT: boot.DescriptorTable{Base: 0x500, Limit: 47}, IDT: boot.DescriptorTable{Base: 0x540, Limit: 15},
			CS: code32, DS: data, ES: data, FS: data, GS: data, SS: data, TR: tss},
		{RIP: 0x1000000, RSP: 0x8ff0, RSI: 0x7000, RFLAGS: 2, CR0: 0x80000031, CR3: 0x9000, CR4: 0x20, EFER: 0x500,
			GDT: boot.DescriptorTable{Base: 0x500, Limit: 47}, IDT: boot.DescriptorTable{Base: 0x540, Limit: 15},
			CS: code64, DS: data, ES: data, FS: data, GS: data, SS: data, TR: tss},
	} {
		r := entryRegs(&e)
		if r != (kvm.Regs{RIP: e.RIP, RSP: e.RSP, RSI: e.RSI, RBX: e.RBX, RFLAGS: e.RFLAGS}) {
			t.Errorf("regs %+v for entry at %#x", r, e.RIP)
		}
		s := entrySregs(kvm.Sregs{APICBase: 0xfee00900}, &e)
		if s.APICBase != 0xfee00900 {
			t.Error("APIC base not kept")
		}
		if s.CR0 != e.CR0 || s.CR3 != e.CR3 || s.CR4 != e.CR4 || s.EFER != e.EFER ||
			s.GDT != (kvm.DTable{Base: 0x500, Limit: 47}) || s.IDT != (kvm.DTable{Base: 0x540, Limit: 15}) {
			t.Errorf("sregs %+v for entry at %#x", s, e.RIP)
		}
		for name, p := range map[string][2]any{"CS": {s.CS, e.CS}, "DS": {s.DS, e.DS}, "ES": {s.ES, e.ES}, "FS": {s.FS, e.FS},
			"GS": {s.GS, e.GS}, "SS": {s.SS, e.SS}, "TR": {s.TR, e.TR}} {
			k, b := p[0].(kvm.Segment), p[1].(boot.Segment)
			if k != kvmSegment(b) || k.DB != b.DB || k.L != b.L || k.Base != b.Base || k.Selector != b.Selector {
				t.Errorf("%s %+v, want %+v", name, k, b)
			}
		}
	}
}

// TestValidateKernelFormats: Validate refuses a bad ELF kernel and an
// entry path the kernel does not have, before any VM resource exists.
func TestValidateKernelFormats(t *testing.T) {
	bz := vmmtest.BzImage(vmmtest.Spin)
	for _, c := range []struct {
		name   string
		kernel []byte
		entry  boot.EntryPath
		msg    string
	}{
		{"bzImage", bz, "", ""},
		{"bzImage linux64", bz, boot.EntryLinux64, ""},
		{"bzImage pvh", bz, boot.EntryPVH, "the PVH entry needs an ELF vmlinux"},
		{"bad entry", bz, "real-mode", `kernel entry "real-mode"`},
		{"truncated ELF", []byte("\x7fELF\x02\x01\x01"), "", "kernel: ELF truncated"},
		{"32-bit ELF", append([]byte("\x7fELF\x01\x01\x01"), make([]byte, 64)...), "", "kernel: ELF class 1"},
	} {
		cfg := Config{Kernel: c.kernel, CPUs: 1, MemoryMiB: 64, KernelEntry: c.entry}
		err := cfg.Validate()
		switch {
		case c.msg == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %v, want one line containing %q", c.name, err, c.msg)
		}
	}
}
