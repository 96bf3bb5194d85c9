package kvm

// Ioctl request numbers for /dev/kvm, VM and vCPU file descriptors, as the
// kernel's _IO/_IOR/_IOW/_IOWR macros encode them (KVMIO = 0xAE) for x86_64.
// ioctls_test.go recomputes every one from the encoding and the Go ABI
// struct sizes, so a wrong number or a struct of the wrong size fails a test.
const (
	kvmGetAPIVersion      = 0xAE00
	kvmCreateVM           = 0xAE01
	kvmCheckExtension     = 0xAE03
	kvmGetVCPUMmapSize    = 0xAE04
	kvmGetSupportedCPUID  = 0xC008AE05
	kvmCreateVCPU         = 0xAE41
	kvmSetUserMemRegion   = 0x4020AE46
	kvmSetTSSAddr         = 0xAE47
	kvmSetIdentityMapAddr = 0x4008AE48
	kvmCreateIRQChip      = 0xAE60
	kvmIRQLine            = 0x4008AE61
	kvmGetIRQChip         = 0xC208AE62
	kvmSetGSIRouting      = 0x4008AE6A
	kvmIRQFD              = 0x4020AE76
	kvmCreatePIT2         = 0x4040AE77
	kvmIOEventFD          = 0x4040AE79
	kvmSignalMSI          = 0x4020AEA5
	kvmRun                = 0xAE80
	kvmGetRegs            = 0x8090AE81
	kvmSetRegs            = 0x4090AE82
	kvmGetSregs           = 0x8138AE83
	kvmSetSregs           = 0x4138AE84
	kvmGetMSRs            = 0xC008AE88
	kvmSetMSRs            = 0x4008AE89
	kvmGetFPU             = 0x81A0AE8C
	kvmSetFPU             = 0x41A0AE8D
	kvmGetLAPIC           = 0x8400AE8E
	kvmSetLAPIC           = 0x4400AE8F
	kvmSetCPUID2          = 0x4008AE90
	kvmGetMPState         = 0x8004AE98
	kvmSetMPState         = 0x4004AE99
	kvmGetVCPUEvents      = 0x8040AE9F
)

// Capabilities queried with KVM_CHECK_EXTENSION.
const (
	CapIRQChip        = 0
	CapUserMemory     = 3
	CapSetTSSAddr     = 4
	CapIRQRouting     = 25
	CapIRQFD          = 32
	CapPIT2           = 33
	CapSetIdentityMap = 37
	CapIOEventFD      = 36
	CapImmediateExit  = 136
	CapSignalMSI      = 77
	CapNrMemSlots     = 10
	CapMaxVCPUs       = 66
)
