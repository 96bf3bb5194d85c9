package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// kvm_run layout (x86_64): a 32-byte header, then the exit-information union.
const (
	runExitReasonOffset = 8
	runUnionOffset      = 32
	runUnionSize        = 256
)

// ExitReason is kvm_run.exit_reason.
type ExitReason uint32

// Exit reasons Flint handles; others are reported as errors by the caller.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24

	// ExitAgain is no kvm_run exit reason: Run returns it when KVM_RUN
	// failed with EAGAIN, as it does for a vCPU still waiting for INIT and
	// SIPI (an application processor the guest has not started) each time
	// something wakes it. An event such a vCPU cannot take (an NMI sent to
	// it) stays pending and wakes it again at once, so KVM_RUN keeps
	// returning EAGAIN without blocking until the guest starts it.
	ExitAgain ExitReason = 1<<32 - 1
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "UNKNOWN", ExitException: "EXCEPTION", ExitIO: "IO", ExitHypercall: "HYPERCALL",
	ExitDebug: "DEBUG", ExitHLT: "HLT", ExitMMIO: "MMIO", ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown: "SHUTDOWN", ExitFailEntry: "FAIL_ENTRY", ExitIntr: "INTR",
	ExitInternalError: "INTERNAL_ERROR", ExitSystemEvent: "SYSTEM_EVENT",
}

func (r ExitReason) String() string {
	if r == ExitAgain {
		return "KVM_RUN EAGAIN"
	}
	if n, ok := exitNames[r]; ok {
		return "KVM_EXIT_" + n
	}
	return fmt.Sprintf("KVM_EXIT_%d", uint32(r))
}

// System event types in a KVM_EXIT_SYSTEM_EVENT exit.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// SystemEventName names a KVM_EXIT_SYSTEM_EVENT type (KVM_SYSTEM_EVENT_*).
func SystemEventName(ev uint32) string {
	names := [...]string{1: "shutdown", 2: "reset", 3: "crash", 4: "wakeup", 5: "suspend", 6: "SEV termination", 7: "TDX fatal error"}
	if int(ev) < len(names) && names[ev] != "" {
		return names[ev]
	}
	return fmt.Sprintf("type %d", ev)
}

// InternalErrorName says what a KVM_EXIT_INTERNAL_ERROR suberror
// (KVM_INTERNAL_ERROR_*) means.
func InternalErrorName(sub uint32) string {
	names := [...]string{
		1: "emulation failure: KVM could not emulate the guest's instruction",
		2: "simultaneous exceptions",
		3: "an exit during event delivery",
		4: "an exit reason KVM does not handle",
	}
	if int(sub) < len(names) && names[sub] != "" {
		return names[sub]
	}
	return "unknown suberror"
}

// VCPU is one virtual CPU. Run and the register accessors must be called from
// the one OS thread that runs it (LockOSThread); Kick may be called from any
// goroutine.
type VCPU struct {
	id  int
	fd  int
	tid atomic.Int32
	// run is the shared kvm_run page. Close unmaps it under runMu's write
	// lock, and Kick sets immediate_exit under its read lock: a stop or a
	// state dump racing the machine's Close must not write to unmapped
	// memory.
	runMu sync.RWMutex
	run   []byte
}

// ID is the vCPU index (and its APIC id).
func (v *VCPU) ID() int { return v.id }

// Close unmaps kvm_run and closes the vCPU fd.
func (v *VCPU) Close() error {
	if v.fd < 0 {
		return nil
	}
	v.runMu.Lock()
	unix.Munmap(v.run)
	v.run = nil
	v.runMu.Unlock()
	err := unix.Close(v.fd)
	v.fd = -1
	return err
}

// BindThread records the calling OS thread as the one running this vCPU, so
// Kick can signal it. Call it after runtime.LockOSThread; pass false when
// the thread stops running the vCPU.
func (v *VCPU) BindThread(bound bool) {
	if bound {
		v.tid.Store(int32(unix.Gettid()))
	} else {
		v.tid.Store(0)
	}
}

// kickSignal interrupts KVM_RUN. The Go runtime already handles SIGURG (it
// uses it for preemption) and tolerates spurious ones, so sending it to a
// vCPU thread is harmless to the runtime, and KVM returns -EINTR for it.
const kickSignal = unix.SIGURG

// Kick makes a running (or about to run) KVM_RUN return with ExitIntr: it
// sets kvm_run.immediate_exit, so a KVM_RUN that has not yet entered the guest
// returns at once, and signals the vCPU thread, so one inside the guest (or
// halted in the kernel) returns too. The vCPU loop calls ClearKick once it has
// seen the request. Kicking a closed VCPU does nothing.
func (v *VCPU) Kick() {
	v.runMu.RLock()
	defer v.runMu.RUnlock()
	if v.run == nil {
		return
	}
	setImmediateExit(v.run, true)
	if tid := v.tid.Load(); tid != 0 {
		_ = unix.Tgkill(unix.Getpid(), int(tid), kickSignal)
	}
}

// ClearKick resets immediate_exit so the next Run enters the guest.
func (v *VCPU) ClearKick() { setImmediateExit(v.run, false) }

// Run enters the guest until the next exit. An interrupted KVM_RUN (Kick,
// or any signal) returns ExitIntr and a nil error, one that failed with
// EAGAIN ExitAgain and a nil error; the caller decides whether to stop or
// to run again.
func (v *VCPU) Run() (ExitReason, error) {
	if err := runIoctl(v.fd); err != nil {
		switch {
		case errors.Is(err, unix.EINTR):
			return ExitIntr, nil
		case errors.Is(err, unix.EAGAIN):
			return ExitAgain, nil
		}
		return 0, fmt.Errorf("KVM_RUN on vCPU %d: %w", v.id, err)
	}
	return ExitReason(binary.LittleEndian.Uint32(v.run[runExitReasonOffset:])), nil
}

// IO decodes a KVM_EXIT_IO: direction, port, access size, and the data
// buffer inside kvm_run (size*count bytes: for string I/O, count accesses of
// size bytes each, in order). For OUT the buffer holds the guest's data; for
// IN the caller fills it before the next Run.
func (v *VCPU) IO() (out bool, port uint16, size int, data []byte, err error) {
	u := v.run[runUnionOffset:]
	out = u[0] == 1
	size = int(u[1])
	port = binary.LittleEndian.Uint16(u[2:])
	count := binary.LittleEndian.Uint32(u[4:])
	off := binary.LittleEndian.Uint64(u[8:])
	n := uint64(size) * uint64(count)
	if size == 0 || off > uint64(len(v.run)) || n > uint64(len(v.run))-off {
		return false, 0, 0, nil, fmt.Errorf("vCPU %d: bad KVM_EXIT_IO (size %d count %d offset %#x)", v.id, size, count, off)
	}
	return out, port, size, v.run[off : off+n], nil
}

// MMIO decodes a KVM_EXIT_MMIO: guest-physical address, whether it is a
// write, and the data buffer inside kvm_run (len bytes). For reads the
// caller fills data before the next Run.
func (v *VCPU) MMIO() (write bool, addr uint64, data []byte, err error) {
	u := v.run[runUnionOffset:]
	addr = binary.LittleEndian.Uint64(u[0:])
	n := binary.LittleEndian.Uint32(u[16:])
	write = u[20] != 0
	if n == 0 || n > 8 {
		return false, 0, nil, fmt.Errorf("vCPU %d: bad KVM_EXIT_MMIO length %d", v.id, n)
	}
	return write, addr, u[8 : 8+n], nil
}

// SystemEvent decodes a KVM_EXIT_SYSTEM_EVENT's type.
func (v *VCPU) SystemEvent() uint32 {
	return binary.LittleEndian.Uint32(v.run[runUnionOffset:])
}

// FailEntry decodes a KVM_EXIT_FAIL_ENTRY's hardware reason.
func (v *VCPU) FailEntry() uint64 {
	return binary.LittleEndian.Uint64(v.run[runUnionOffset:])
}

// InternalError decodes a KVM_EXIT_INTERNAL_ERROR's suberror.
func (v *VCPU) InternalError() uint32 {
	return binary.LittleEndian.Uint32(v.run[runUnionOffset:])
}

// Regs reads the general-purpose registers.
func (v *VCPU) Regs() (Regs, error) {
	var r Regs
	if err := setStruct(v.fd, kvmGetRegs, &r); err != nil {
		return r, fmt.Errorf("KVM_GET_REGS: %w", err)
	}
	return r, nil
}

// SetRegs writes the general-purpose registers.
func (v *VCPU) SetRegs(r Regs) error {
	if err := setStruct(v.fd, kvmSetRegs, &r); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// Sregs reads the special registers.
func (v *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if err := setStruct(v.fd, kvmGetSregs, &s); err != nil {
		return s, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	return s, nil
}

// SetSregs writes the special registers.
func (v *VCPU) SetSregs(s Sregs) error {
	if err := setStruct(v.fd, kvmSetSregs, &s); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	return nil
}

// SetFPU writes the x87/SSE state.
func (v *VCPU) SetFPU(f FPU) error {
	if err := setStruct(v.fd, kvmSetFPU, &f); err != nil {
		return fmt.Errorf("KVM_SET_FPU: %w", err)
	}
	return nil
}

// LAPIC reads the local APIC registers.
func (v *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	if err := setStruct(v.fd, kvmGetLAPIC, &l); err != nil {
		return l, fmt.Errorf("KVM_GET_LAPIC: %w", err)
	}
	return l, nil
}

// Events reads the vCPU's pending events (KVM_GET_VCPU_EVENTS).
func (v *VCPU) Events() (VCPUEvents, error) {
	var e VCPUEvents
	if err := setStruct(v.fd, kvmGetVCPUEvents, &e); err != nil {
		return e, fmt.Errorf("KVM_GET_VCPU_EVENTS: %w", err)
	}
	return e, nil
}

// SetLAPIC writes the local APIC registers.
func (v *VCPU) SetLAPIC(l LAPICState) error {
	if err := setStruct(v.fd, kvmSetLAPIC, &l); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC: %w", err)
	}
	return nil
}

// SetCPUID2 sets the CPUID leaves the guest sees.
func (v *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	_, _, err := varIoctl(v.fd, kvmSetCPUID2, cpuid2Header{NEnt: uint32(len(entries))}, entries)
	if err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 (%d entries): %w", len(entries), err)
	}
	return nil
}

// SetMSRs writes model-specific registers; all must be accepted.
func (v *VCPU) SetMSRs(msrs []MSR) error {
	_, n, err := varIoctl(v.fd, kvmSetMSRs, msrsHeader{NMSRs: uint32(len(msrs))}, msrs)
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS: %w", err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("KVM_SET_MSRS: KVM refused MSR %#x (set %d of %d)", msrs[n].Index, n, len(msrs))
	}
	return nil
}

// GetMSRs reads the MSRs whose Index fields are set in msrs.
func (v *VCPU) GetMSRs(msrs []MSR) error {
	_, n, err := varIoctl(v.fd, kvmGetMSRs, msrsHeader{NMSRs: uint32(len(msrs))}, msrs)
	if err != nil {
		return fmt.Errorf("KVM_GET_MSRS: %w", err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("KVM_GET_MSRS: KVM refused MSR %#x", msrs[n].Index)
	}
	return nil
}

// MPState reads the vCPU's multiprocessor state.
func (v *VCPU) MPState() (uint32, error) {
	var s MPState
	if err := setStruct(v.fd, kvmGetMPState, &s); err != nil {
		return 0, fmt.Errorf("KVM_GET_MP_STATE: %w", err)
	}
	return s.State, nil
}

// SetMPState writes the vCPU's multiprocessor state.
func (v *VCPU) SetMPState(state uint32) error {
	s := MPState{State: state}
	if err := setStruct(v.fd, kvmSetMPState, &s); err != nil {
		return fmt.Errorf("KVM_SET_MP_STATE: %w", err)
	}
	return nil
}
