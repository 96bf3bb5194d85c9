package vmm

import (
	"encoding/binary"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestVCPUGroupRekicksAndReports: a vCPU that ignores its first kicks
// (a lost interrupt) is kicked again until it leaves, and reported once
// when it is still in after the wait; one that left at once is never
// kicked or reported.
func TestVCPUGroupRekicksAndReports(t *testing.T) {
	g := newVCPUGroup(2)
	var kicks [2]atomic.Int32
	release := make(chan struct{})
	g.run(0, func() {}) // leaves at the stop's own kick
	g.run(1, func() { <-release })
	var stuck []int
	waitFor := func(cond func() bool) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("timed out")
			}
		}
	}
	waitFor(func() bool { return g.left[0].Load() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.await(30*time.Millisecond, 5*time.Millisecond, func(i int) {
			if kicks[i].Add(1) == 10 {
				close(release) // the tenth kick gets through
			}
		}, func(i int, waited time.Duration) {
			if waited < 30*time.Millisecond {
				t.Errorf("vCPU %d reported stuck after %v, before the wait", i, waited)
			}
			stuck = append(stuck, i)
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("await did not return after the vCPU left")
	}
	if kicks[0].Load() != 0 {
		t.Errorf("vCPU 0 left at once but was kicked %d more times", kicks[0].Load())
	}
	if kicks[1].Load() != 10 {
		t.Errorf("vCPU 1 kicked %d times, want until it left (10)", kicks[1].Load())
	}
	if len(stuck) != 1 || stuck[0] != 1 {
		t.Errorf("reported stuck: %v, want vCPU 1 once", stuck)
	}
}

// TestVCPUGroupQuietWhenAllLeave: a stop every vCPU answers logs nothing
// and kicks nobody again.
func TestVCPUGroupQuietWhenAllLeave(t *testing.T) {
	g := newVCPUGroup(3)
	for i := range 3 {
		g.run(i, func() { time.Sleep(time.Millisecond) })
	}
	g.await(time.Millisecond, time.Hour, func(i int) { t.Errorf("vCPU %d kicked again", i) },
		func(i int, _ time.Duration) { t.Errorf("vCPU %d reported stuck", i) })
}

// movAbs is mov dword [addr], v.
func movAbs(addr, v uint32) vmmtest.Program {
	p := vmmtest.Program{0xc7, 0x04, 0x25}
	p = binary.LittleEndian.AppendUint32(p, addr)
	return binary.LittleEndian.AppendUint32(p, v)
}

// resetFromBothVCPUs starts vCPU 1 (INIT, SIPI to a real-mode trampoline at
// 0x10000 that sets the byte at 0x100 and resets through the i8042), waits
// for the byte and resets too: two vCPUs pulse the reset line at once.
var resetFromBothVCPUs = vmmtest.Concat(
	// Trampoline: mov byte [0x100], 1; mov al, 0xfe; out 0x64, al; hlt; jmp $-3.
	movAbs(0x10000, 0x010006c6), movAbs(0x10004, 0xe6feb001), movAbs(0x10008, 0xfdebf464),
	movAbs(0xfee00310, 1<<24), movAbs(0xfee00300, 0x4500), movAbs(0xfee00300, 0x4610), // INIT, SIPI 0x10 to APIC 1
	vmmtest.Program{0x80, 0x3c, 0x25, 0x00, 0x01, 0x00, 0x00, 0x01, 0x75, 0xf6}, // wait: cmp byte [0x100], 1; jne wait
	vmmtest.ResetViaI8042)

// TestResetFromTwoVCPUsAtOnce: both vCPUs asking for a reset together end
// the VM once, as a reset, with Run back at once.
func TestResetFromTwoVCPUsAtOnce(t *testing.T) {
	for range 5 {
		start := time.Now()
		res, _ := bootTiny(t, resetFromBothVCPUs, func(c *Config) { c.CPUs = 2 })
		if res.Reason != stopReset || res.ExitCode() != ExitOK {
			t.Fatalf("stopped with %v (%v): the AP did not start, or the resets collided", res.Reason, res.Err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	}
}

// blockingPort is a device whose register writes wait until release is
// closed: a device bug that holds the vCPU in Flint's exit handling.
type blockingPort struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// outBlockingPort is guest code that writes a blockingPort (out 0x99, al)
// and then spins.
var outBlockingPort = vmmtest.Program{0xb0, 0x01, 0xe6, 0x99, 0xeb, 0xfe}

// addBlockingPort puts a blockingPort on m's I/O port 0x99.
func addBlockingPort(t *testing.T, m *Machine) *blockingPort {
	t.Helper()
	dev := &blockingPort{entered: make(chan struct{}), release: make(chan struct{})}
	if err := m.pio.Insert(dev, 0x99, 1); err != nil {
		t.Fatal(err)
	}
	return dev
}

func (d *blockingPort) Read(uint64, []byte) {}
func (d *blockingPort) Write(uint64, []byte) {
	d.once.Do(func() { close(d.entered) })
	<-d.release
}

// lockedLog is a slog destination safe for the vCPU goroutines' writes.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStopStuckInFlintBlamesFlint: a vCPU held by a device's register
// access that never returns is reported as stuck in Flint's handling of
// an exit, not as a kernel that does not return it from KVM_RUN.
func TestStopStuckInFlintBlamesFlint(t *testing.T) {
	needKVM(t)
	var log lockedLog
	m, err := New(Config{Kernel: vmmtest.BzImage(outBlockingPort),
		CPUs: 1, MemoryMiB: 64, Console: "none", Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev := addBlockingPort(t, m)
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	select {
	case <-dev.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest never wrote the port")
	}
	m.stop(stopUser, nil)
	deadline := time.Now().Add(stopWait + 5*time.Second)
	for !strings.Contains(log.String(), "stop: vCPU") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	close(dev.release)
	<-done
	got := log.String()
	if !strings.Contains(got, VCPUStopStuckInFlintMsg) || strings.Contains(got, VCPUStopStuckMsg) {
		t.Fatalf("log %q: want %q, not %q", got, VCPUStopStuckInFlintMsg, VCPUStopStuckMsg)
	}
}
