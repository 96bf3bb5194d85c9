// Package machinefuzz owns the whole-machine fuzz harness: the devices a
// Flint VM has, assembled on their real buses without KVM, and a small
// guest driver model that plays fuzz programs against them.
//
// The machine is what vmm builds (vmm/platform.go, vmm/virtio.go) minus
// the kvm package: the PIO bus with COM1, the i8042, CMOS, the debug port,
// the PCI host bridge (configuration mechanism #1) and the ACPI power
// registers; the MMIO bus with virtio-pci functions (net over an in-memory
// backend, blk over a temp file, rng) and virtio-mmio windows (console,
// vsock, fs over a temp directory); guest RAM from mem inside guard
// bytes; interrupts into counting sinks; KVM's ioeventfd matching played
// by transporttest.Notifier. vmm's own assembly cannot be reused: it
// creates the KVM VM first and wires interrupts and notifications to it
// (irqLine, ioeventNotifier, the GSI router), so this package repeats the
// composition with fakes at the KVM seams.
//
// A program (see Op) is PIO and MMIO accesses aimed mostly at the device
// windows, PCI configuration writes, guest-memory writes, and driver-model
// steps (bring a device up, put sane or insane descriptor chains on its
// rings, kick, reset, wait for the device goroutines to settle). Machine's
// checks say what must hold after any program.
package machinefuzz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/devices"
	"github.com/flintvm/flint/devices/acpipm"
	"github.com/flintvm/flint/devices/cmos"
	"github.com/flintvm/flint/devices/debugport"
	"github.com/flintvm/flint/devices/i8042"
	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/devices/serial"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/blk"
	"github.com/flintvm/flint/virtio/console"
	"github.com/flintvm/flint/virtio/fs"
	"github.com/flintvm/flint/virtio/netdev"
	"github.com/flintvm/flint/virtio/rng"
	"github.com/flintvm/flint/virtio/transport/mmio"
	vpci "github.com/flintvm/flint/virtio/transport/pci"
	"github.com/flintvm/flint/virtio/transport/transporttest"
	"github.com/flintvm/flint/virtio/virtiotest"
	"github.com/flintvm/flint/virtio/vsock"
)

// The machine's layout: vmm's windows and ports, a small RAM.
const (
	MemSize   = 1 << 20
	guardSize = 4096
	guardByte = 0xa5

	PCIWindow  = mem.MMIOHoleStart // BARs, vpci.BARSize apart
	MMIOWindow = 0xE000_0000       // virtio-mmio windows, 0x1000 apart

	COM1Port  = 0x3f8
	I8042Data = 0x60
	I8042Cmd  = 0x64
	CMOSPort  = 0x70
	DebugPort = 0x80

	ringBase = 0x10000 // one 4 KiB page per (slot, queue): maxQueues pages per slot
	bufBase  = 0x80000 // bufSize bytes of buffers per slot
	bufSize  = 0x8000
)

// Env is what a machine needs from the host: a raw image for the block
// device (a multiple of 512 bytes) and a directory for the file share.
// Machines may share one Env, one after another.
type Env struct {
	Image string
	Share string
}

// NewEnv creates an Env's image and share under dir.
func NewEnv(dir string) (Env, error) {
	e := Env{Image: filepath.Join(dir, "disk.img"), Share: filepath.Join(dir, "share")}
	if err := os.WriteFile(e.Image, bytes.Repeat([]byte("flintblk"), 64<<10/8), 0o600); err != nil {
		return e, err
	}
	if err := os.MkdirAll(filepath.Join(e.Share, "dir"), 0o700); err != nil {
		return e, err
	}
	return e, os.WriteFile(filepath.Join(e.Share, "file"), []byte("hello\n"), 0o600)
}

// Machine is one assembled machine.
type Machine struct {
	Mem      *mem.Memory
	PIO      *devices.Bus
	MMIO     *devices.Bus
	PCI      *pci.Bus
	Notifier *transporttest.Notifier
	Net      *virtiotest.NetBackend
	Slots    []*Slot

	ram          []byte // guard, RAM, guard
	settleBudget time.Duration
	closers      []func()
	log          *panicLog

	// Resets and PowerOffs count the platform's reset and S5 requests.
	Resets, PowerOffs atomic.Int64
	// Console receives COM1's output.
	Console countingWriter
}

// Slot is one virtio device on its transport, and the driver model's
// state for it.
type Slot struct {
	Name   string
	Dev    virtio.Device
	PCI    *vpci.Transport // nil for virtio-mmio
	MMIO   *mmio.Transport // nil for virtio-pci
	Router *transporttest.Router
	Line   *transporttest.Line
	Edge   *transporttest.Edge
	Base   uint64 // the MMIO window, or BAR 0's home address
	PCIDev int    // the PCI device number

	index  int
	queues []*drvQueue
}

// countingWriter counts what is written to it.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// panicLog keeps the first log record that reports a panic or a memory
// fault: the transports contain both as DEVICE_NEEDS_RESET and log the
// reason, which would otherwise hide a device bug from the fuzzer.
type panicLog struct {
	mu    sync.Mutex
	first string
}

func (l *panicLog) Write(p []byte) (int, error) {
	if s := string(p); strings.Contains(s, "panic") || strings.Contains(s, "memory fault") {
		l.mu.Lock()
		if l.first == "" {
			l.first = s
		}
		l.mu.Unlock()
	}
	return len(p), nil
}

// New assembles a machine over env.
func New(env Env) (m *Machine, err error) {
	m = &Machine{PIO: devices.NewBus("pio"), MMIO: devices.NewBus("mmio"), Notifier: transporttest.NewNotifier(), log: &panicLog{}}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.ram = bytes.Repeat([]byte{guardByte}, MemSize+2*guardSize)
	clear(m.ram[guardSize : guardSize+MemSize])
	if m.Mem, err = mem.FromRegions(mem.NewRegion(0, m.ram[guardSize:guardSize+MemSize:guardSize+MemSize])); err != nil {
		return m, err
	}
	if err := m.addPlatform(); err != nil {
		return m, err
	}
	m.Net = virtiotest.NewNetBackend()
	m.closers = append(m.closers, m.Net.Close)
	nd, err := netdev.New(m.Net, netdev.Options{MAC: [6]byte{2, 0, 0, 0, 0, 1}, QueueSize: maxQueueSize})
	if err != nil {
		return m, err
	}
	bd, err := blk.Open(env.Image, blk.Options{ID: "fuzz", Writeback: true, QueueSize: maxQueueSize})
	if err != nil {
		return m, err
	}
	m.closers = append(m.closers, func() { bd.Close() })
	rd, err := rng.New(rng.Options{QueueSize: maxQueueSize})
	if err != nil {
		return m, err
	}
	cd, err := console.New(console.Options{In: strings.NewReader("input from the host\n"), Out: io.Discard, QueueSize: maxQueueSize})
	if err != nil {
		return m, err
	}
	m.closers = append(m.closers, func() { cd.Close() })
	vd, err := vsock.New(vsock.Options{GuestCID: 3, QueueSize: maxQueueSize, MaxConns: 4, BufSize: 4096})
	if err != nil {
		return m, err
	}
	m.closers = append(m.closers, func() { vd.Close() })
	fd, err := fs.New(fs.Config{Tag: "share", Root: env.Share, Log: slog.New(slog.NewTextHandler(m.log, nil)), MaxOpenFiles: 32})
	if err != nil {
		return m, err
	}
	m.closers = append(m.closers, func() { fd.Close() })
	for _, d := range []struct {
		name string
		dev  virtio.Device
		pci  bool
	}{{"net", nd, true}, {"blk", bd, true}, {"rng", rd, true}, {"console", cd, false}, {"vsock", vd, false}, {"fs", fd, false}} {
		if err := m.attach(d.name, d.dev, d.pci); err != nil {
			return m, fmt.Errorf("%s: %w", d.name, err)
		}
	}
	return m, nil
}

// addPlatform puts the legacy devices on the PIO bus, as vmm does.
func (m *Machine) addPlatform() error {
	reset := func() { m.Resets.Add(1) }
	kbc := i8042.New(i8042.Config{OnReset: reset, KeyboardIRQ: &transporttest.Line{}, AuxIRQ: &transporttest.Line{}, Keyboard: true})
	m.PCI = pci.NewBus(pci.BusConfig{OnReset: reset})
	for _, d := range []struct {
		dev        devices.Device
		base, size uint64
	}{
		{serial.New(&m.Console, &transporttest.Line{}), COM1Port, 8},
		{kbc.DataPort(), I8042Data, 1},
		{kbc.CommandPort(), I8042Cmd, 1},
		{cmos.New(cmos.Config{LowMemory: MemSize}), CMOSPort, 2},
		{debugport.New(time.Now(), 0), DebugPort, 1},
		{m.PCI, pci.ConfigAddressPort, pci.PortsSize},
		{acpipm.New(acpipm.Config{OnPowerOff: func() { m.PowerOffs.Add(1) }, OnReset: reset}), acpipm.Base, acpipm.Size},
	} {
		if err := m.PIO.Insert(d.dev, d.base, d.size); err != nil {
			return err
		}
	}
	return nil
}

// attach puts dev on a virtio-pci function or a virtio-mmio window.
func (m *Machine) attach(name string, dev virtio.Device, onPCI bool) error {
	if len(dev.QueueMaxSizes()) > maxQueues {
		return fmt.Errorf("%d queues, the driver model has room for %d", len(dev.QueueMaxSizes()), maxQueues)
	}
	s := &Slot{Name: name, Dev: dev, index: len(m.Slots)}
	log := slog.New(slog.NewTextHandler(m.log, nil))
	if onPCI {
		s.Base = PCIWindow + uint64(countPCI(m.Slots))*vpci.BARSize
		s.Router, s.Line = transporttest.NewRouter(), &transporttest.Line{}
		tr, err := vpci.New(vpci.Config{Device: dev, Mem: m.Mem, BARAddr: s.Base, Bus: m.MMIO,
			MSIX: s.Router, INTx: s.Line, Notifier: m.Notifier, Log: log})
		if err != nil {
			return err
		}
		m.closers = append(m.closers, tr.Close)
		if s.PCIDev, err = m.PCI.AttachNext(tr); err != nil {
			return err
		}
		s.PCI = tr
	} else {
		n := len(m.Slots) - countPCI(m.Slots)
		s.Base = MMIOWindow + uint64(n)*0x1000
		s.Edge = &transporttest.Edge{}
		tr, err := mmio.New(mmio.Config{Device: dev, Mem: m.Mem, Base: s.Base, IRQ: s.Edge, Notifier: m.Notifier, Log: log})
		if err != nil {
			return err
		}
		m.closers = append(m.closers, tr.Close)
		if err := m.MMIO.Insert(tr, s.Base, mmio.WindowSize); err != nil {
			return err
		}
		s.MMIO = tr
	}
	for range dev.QueueMaxSizes() {
		s.queues = append(s.queues, &drvQueue{})
	}
	m.Slots = append(m.Slots, s)
	return nil
}

func countPCI(ss []*Slot) int {
	n := 0
	for _, s := range ss {
		if s.PCI != nil {
			n++
		}
	}
	return n
}

// Close resets every device (closing its transport) and closes the
// devices, in reverse order of creation. It is idempotent.
func (m *Machine) Close() {
	for i := len(m.closers) - 1; i >= 0; i-- {
		m.closers[i]()
	}
	m.closers = nil
}

// CheckGuards reports an error if anything wrote outside guest RAM into
// the guard bytes around it.
func (m *Machine) CheckGuards() error {
	for i, b := range m.ram {
		if (i < guardSize || i >= guardSize+MemSize) && b != guardByte {
			return fmt.Errorf("host byte %d outside guest RAM (guard %d bytes, RAM %d) was written: %#x", i, guardSize, MemSize, b)
		}
	}
	return nil
}

// CheckContained reports an error if a device panicked or faulted: the
// transports contain that as DEVICE_NEEDS_RESET, but it is a bug.
func (m *Machine) CheckContained() error {
	m.log.mu.Lock()
	defer m.log.mu.Unlock()
	if m.log.first != "" {
		return errors.New("a device panic or fault was contained: " + m.log.first)
	}
	return nil
}

// CheckInterrupts reports an MSI-X vector triggered while masked or
// never programmed.
func (m *Machine) CheckInterrupts() error {
	for _, s := range m.Slots {
		if s.Router == nil {
			continue
		}
		for v := 0; v <= len(s.queues); v++ {
			if x := s.Router.Vector(v); x.BadTriggers != 0 {
				return fmt.Errorf("%s: MSI-X vector %d triggered while masked: %+v", s.Name, v, x)
			}
		}
	}
	return nil
}
