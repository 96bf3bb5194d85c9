package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/boot/acpi"
	"github.com/flintvm/flint/devices"
	"github.com/flintvm/flint/devices/acpipm"
	"github.com/flintvm/flint/devices/cmos"
	"github.com/flintvm/flint/devices/debugport"
	"github.com/flintvm/flint/devices/i8042"
	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/devices/serial"
	"github.com/flintvm/flint/kvm"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/transport/mmio"
)

// platform holds the legacy devices every Flint machine has.
type platform struct {
	uart   *serial.UART
	kbc    *i8042.Controller
	pci    *pci.Bus
	debug  *debugport.DebugPort
	out    *consoleOut
	cancel context.CancelFunc
	// stopReason is why the machine stopped (read once it has).
	stopReason func() StopReason
}

// runContained runs fn, a goroutine's whole work (a vCPU's run loop, the
// console input), and turns a panic in it (a bug in a device its exits or
// input reach) into a stop of the VM with the reason and stack logged:
// the vCPUs leave KVM_RUN, Run returns, and the caller restores the
// terminal and flushes the metrics as after any other stop, instead of
// the process dying with the terminal raw (issue 13 finding 11). Virtio
// devices contain their own panics (NEEDS_RESET); this is the net under
// everything else.
func (m *Machine) runContained(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error(what+" panicked; stopping the VM", "panic", r, "stack", string(debug.Stack()))
			m.stop(stopError, fmt.Errorf("%s: internal error: %v", what, r))
		}
	}()
	fn()
}

// irqLine drives one GSI of the in-kernel irqchip: a platform device's
// ISA IRQ, or a PCI function's INTA# line (a level-triggered IOAPIC pin).
type irqLine struct {
	vm  *kvm.VM
	gsi uint32
}

func (l irqLine) SetLevel(high bool) error { return l.vm.SetIRQLine(l.gsi, high) }

var _ devices.IRQLine = irqLine{}

// consoleOut is the UART's output: it records when the first byte came,
// watches for the exit marker, and queues the bytes for the console, which
// its own goroutine writes (drain). A vCPU's THR write therefore never
// waits for the console's reader (a pipe whose reader paused, a terminal
// stopped with ^S): it waits only while consoleQueueBytes are queued, and
// not once the VM is stopping, so a stalled reader can neither hold a stop
// (SIGTERM, the API, the guest's reset) nor make the queue grow. What the
// queue holds when the VM stops is written by flush.
type consoleOut struct {
	w       io.Writer // the console (command mode taps it); only drain writes to it
	watch   io.Writer // sees every byte as the guest writes it: the exit marker; may be nil
	start   time.Time
	stopped <-chan struct{} // closed when the VM stops
	log     *slog.Logger
	max     int // bytes queued before a Write waits

	firstByte atomic.Int64 // nanoseconds since start, 0 until the first byte
	wmu       sync.Mutex   // one Write at a time (the UART serialises them already)

	mu       sync.Mutex
	q, spare []byte
	draining bool          // a drain goroutine is running
	empty    chan struct{} // closed when that drain has written everything
	room     chan struct{} // capacity 1: drain took the queue
	dropped  uint64        // bytes a stopped VM's full queue had no room for
	failed   bool          // the console refused a write (logged once)
}

// consoleQueueBytes bounds the guest's console output Flint holds while the
// console is slow to take it.
const consoleQueueBytes = 1 << 20

func newConsoleOut(w io.Writer, start time.Time, stopped <-chan struct{}, log *slog.Logger) *consoleOut {
	return &consoleOut{w: w, start: start, stopped: stopped, log: log, max: consoleQueueBytes, room: make(chan struct{}, 1)}
}

func (c *consoleOut) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.firstByte.Load() == 0 {
		c.firstByte.CompareAndSwap(0, int64(max(time.Since(c.start), 1)))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.watch != nil {
		c.watch.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.q) > 0 && len(c.q)+len(p) > c.max {
		c.mu.Unlock()
		select {
		case <-c.room:
		case <-c.stopped:
			c.mu.Lock()
			if len(c.q) > 0 && len(c.q)+len(p) > c.max {
				c.dropped += uint64(len(p))
				return len(p), nil
			}
			continue
		}
		c.mu.Lock()
	}
	c.q = append(c.q, p...)
	if !c.draining {
		c.draining = true
		c.empty = make(chan struct{})
		go c.drain()
	}
	return len(p), nil
}

// drain writes the queue to the console until it is empty.
func (c *consoleOut) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.q) > 0 {
		chunk := c.q
		c.q = c.spare[:0]
		c.mu.Unlock()
		select {
		case c.room <- struct{}{}:
		default:
		}
		_, err := c.w.Write(chunk)
		c.mu.Lock()
		c.spare = chunk[:0]
		if err != nil && !c.failed {
			c.failed = true
			// Not under mu: a log whose reader stalls must not hold a
			// vCPU's Write, which takes mu, past the VM's stop.
			c.mu.Unlock()
			c.log.Warn("console: writing the guest's output failed; what it could not take is lost", "err", err)
			c.mu.Lock()
		}
	}
	c.draining = false
	close(c.empty)
}

// flush waits until the console has taken every queued byte, or until
// abandon is closed; then it logs what is left unwritten.
func (c *consoleOut) flush(abandon <-chan struct{}) {
	c.mu.Lock()
	empty := c.empty
	busy := c.draining
	c.mu.Unlock()
	if busy {
		select {
		case <-empty:
		case <-abandon:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if left := c.dropped + uint64(len(c.q)); left > 0 || c.draining {
		c.log.Warn("console: the console's reader did not take the guest's last output; it is dropped",
			"dropped_bytes", left, "still_writing", c.draining)
	}
}

// addPlatformDevices creates the UART, i8042, CMOS, debug port, ACPI power
// registers and PCI host bridge, and puts them on the PIO bus.
func (m *Machine) addPlatformDevices() error {
	out := newConsoleOut(m.con.out, m.start, m.stopped, m.log)
	if m.cfg.ExitMarker != "" {
		// Looked for as the guest writes, so a guest that prints the
		// marker and then powers off has printed it first.
		out.watch = &markerWriter{w: io.Discard, marker: []byte(m.cfg.ExitMarker), found: func() { m.stop(stopMarker, nil) }}
	}
	p := &platform{out: out, stopReason: func() StopReason { return m.result.Reason }}
	p.uart = serial.New(out, irqLine{m.vm, com1IRQ})
	p.kbc = i8042.New(i8042.Config{
		OnReset:     func() { m.stop(stopReset, nil) },
		KeyboardIRQ: irqLine{m.vm, 1},
		AuxIRQ:      irqLine{m.vm, 12},
		Keyboard:    m.cfg.Keyboard,
	})
	p.pci = pci.NewBus(pci.BusConfig{OnReset: func() { m.stop(stopReset, nil) }})
	p.debug = debugport.New(m.start, 0)
	pm := acpipm.New(acpipm.Config{
		OnPowerOff: func() { m.stop(stopPowerOff, nil) },
		OnReset:    func() { m.stop(stopReset, nil) },
	})
	var low, high uint64
	for _, r := range m.mem.Regions() {
		if r.GuestAddr < mem.HighMemStart {
			low += r.Size()
		} else {
			high += r.Size()
		}
	}
	rtc := cmos.New(cmos.Config{LowMemory: low, HighMemory: high})
	m.plat = p
	for _, d := range []struct {
		dev        devices.Device
		base, size uint64
	}{
		{p.uart, com1Port, 8},
		{p.kbc.DataPort(), i8042Data, 1},
		{p.kbc.CommandPort(), i8042Cmd, 1},
		{rtc, cmosPort, 2},
		{p.debug, debugPort, 1},
		{p.pci, pciConfig, pciSize},
		{pm, acpipm.Base, acpipm.Size},
	} {
		if err := m.pio.Insert(d.dev, d.base, d.size); err != nil {
			return err
		}
	}
	return nil
}

// acpiConfig describes the platform to the guest.
func (m *Machine) acpiConfig() *acpi.Config {
	return &acpi.Config{
		CPUs:             m.cfg.CPUs,
		SleepControlPort: acpipm.SleepControlPort,
		SleepStatusPort:  acpipm.SleepStatusPort,
		ResetPort:        i8042Cmd,
		ResetValue:       i8042Reset,
		I8042:            true,
		RTC:              true,
		Serial:           []acpi.SerialPort{{Port: com1Port, IRQ: com1IRQ}},
		Devices:          m.acpiDevices,
		PCI: &acpi.PCIHostBridge{
			MMIO32: pciMMIOWindow,
			INTx:   m.pciINTx,
		},
	}
}

// cmdline is the kernel command line: the configured one, plus the
// virtio-mmio devices when MMIOCmdline asks for them.
func (m *Machine) cmdline() string {
	if !m.cfg.MMIOCmdline {
		return m.cfg.Cmdline
	}
	return strings.TrimSpace(m.cfg.Cmdline + " " + mmioCmdlineArgs(m.acpiDevices))
}

// mmioCmdlineArgs describes the virtio-mmio devices among ds in the
// format of Linux's virtio_mmio.device= parameter: SIZE@BASE:IRQ.
func mmioCmdlineArgs(ds []acpi.Device) string {
	var args []string
	for _, d := range ds {
		if d.HID == mmio.ACPIHID {
			args = append(args, fmt.Sprintf("virtio_mmio.device=%#x@%#x:%d", d.MMIOSize, d.MMIOBase, d.IRQ))
		}
	}
	return strings.Join(args, " ")
}

// loadKernel puts the kernel, initrd, command line and ACPI tables into
// guest memory and returns the BSP's entry state.
func (m *Machine) loadKernel() (*boot.Entry, error) {
	e, err := boot.Load(m.mem, boot.Config{
		Kernel:  m.cfg.Kernel,
		Initrd:  m.cfg.Initrd,
		Cmdline: m.cmdline(),
		CPUs:    m.cfg.CPUs,
		ACPI:    m.acpiConfig(),
		Entry:   m.cfg.KernelEntry,
	})
	if err != nil {
		if errors.Is(err, boot.ErrInvalidKernel) || errors.Is(err, boot.ErrBootConfig) {
			return nil, &ConfigError{Err: err}
		}
		return nil, err
	}
	pl := e.Placement
	m.log.Info("kernel loaded", "format", pl.Format, "entry", pl.EntryPath, "protocol", pl.Header.Version, "kernel_end", pl.KernelEnd,
		"initrd_addr", pl.InitrdAddr, "initrd_size", pl.InitrdSize, "e820_entries", len(pl.E820))
	return e, nil
}

// startConsoleInput feeds host input to the UART until the VM stops.
func (m *Machine) startConsoleInput() {
	in := m.con.in
	if in == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.plat.cancel = cancel
	go m.runContained("console input", func() {
		buf := make([]byte, 256)
		var esc escapeFilter
		for {
			n, err := in.Read(buf)
			if n > 0 {
				p, quit := esc.filter(buf[:n])
				if _, ferr := m.plat.uart.Feed(ctx, p); ferr != nil {
					return
				}
				if quit {
					m.stop(stopUser, nil)
					return
				}
			}
			if err != nil {
				return // EOF or closed: the guest just gets no more input
			}
		}
	})
}

// flush stops console input once the VM has stopped, and waits until the
// console has taken the guest's queued output, as a program writing to a
// pipe waits for its reader. When the machine handles signals (sigs, Run's
// channel, not nil), a VM that a signal stopped waits at most
// signalFlushWait, and a signal since the stop ends the wait: a stalled
// reader must not keep flint from exiting.
func (p *platform) flush(sigs <-chan os.Signal) {
	if p.cancel != nil {
		p.cancel()
	}
	giveUp := make(chan struct{})
	if sigs != nil {
		var deadline <-chan time.Time
		if p.stopReason() == stopSignal {
			t := time.NewTimer(signalFlushWait)
			defer t.Stop()
			deadline = t.C
		}
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-sigs:
			case <-deadline:
			case <-done:
				return
			}
			close(giveUp)
		}()
	}
	p.out.flush(giveUp)
}

// signalFlushWait is how long flush waits for the console after a signal
// stopped the VM.
const signalFlushWait = time.Second

// timing reports the first debug-port write and the first console byte.
func (p *platform) timing() (firstIO, firstByte time.Duration) {
	if r, ok := p.debug.First(); ok {
		firstIO = r.At
	}
	return firstIO, time.Duration(p.out.firstByte.Load())
}
