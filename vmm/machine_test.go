package vmm

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// These tests boot tiny hand-assembled kernels (package vmmtest) through the
// whole VMM: boot protocol loader, vCPU setup, buses, UART, i8042, ACPI
// power-off and the stop paths. They run under any /dev/kvm, PVM included.

func needKVM(t *testing.T) {
	t.Helper()
	testenv.RequireTinyGuests(t)
}

// syncBuffer is a console file stand-in: a pipe whose read end we collect.
type capture struct {
	r, w *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func newCapture(t *testing.T) *capture {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { r.Close() })
	return c
}

func (c *capture) String() string {
	c.w.Close()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func bootTiny(t *testing.T, prog vmmtest.Program, mod func(*Config)) (Result, string) {
	t.Helper()
	needKVM(t)
	out := newCapture(t)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	cfg := Config{
		Kernel:    vmmtest.BzImage(prog),
		Cmdline:   "console=ttyS0 flint-test",
		CPUs:      1,
		MemoryMiB: 64,
		Console:   "stdio",
		Stdin:     devnull,
		Stdout:    out.w,
		Timeout:   20 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := m.Run()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return res, out.String()
}

func TestTinyKernelPrintsCmdlineAndResets(t *testing.T) {
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.PostCode, vmmtest.PrintCmdline, vmmtest.Print("\n"), vmmtest.ResetViaI8042), nil)
	if res.Reason != stopReset || res.ExitCode() != 0 {
		t.Fatalf("stopped with %v (%v), want guest reset", res.Reason, res.Err)
	}
	if out != "console=ttyS0 flint-test\n" {
		t.Fatalf("console = %q: the guest did not find the command line through the zero page", out)
	}
	if res.FirstGuestIO <= 0 || res.FirstConsoleByte < res.FirstGuestIO {
		t.Fatalf("timing: first I/O %v, first console byte %v", res.FirstGuestIO, res.FirstConsoleByte)
	}
}

func TestTinyKernelPowerOff(t *testing.T) {
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.Print("bye"), vmmtest.PowerOffViaACPI), nil)
	if res.Reason != stopPowerOff || res.ExitCode() != 0 || out != "bye" {
		t.Fatalf("stopped with %v, console %q", res.Reason, out)
	}
}

func TestExitMarker(t *testing.T) {
	// The marker arrives split across many one-byte UART writes; the guest
	// then spins, so only the marker can end the VM.
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.Print("booting\nALL-TESTS-OK\n"), vmmtest.Spin), func(c *Config) {
		c.ExitMarker = "TESTS-OK"
	})
	if res.Reason != stopMarker || res.ExitCode() != 0 {
		t.Fatalf("stopped with %v, want marker", res.Reason)
	}
	if !strings.Contains(out, "ALL-TESTS-OK") {
		t.Fatalf("console %q", out)
	}
}

func TestExitMarkerMissingIsAFailure(t *testing.T) {
	res, _ := bootTiny(t, vmmtest.Concat(vmmtest.Print("panic\n"), vmmtest.ResetViaI8042), func(c *Config) {
		c.ExitMarker = "TESTS-OK"
	})
	if res.Reason != stopNoMarker || res.ExitCode() != ExitNoMarker {
		t.Fatalf("stopped with %v code %d, want no-marker code %d", res.Reason, res.ExitCode(), ExitNoMarker)
	}
}

func TestTimeoutStopsSpinningAndHaltedGuests(t *testing.T) {
	for name, prog := range map[string]vmmtest.Program{"spin": vmmtest.Spin, "halt": vmmtest.Halt} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			logs := newCapture(t)
			res, _ := bootTiny(t, prog, func(c *Config) {
				c.Timeout = 200 * time.Millisecond
				c.CPUs = 2
				c.Log = slog.New(slog.NewTextHandler(logs.w, nil))
			})
			if res.Reason != stopTimeout || res.ExitCode() != ExitTimeout {
				t.Fatalf("stopped with %v", res.Reason)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v to stop", d)
			}
			// The log says where each vCPU was when time ran out.
			log := logs.String()
			if !strings.Contains(log, "timeout: the guest did not finish") ||
				!strings.Contains(log, `msg="dump: vCPU" vcpu=0`) || !strings.Contains(log, `msg="dump: vCPU" vcpu=1`) {
				t.Errorf("no state dump of both vCPUs at the timeout; log:\n%s", log)
			}
			// ... and where interrupts stand: each LAPIC, and the IOAPIC
			// (whose pins the tiny guest never unmasks).
			if strings.Count(log, "lapic_irr=- lapic_isr=-") != 2 || !strings.Contains(log, "intr_injected=false") ||
				!strings.Contains(log, `msg="dump: IOAPIC" irr=`) {
				t.Errorf("no interrupt state in the dump; log:\n%s", log)
			}
		})
	}
}

func TestStopFromAnotherGoroutine(t *testing.T) {
	needKVM(t)
	m, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 2, MemoryMiB: 64, Console: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	done := make(chan Result)
	go func() { done <- m.Run() }()
	time.Sleep(100 * time.Millisecond)
	m.Stop()
	select {
	case res := <-done:
		if res.Reason != stopUser {
			t.Fatalf("reason %v", res.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end Run")
	}
}

func TestUnclaimedMMIOAndPortsDoNotStopTheGuest(t *testing.T) {
	prog := vmmtest.Concat(
		vmmtest.Program{
			0xb8, 0x00, 0x00, 0x00, 0xd0, // mov eax, 0xd0000000 (inside the MMIO hole, no device)
			0xc7, 0x00, 0x11, 0x22, 0x33, 0x44, // mov dword [rax], 0x44332211
			0x8b, 0x18, // mov ebx, [rax]
			0x66, 0xba, 0xf8, 0x02, // mov dx, 0x2f8 (COM2: nothing there)
			0xec, // in al, dx
		},
		vmmtest.Print("alive"), vmmtest.ResetViaI8042)
	res, out := bootTiny(t, prog, nil)
	if res.Reason != stopReset || out != "alive" {
		t.Fatalf("stopped with %v (%v), console %q", res.Reason, res.Err, out)
	}
}

func TestBadKernelIsAConfigError(t *testing.T) {
	needKVM(t)
	for name, k := range map[string][]byte{
		"empty":     nil,
		"garbage":   bytes.Repeat([]byte{0x5a}, 4096),
		"truncated": vmmtest.BzImage(vmmtest.Spin)[:600],
	} {
		_, err := New(Config{Kernel: k, CPUs: 1, MemoryMiB: 64, Console: "none"})
		var ce *ConfigError
		if err == nil || !errors.As(err, &ce) {
			t.Errorf("%s kernel: err = %v, want a ConfigError", name, err)
		}
	}
}
