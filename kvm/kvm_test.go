package kvm

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/testenv"
)

// These tests run tiny real-mode guest programs (bytes written here) under
// whatever /dev/kvm the machine has, hardware or PVM: they need no stock
// kernel.

const guestRAM = 0x10000 // 64 KiB at guest-physical 0; code at codeAddr

const codeAddr = 0x1000

type testVM struct {
	sys  *System
	vm   *VM
	vcpu *VCPU
	ram  []byte
}

func newTestVM(t *testing.T, code []byte) *testVM {
	t.Helper()
	testenv.RequireTinyGuests(t)
	sys, err := Open(testenv.DevicePath)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := sys.CreateVM()
	if err != nil {
		sys.Close()
		t.Fatal(err)
	}
	ram, err := unix.Mmap(-1, 0, guestRAM, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	copy(ram[codeAddr:], code)
	if err := vm.SetUserMemoryRegion(0, 0, ram); err != nil {
		t.Fatal(err)
	}
	vcpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range []*Segment{&s.CS, &s.DS, &s.ES, &s.SS} {
		seg.Base, seg.Selector = 0, 0
	}
	if err := vcpu.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := vcpu.SetRegs(Regs{RIP: codeAddr, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	tv := &testVM{sys: sys, vm: vm, vcpu: vcpu, ram: ram}
	t.Cleanup(func() {
		vcpu.Close()
		vm.Close()
		sys.Close()
		unix.Munmap(ram)
	})
	return tv
}

// run runs the vCPU on a locked OS thread until an exit other than INTR.
func (tv *testVM) run(t *testing.T) ExitReason {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		r, err := tv.vcpu.Run()
		if err != nil {
			t.Fatal(err)
		}
		if r != ExitIntr {
			return r
		}
	}
}

func TestGuestPortIOAndHalt(t *testing.T) {
	code := []byte{
		0xb0, 0x42, // mov al, 0x42
		0xe6, 0x10, // out 0x10, al
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xec,       // in al, dx
		0xe6, 0x11, // out 0x11, al
		0xf4, // hlt
	}
	tv := newTestVM(t, code)
	if r := tv.run(t); r != ExitIO {
		t.Fatalf("first exit %v, want IO", r)
	}
	out, port, size, data, err := tv.vcpu.IO()
	if err != nil || !out || port != 0x10 || size != 1 || len(data) != 1 || data[0] != 0x42 {
		t.Fatalf("IO exit: out=%v port=%#x size=%d data=%x err=%v", out, port, size, data, err)
	}
	if r := tv.run(t); r != ExitIO {
		t.Fatalf("second exit %v, want IO", r)
	}
	out, port, _, data, _ = tv.vcpu.IO()
	if out || port != 0x3f8 {
		t.Fatalf("IN exit: out=%v port=%#x", out, port)
	}
	data[0] = 0x5a // the value the guest's IN reads
	if r := tv.run(t); r != ExitIO {
		t.Fatalf("third exit %v", r)
	}
	if _, port, _, data, _ = tv.vcpu.IO(); port != 0x11 || data[0] != 0x5a {
		t.Fatalf("guest echoed %#x to port %#x, want 0x5a to 0x11", data[0], port)
	}
	if r := tv.run(t); r != ExitHLT {
		t.Fatalf("exit %v, want HLT", r)
	}
}

func TestGuestMMIOExit(t *testing.T) {
	code := []byte{
		0xb8, 0x00, 0x20, // mov ax, 0x2000
		0x8e, 0xd8, // mov ds, ax
		0xc6, 0x06, 0x34, 0x12, 0x99, // mov byte [0x1234], 0x99
		0xa1, 0x00, 0x01, // mov ax, [0x100]
		0xe6, 0x12, // out 0x12, al
		0xf4,
	}
	tv := newTestVM(t, code)
	if r := tv.run(t); r != ExitMMIO {
		t.Fatalf("exit %v, want MMIO", r)
	}
	write, addr, data, err := tv.vcpu.MMIO()
	if err != nil || !write || addr != 0x21234 || len(data) != 1 || data[0] != 0x99 {
		t.Fatalf("MMIO write: write=%v addr=%#x data=%x err=%v", write, addr, data, err)
	}
	if r := tv.run(t); r != ExitMMIO {
		t.Fatalf("exit %v, want MMIO read", r)
	}
	write, addr, data, _ = tv.vcpu.MMIO()
	if write || addr != 0x20100 || len(data) != 2 {
		t.Fatalf("MMIO read: write=%v addr=%#x len=%d", write, addr, len(data))
	}
	data[0], data[1] = 0x77, 0x00
	if r := tv.run(t); r != ExitIO {
		t.Fatalf("exit %v, want IO", r)
	}
	if _, _, _, d, _ := tv.vcpu.IO(); d[0] != 0x77 {
		t.Fatalf("guest read %#x from MMIO, want 0x77", d[0])
	}
}

func TestKickStopsSpinningVCPU(t *testing.T) {
	tv := newTestVM(t, []byte{0xeb, 0xfe}) // jmp $
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tv.vcpu.BindThread(true)
		defer tv.vcpu.BindThread(false)
		r, err := tv.vcpu.Run()
		if err == nil && r != ExitIntr {
			err = errors.New("exit " + r.String())
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("vCPU left KVM_RUN before the kick: %v", err)
	default:
	}
	tv.vcpu.Kick()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Kick did not stop a spinning vCPU")
	}
	// immediate_exit stays set until ClearKick: the next Run returns at once.
	if r := tv.run0(t); r != ExitIntr {
		t.Fatalf("Run after Kick: %v, want INTR", r)
	}
}

func (tv *testVM) run0(t *testing.T) ExitReason {
	r, err := tv.vcpu.Run()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSupportedCPUIDHasHypervisorLeaf(t *testing.T) {
	tv := newTestVM(t, []byte{0xf4})
	es, err := tv.sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range es {
		if e.Function == 0x40000000 && e.EBX == 0x4b4d564b { // "KVMK"
			found = true
		}
	}
	if !found {
		t.Fatalf("no KVM signature leaf among %d entries", len(es))
	}
	if err := tv.vcpu.SetCPUID2(VCPUCPUID(es, 0, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestIRQChipAndRouting(t *testing.T) {
	tv := newTestVM(t, []byte{0xf4})
	_ = tv
	// A fresh VM for the irqchip: it must precede vCPU creation.
	vm, err := tv.sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreatePIT2(); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetGSIRouting(append(DefaultGSIRouting(), MSIRoute(24, 0xfee00000, 0x30))); err != nil {
		t.Fatal(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := vm.RegisterIRQFD(efd, 24); err != nil {
		t.Fatal(err)
	}
	if err := vm.UnregisterIRQFD(efd, 24); err != nil {
		t.Fatal(err)
	}
	ioe := IOEventFD{FD: efd, Addr: 0xd0000000, Len: 4}
	if err := vm.RegisterIOEventFD(ioe); err != nil {
		t.Fatal(err)
	}
	if err := vm.UnregisterIOEventFD(ioe); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetIRQLine(4, true); err != nil {
		t.Fatal(err)
	}
	// KVM resets every IOAPIC pin masked (edge); a raised masked pin stays
	// latched in IRR.
	io, err := vm.IOAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if io.IRR&(1<<4) == 0 || !io.RedirTbl[4].Masked() || io.RedirTbl[4].Level() || io.BaseAddress != 0xfec00000 {
		t.Fatalf("IOAPIC after raising pin 4: irr %#x, entry %#x, base %#x", io.IRR, io.RedirTbl[4], io.BaseAddress)
	}
	v, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.LAPIC(); err != nil {
		t.Fatal(err)
	}
	if ev, err := v.Events(); err != nil || ev.IntrInjected != 0 {
		t.Fatalf("fresh vCPU's events: %+v, %v", ev, err)
	}
	if err := v.SetMSRs([]MSR{{Index: 0x2ff, Data: 0x806}}); err != nil {
		t.Fatal(err)
	}
	got := []MSR{{Index: 0x2ff}}
	if err := v.GetMSRs(got); err != nil || got[0].Data != 0x806 {
		t.Fatalf("MTRRdefType = %#x, %v", got[0].Data, err)
	}
}
