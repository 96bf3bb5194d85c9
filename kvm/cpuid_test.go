package kvm

import "testing"

func testCPUID(vendorEBX uint32) []CPUIDEntry {
	return []CPUIDEntry{
		{Function: 0, EAX: 0x1f, EBX: vendorEBX},
		{Function: 1, EBX: 0xff00_0800, ECX: 0x1, EDX: 0x1},
		{Function: 0xB, Index: 0, Flags: 1},
		{Function: 0xB, Index: 1, Flags: 1},
		{Function: 0xB, Index: 2, Flags: 1},
		{Function: 0x40000000, EBX: 0x4b4d564b},
		{Function: 0x80000008, ECX: 0xffff},
		{Function: 0x8000001E},
	}
}

func find(t *testing.T, es []CPUIDEntry, fn, idx uint32) CPUIDEntry {
	t.Helper()
	for _, e := range es {
		if e.Function == fn && e.Index == idx {
			return e
		}
	}
	t.Fatalf("leaf %#x.%d missing", fn, idx)
	return CPUIDEntry{}
}

func TestVCPUCPUIDTopology(t *testing.T) {
	in := testCPUID(cpuidVendorAMDEBX)
	out := VCPUCPUID(in, 3, 4)
	if len(out) != len(in) {
		t.Fatalf("len %d want %d", len(out), len(in))
	}
	l1 := find(t, out, 1, 0)
	if l1.EBX>>24 != 3 || (l1.EBX>>16)&0xff != 4 || l1.EBX&0xffff != 0x0800 {
		t.Errorf("leaf 1 EBX = %#x", l1.EBX)
	}
	if l1.ECX&cpuidHypervisorBit == 0 || l1.EDX&cpuidHTTBit == 0 {
		t.Errorf("leaf 1 ECX %#x EDX %#x: want hypervisor and HTT bits", l1.ECX, l1.EDX)
	}
	core := find(t, out, 0xB, 1)
	if core.EAX != 2 || core.EBX != 4 || core.ECX != 1|2<<8 || core.EDX != 3 {
		t.Errorf("leaf 0xB.1 = %+v", core)
	}
	smt := find(t, out, 0xB, 0)
	if smt.EBX != 1 || smt.ECX != 1<<8 || smt.EDX != 3 {
		t.Errorf("leaf 0xB.0 = %+v", smt)
	}
	if inv := find(t, out, 0xB, 2); inv.ECX>>8&0xff != 0 {
		t.Errorf("leaf 0xB.2 level type %d, want invalid", inv.ECX>>8&0xff)
	}
	if ext := find(t, out, 0x80000008, 0); ext.ECX&0xff != 3 || ext.ECX>>12&0xf != 2 {
		t.Errorf("leaf 0x80000008 ECX = %#x", ext.ECX)
	}
	if hv := find(t, out, 0x40000000, 0); hv.EBX != 0x4b4d564b {
		t.Errorf("hypervisor leaf changed: %+v", hv)
	}
	if te := find(t, out, 0x8000001E, 0); te.EAX != 3 {
		t.Errorf("leaf 0x8000001E EAX = %d", te.EAX)
	}
	// The input is not modified.
	if in[1].EBX != 0xff00_0800 {
		t.Error("input table modified")
	}
}

func TestVCPUCPUIDSingleCPUClearsHTT(t *testing.T) {
	out := VCPUCPUID(testCPUID(cpuidVendorIntelEBX), 0, 1)
	l1 := find(t, out, 1, 0)
	if l1.EDX&cpuidHTTBit != 0 || (l1.EBX>>16)&0xff != 1 {
		t.Errorf("leaf 1 = %+v", l1)
	}
	if ext := find(t, out, 0x80000008, 0); ext.ECX != 0xffff {
		t.Errorf("Intel leaf 0x80000008 changed: %#x", ext.ECX)
	}
}
