package kvm

import "math/bits"

// CPUID leaves Flint adjusts per vCPU.
const (
	cpuidLeafFeatures     = 0x1
	cpuidLeafCacheParams  = 0x4
	cpuidLeafTopology     = 0xB
	cpuidLeafTopologyV2   = 0x1F
	cpuidLeafExtSizes     = 0x80000008
	cpuidLeafAMDTopoExt   = 0x8000001E
	cpuidHypervisorBit    = 1 << 31 // leaf 1 ECX
	cpuidTSCDeadlineBit   = 1 << 24 // leaf 1 ECX: KVM emulates it in the in-kernel LAPIC
	cpuidHTTBit           = 1 << 28 // leaf 1 EDX
	topologyLevelSMT      = 1
	topologyLevelCore     = 2
	topologyLevelInvalid  = 0
	cpuidVendorAMDEBX     = 0x68747541 // "Auth"
	cpuidVendorHygonEBX   = 0x6f677948 // "Hygo"
	cpuidVendorIntelEBX   = 0x756e6547 // "Genu"
	cpuidLeafVendorAndMax = 0x0
)

// VCPUCPUID returns the CPUID table for vCPU id of a guest with n vCPUs, all
// cores of one socket, one thread per core: a copy of supported (from
// SupportedCPUID, hypervisor leaves 0x40000000+ kept as KVM reports them)
// with the APIC id, the logical processor counts and the topology leaves
// (0xB, 0x1F, AMD 0x80000008/0x8000001E) set to match, and the hypervisor
// hypervisor and TSC-deadline bits set (KVM emulates the TSC-deadline timer
// in its in-kernel LAPIC, which every Flint VM has; the guest's ACPI tables
// say hardware-reduced, so the LAPIC timer is its clock event device).
func VCPUCPUID(supported []CPUIDEntry, id, n int) []CPUIDEntry {
	shift := uint32(bits.Len(uint(n - 1))) // APIC-id bits for the core level
	amd := false
	out := make([]CPUIDEntry, 0, len(supported)+4)
	for _, e := range supported {
		if e.Function == cpuidLeafVendorAndMax && (e.EBX == cpuidVendorAMDEBX || e.EBX == cpuidVendorHygonEBX) {
			amd = true
		}
	}
	for _, e := range supported {
		switch e.Function {
		case cpuidLeafFeatures:
			e.EBX = e.EBX&0x0000ffff | uint32(id)<<24 | uint32(n)<<16
			e.ECX |= cpuidHypervisorBit | cpuidTSCDeadlineBit
			if n > 1 {
				e.EDX |= cpuidHTTBit
			} else {
				e.EDX &^= cpuidHTTBit
			}
		case cpuidLeafCacheParams:
			if !amd {
				// EAX[31:26]: cores per package - 1; EAX[25:14]: threads
				// sharing this cache - 1 (per-core caches for L1/L2).
				e.EAX = e.EAX&0x3ff | uint32(n-1)<<26
				if (e.EAX>>5)&7 >= 3 { // L3 shared by the package
					e.EAX |= uint32(n-1) << 14
				}
			}
		case cpuidLeafTopology, cpuidLeafTopologyV2:
			e = topologyLeaf(e, id, n, shift)
		case cpuidLeafExtSizes:
			if amd {
				e.ECX = e.ECX&^0xf0ff | shift<<12 | uint32(n-1)
			}
		case cpuidLeafAMDTopoExt:
			e.EAX = uint32(id)
			e.EBX = uint32(id) // core id; one thread per core
			e.ECX = 0          // one node
		}
		out = append(out, e)
	}
	return out
}

// topologyLeaf fills one subleaf of the extended topology leaf: level 0 is
// SMT (one thread per core), level 1 the cores of the package, beyond that
// invalid. EDX is the x2APIC id.
func topologyLeaf(e CPUIDEntry, id, n int, shift uint32) CPUIDEntry {
	e.Flags |= CPUIDFlagSignificantIndex
	e.EDX = uint32(id)
	switch e.Index {
	case 0:
		e.EAX, e.EBX, e.ECX = 0, 1, topologyLevelSMT<<8
	case 1:
		e.EAX, e.EBX, e.ECX = shift, uint32(n), 1|topologyLevelCore<<8
	default:
		e.EAX, e.EBX, e.ECX = 0, 0, e.Index|topologyLevelInvalid<<8
	}
	return e
}
