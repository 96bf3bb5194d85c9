package vmm

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/vmm/vmmtest"
)

// repOutsb returns code that writes n bytes of guest memory from 1 MiB on
// to COM1 with one rep outsb (string I/O: KVM exits with count > 1).
func repOutsb(n uint32) vmmtest.Program {
	p := vmmtest.Program{0x48, 0xc7, 0xc6, 0x00, 0x00, 0x10, 0x00, 0xb9} // mov rsi, 0x100000; mov ecx, imm32
	p = binary.LittleEndian.AppendUint32(p, n)
	return append(p, 0x66, 0xba, 0xf8, 0x03, 0xf3, 0x6e) // mov dx, 0x3f8; rep outsb
}

// stalledStdio is a console's stdout that nobody reads until the test
// reads r, and a stdin that gives nothing; all closed at the test's end.
func stalledStdio(t *testing.T) (r, w, devnull *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	if devnull, err = os.Open(os.DevNull); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	return r, w, devnull
}

// floodConsole writes 1 MiB to COM1 again and again.
var floodConsole = append(repOutsb(1<<20), 0xeb, 0xec) // jmp back to the mov rsi

// TestStalledConsoleDoesNotHoldTheStop: a guest writing its UART in a loop
// while nobody reads flint's stdout used to leave its vCPU blocked in the
// console's write, so a SIGTERM (or any stop) never ended Run: the vCPU
// never got back to KVM_RUN to see the kick. The output now waits in a
// bounded queue, the vCPU leaves at once, and after a signal flint gives
// the reader signalFlushWait before it drops the rest.
func TestStalledConsoleDoesNotHoldTheStop(t *testing.T) {
	needKVM(t)
	_, w, devnull := stalledStdio(t)
	logs := newCapture(t)
	m, err := New(Config{Kernel: vmmtest.BzImage(floodConsole), CPUs: 2, MemoryMiB: 64, Console: "stdio",
		Stdin: devnull, Stdout: w, HandleSignals: true, Log: slog.New(slog.NewTextHandler(logs.w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// A smaller bound, for the guest's sake: PVM may exit once per byte.
	const bound = 64 << 10
	m.plat.out.max = bound
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	// Until the vCPU waits: without a bound on the queue, past it; without
	// the queue, once the pipe's buffer is full.
	for end, last := time.Now().Add(20*time.Second), uint64(0); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		tx := m.plat.uart.Stats().TXBytes
		if tx > 4*bound || tx > 0 && tx == last {
			break
		}
		last = tx
	}
	m.stopWithSignal(syscall.SIGTERM)
	select {
	case res := <-done:
		defer m.Close()
		if res.Reason != stopSignal {
			t.Fatalf("stopped with %v (%v), want the signal", res.Reason, res.Err)
		}
	case <-time.After(10 * time.Second):
		// No Close: the vCPUs still run.
		t.Fatalf("a SIGTERM did not end Run while the console's reader was stalled (the guest wrote %d bytes)", m.plat.uart.Stats().TXBytes)
	}
	m.plat.out.mu.Lock()
	queued := len(m.plat.out.q)
	m.plat.out.mu.Unlock()
	if queued > bound {
		t.Errorf("%d bytes queued for the console, more than the bound %d", queued, bound)
	}
	if log := logs.String(); !strings.Contains(log, "console: the console's reader did not take the guest's last output") {
		t.Errorf("the dropped output was not logged; log:\n%s", log)
	}
}

// TestConsoleWaitsForASlowReader: output still queued when the guest
// powers off reaches a reader that pauses until after it, every byte and
// in order: Run's flush waits for it.
func TestConsoleWaitsForASlowReader(t *testing.T) {
	needKVM(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(5 * time.Second) // after the guest powered off
		b, _ := io.ReadAll(r)
		got <- b
	}()
	const n = 80 << 10 // past the pipe's buffer: some wait in the queue at the power-off
	prog := vmmtest.Concat(vmmtest.Print("<"), repOutsb(n), vmmtest.Print(">"), vmmtest.PowerOffViaACPI)
	res, _ := bootTiny(t, prog, func(c *Config) { c.Stdout = w })
	w.Close()
	if res.Reason != stopPowerOff {
		t.Fatalf("stopped with %v (%v)", res.Reason, res.Err)
	}
	b := <-got
	if len(b) != n+2 || b[0] != '<' || b[n+1] != '>' {
		t.Fatalf("the reader got %d bytes, want %d between < and >", len(b), n)
	}
}

// TestExitMarkerBeforePowerOff: the marker is seen as the guest writes it,
// not when the console gets it, so a guest that prints it and powers off
// at once has printed it (exit code 0, not ExitNoMarker).
func TestExitMarkerBeforePowerOff(t *testing.T) {
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.Print("TESTS-OK"), vmmtest.PowerOffViaACPI), func(c *Config) {
		c.ExitMarker = "TESTS-OK"
	})
	if res.Reason != stopMarker || out != "TESTS-OK" {
		t.Fatalf("stopped with %v, console %q", res.Reason, out)
	}
}

// stalledWriter takes nothing until release is closed, then keeps what it gets.
type stalledWriter struct {
	release chan struct{}
	buf     bytes.Buffer
}

func (b *stalledWriter) Write(p []byte) (int, error) {
	<-b.release
	return b.buf.Write(p)
}

// TestConsoleOutBounded: a full queue makes a Write wait, until the drain
// makes room or the VM stops (then the bytes are dropped and counted); a
// flush given up returns.
func TestConsoleOutBounded(t *testing.T) {
	bw := &stalledWriter{release: make(chan struct{})}
	stopped := make(chan struct{})
	c := newConsoleOut(bw, time.Now(), stopped, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.max = 8
	write := func(s string) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
				t.Errorf("Write(%q) = %d, %v", s, n, err)
			}
		}()
		return done
	}
	<-write("abcd") // the drain holds it, blocked
	for {
		c.mu.Lock()
		took := len(c.q) == 0
		c.mu.Unlock()
		if took {
			break
		}
		time.Sleep(time.Millisecond)
	}
	<-write("efgh")
	<-write("ijkl") // 8 bytes queued: at the bound
	blocked := write("m")
	select {
	case <-blocked:
		t.Fatal("a Write past the bound did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	close(stopped)
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the stop did not release the waiting Write")
	}
	giveUp := make(chan struct{})
	close(giveUp)
	c.flush(giveUp) // the writer is still stalled
	if c.dropped != 1 {
		t.Errorf("dropped %d bytes, want 1", c.dropped)
	}
	close(bw.release)
	c.flush(make(chan struct{}))
	if got := bw.buf.String(); got != "abcdefghijkl" {
		t.Errorf("console got %q", got)
	}
}

// TestSignalWhileStoppingEndsTheFlush: a SIGTERM that comes after the VM
// stopped for another reason, while Run still waits for a vCPU, ends the
// wait for a stalled console reader. It used to be taken by Run's signal
// channel, which nobody read once the VM had stopped, and the flush
// (listening only from its start on) waited for the reader forever.
func TestSignalWhileStoppingEndsTheFlush(t *testing.T) {
	needKVM(t)
	r, w, devnull := stalledStdio(t)
	// 200 KiB to a pipe nobody reads (64 KiB): the rest waits in the
	// queue; then a write to the port that holds the vCPU in the device.
	prog := vmmtest.Concat(repOutsb(200<<10), outBlockingPort)
	m, err := New(Config{Kernel: vmmtest.BzImage(prog), CPUs: 1, MemoryMiB: 64, Console: "stdio",
		Stdin: devnull, Stdout: w, HandleSignals: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	dev := addBlockingPort(t, m)
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	select {
	case <-dev.entered:
	case <-time.After(20 * time.Second):
		close(dev.release)
		m.Stop()
		go io.Copy(io.Discard, r)
		<-done
		m.Close()
		t.Fatal("the guest never wrote the port")
	}
	m.Stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil { // Run's handler has it
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(dev.release)
	select {
	case res := <-done:
		m.Close()
		if res.Reason != stopUser {
			t.Fatalf("stopped with %v (%v), want the Stop", res.Reason, res.Err)
		}
	case <-time.After(5 * time.Second):
		go io.Copy(io.Discard, r) // let Run end
		<-done
		m.Close()
		t.Fatal("a SIGTERM while the VM was stopping did not end the wait for the stalled console reader")
	}
}

// failingWriter refuses every write, as a hung-up terminal does (EIO).
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.EIO }

// stalledLog is a log destination whose reader stalls: its first write
// waits until release is closed.
type stalledLog struct {
	entered, release chan struct{}
	once             sync.Once
}

func (l *stalledLog) Write(p []byte) (int, error) {
	l.once.Do(func() { close(l.entered) })
	<-l.release
	return len(p), nil
}

// TestConsoleErrorLogDoesNotHoldWrites: the drain logs a console that
// refuses its writes without holding the queue's lock, so a log whose
// reader stalls cannot hold the guest's next Write (a vCPU, holding the
// UART, that no stop would then get back).
func TestConsoleErrorLogDoesNotHoldWrites(t *testing.T) {
	l := &stalledLog{entered: make(chan struct{}), release: make(chan struct{})}
	c := newConsoleOut(failingWriter{}, time.Now(), make(chan struct{}), slog.New(slog.NewTextHandler(l, nil)))
	c.Write([]byte("a"))
	select {
	case <-l.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the failed console write was not logged")
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		c.Write([]byte("b"))
	}()
	select {
	case <-wrote:
	case <-time.After(2 * time.Second):
		close(l.release)
		<-wrote
		t.Fatal("a Write waited for the log of the console's error")
	}
	close(l.release)
	c.flush(make(chan struct{}))
}
