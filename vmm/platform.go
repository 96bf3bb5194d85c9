package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// watches for the exit marker, and writes to the console.
type consoleOut struct {
	mu        sync.Mutex
	w         io.Writer
	start     time.Time
	firstByte atomic.Int64 // nanoseconds since start, 0 until the first byte
}

func (c *consoleOut) Write(p []byte) (int, error) {
	if len(p) > 0 && c.firstByte.Load() == 0 {
		c.firstByte.CompareAndSwap(0, int64(max(time.Since(c.start), 1)))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

// addPlatformDevices creates the UART, i8042, CMOS, debug port, ACPI power
// registers and PCI host bridge, and puts them on the PIO bus.
func (m *Machine) addPlatformDevices() error {
	out := &consoleOut{w: m.con.out, start: m.start}
	if m.cfg.ExitMarker != "" {
		out.w = &markerWriter{w: m.con.out, marker: []byte(m.cfg.ExitMarker), found: func() { m.stop(stopMarker, nil) }}
	}
	p := &platform{out: out}
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

// flush stops console input once the VM has stopped.
func (p *platform) flush() {
	if p.cancel != nil {
		p.cancel()
	}
}

// timing reports the first debug-port write and the first console byte.
func (p *platform) timing() (firstIO, firstByte time.Duration) {
	if r, ok := p.debug.First(); ok {
		firstIO = r.At
	}
	return firstIO, time.Duration(p.out.firstByte.Load())
}
