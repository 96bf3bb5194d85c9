package vmm

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/vmm/vmmtest"
)

// nmiToAP1 sends an NMI IPI to APIC id 1 through the xAPIC's ICR, then
// spins.
var nmiToAP1 = vmmtest.Program{
	0xb8, 0x10, 0x03, 0xe0, 0xfe, // mov eax, 0xfee00310 (ICR high)
	0xc7, 0x00, 0x00, 0x00, 0x00, 0x01, // mov dword [rax], 1 << 24: APIC id 1
	0xb8, 0x00, 0x03, 0xe0, 0xfe, // mov eax, 0xfee00300 (ICR low)
	0xc7, 0x00, 0x00, 0x04, 0x00, 0x00, // mov dword [rax], 0x400: delivery mode NMI
	0xeb, 0xfe, // jmp $
}

// TestNMIToUnstartedAPDoesNotSpin: an NMI sent to an application processor
// the guest never started stays pending, and KVM_RUN on that vCPU returns
// EAGAIN at once, every time. The run loop used to call it again at once:
// one IPI made the vCPU's thread spin a host core (some 60000 KVM_RUNs a
// second on this project's PVM host) for as long as the VM ran. It now
// backs off; a stop still ends the VM at once.
func TestNMIToUnstartedAPDoesNotSpin(t *testing.T) {
	needKVM(t)
	m, err := New(Config{Kernel: vmmtest.BzImage(nmiToAP1), CPUs: 2, MemoryMiB: 64, Console: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	time.Sleep(time.Second)
	n := m.exits[1].again.Load()
	stopAt := time.Now()
	m.Stop()
	select {
	case res := <-done:
		if res.Reason != stopUser {
			t.Fatalf("stopped with %v (%v)", res.Reason, res.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end Run")
	}
	if d := time.Since(stopAt); d > 2*time.Second {
		t.Errorf("the stop took %v", d)
	}
	t.Logf("vCPU 1: %d KVM_RUN EAGAIN returns in the first second", n)
	if n > 1000 {
		t.Errorf("vCPU 1 returned EAGAIN %d times in a second: its thread spins", n)
	}
}

func TestAgainWait(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 0, againFree: 0, againFree + 1: againStep, againFree + 1000: againMaxWait} {
		if got := againWait(n); got != want {
			t.Errorf("againWait(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestEmulationFailureNamesIt: an x87 load from MMIO, which KVM does not
// emulate, ends the VM with one line that says what the suberror means.
func TestEmulationFailureNamesIt(t *testing.T) {
	prog := vmmtest.Program{0xb8, 0x00, 0x00, 0x00, 0xd0, 0xd9, 0x00} // mov eax, 0xd0000000; fld dword [rax]
	res, _ := bootTiny(t, vmmtest.Concat(prog, vmmtest.ResetViaI8042), nil)
	if res.Reason != stopError {
		t.Skipf("this KVM handled fld from MMIO without an internal error (the VM stopped with %v)", res.Reason)
	}
	const want = "vCPU 0: KVM_EXIT_INTERNAL_ERROR, suberror 1 (emulation failure: KVM could not emulate the guest's instruction)"
	if res.Err == nil || res.Err.Error() != want || res.ExitCode() != ExitVMMErr {
		t.Fatalf("error %v (exit code %d), want %q (exit code %d)", res.Err, res.ExitCode(), want, ExitVMMErr)
	}
}

// portScan reads and writes (zeros) every I/O port at every width, then
// falls through.
var portScan = vmmtest.Program{
	0x31, 0xd2, // xor edx, edx
	0xec,       // next: in al, dx
	0x66, 0xed, // in ax, dx
	0xed,       // in eax, dx
	0x31, 0xc0, // xor eax, eax
	0xee,       // out dx, al
	0x66, 0xef, // out dx, ax
	0xef,             // out dx, eax
	0x66, 0xff, 0xc2, // inc dx
	0x75, 0xf1, // jnz next
}

// TestPortScan: a guest touching all 65536 ports with every access width
// (unclaimed ports, accesses straddling a device's end, zeros written to
// every register) neither stops the VM nor writes to the log.
func TestPortScan(t *testing.T) {
	logs := newCapture(t)
	res, out := bootTiny(t, vmmtest.Concat(portScan, vmmtest.Print("scanned"), vmmtest.ResetViaI8042), func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(logs.w, &slog.HandlerOptions{Level: slog.LevelWarn}))
		c.Timeout = 60 * time.Second
	})
	if res.Reason != stopReset || !strings.HasSuffix(out, "scanned") {
		t.Fatalf("stopped with %v (%v), console %q", res.Reason, res.Err, out)
	}
	if l := logs.String(); l != "" {
		t.Errorf("the scan was logged:\n%s", l)
	}
}
