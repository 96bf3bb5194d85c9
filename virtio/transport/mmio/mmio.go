// Package mmio is the virtio-mmio transport, version 2 (virtio 1.2
// §4.2): a 0x200-byte register window (WindowSize) that the VMM puts on
// its MMIO bus, one interrupt per device, and the kernel-command-line and
// ACPI descriptions a guest needs to find it.
//
// # Register window
//
// Control registers are 32-bit and must be accessed with aligned 32-bit
// reads and writes; anything else is ignored (reads return 0) and counted
// as a guest error. The device-specific configuration space starts at
// 0x100 (ConfigOffset) and takes any access width. Shared memory regions
// are absent (SHMLen reads as -1). VIRTIO_F_RING_RESET and
// VIRTIO_F_NOTIFICATION_DATA are not offered, so QueueReset reads 0 and
// QueueNotify carries the queue index only.
//
// # Interrupts
//
// One interrupt per device, with the InterruptStatus bits (bit 0 used
// buffer, bit 1 configuration change) set atomically by the device and
// cleared by InterruptACK. Two ways to wire it:
//
//   - Edge (Config.IRQ, recommended): each newly set status bit fires a
//     devices.IRQTrigger once; the VMM backs it with a KVM irqfd on the
//     device's GSI and describes the interrupt as edge-triggered, active
//     high (acpi.Device{HID: ACPIHID, LevelTriggered: false}). No
//     notification is lost: Linux's vm_interrupt reads InterruptStatus,
//     acknowledges exactly those bits and then scans every ring, so work
//     published while a bit was still set is seen by that scan, and a
//     bit set after the acknowledgement fires a new edge. Linux and the
//     IOAPIC latch an edge that arrives while the handler runs, and the
//     signal path takes no lock.
//   - Level (Config.Line): the line is high exactly while a status bit is
//     set, deasserted by the InterruptACK that clears the last bit; the
//     VMM backs it with KVM_IRQ_LINE (or a resampling irqfd that it
//     re-asserts while LevelPending) and describes the interrupt as level
//     triggered.
//
// # Notifications
//
// A driver notifies queue q by writing q to QueueNotify (0x50). With a
// transport.Notifier, each enabled queue's kick eventfd is attached at
// {Base+0x50, 4 bytes, datamatch q}, so those writes never exit; without
// one, Write signals the eventfd itself.
//
// # Imports
//
// mmio imports virtio, virtio/transport, mem and devices. It must not
// import kvm or the vmm.
package mmio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/flintvm/flint/devices"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport"
)

// Identity and geometry of the window.
const (
	// MagicValue is "virt" in little-endian.
	MagicValue = 0x74726976
	// Version is the virtio-mmio version implemented (2: virtio 1.x).
	Version = 2
	// VendorID is Flint's vendor ID: "FLNT" in little-endian.
	VendorID = 0x544e_4c46
	// WindowSize is the size of the register window.
	WindowSize = 0x200
	// ConfigOffset is where the device-specific configuration starts.
	ConfigOffset = 0x100
	// MaxConfigSize is the largest configuration space that fits.
	MaxConfigSize = WindowSize - ConfigOffset
	// ACPIHID is the ACPI hardware ID of a virtio-mmio device, which
	// Linux's virtio_mmio driver matches (needed by kernels built without
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, such as Debian's).
	ACPIHID = "LNRO0005"
)

// Register offsets (virtio 1.2 §4.2.2).
const (
	RegMagicValue        = 0x000
	RegVersion           = 0x004
	RegDeviceID          = 0x008
	RegVendorID          = 0x00c
	RegDeviceFeatures    = 0x010
	RegDeviceFeaturesSel = 0x014
	RegDriverFeatures    = 0x020
	RegDriverFeaturesSel = 0x024
	RegQueueSel          = 0x030
	RegQueueNumMax       = 0x034
	RegQueueNum          = 0x038
	RegQueueReady        = 0x044
	RegQueueNotify       = 0x050
	RegInterruptStatus   = 0x060
	RegInterruptACK      = 0x064
	RegStatus            = 0x070
	RegQueueDescLow      = 0x080
	RegQueueDescHigh     = 0x084
	RegQueueDriverLow    = 0x090
	RegQueueDriverHigh   = 0x094
	RegQueueDeviceLow    = 0x0a0
	RegQueueDeviceHigh   = 0x0a4
	RegSHMSel            = 0x0ac
	RegSHMLenLow         = 0x0b0
	RegSHMLenHigh        = 0x0b4
	RegSHMBaseLow        = 0x0b8
	RegSHMBaseHigh       = 0x0bc
	RegQueueReset        = 0x0c0
	RegConfigGeneration  = 0x0fc
)

// Config describes one virtio-mmio device.
type Config struct {
	// Device is the virtio device behind the window.
	Device virtio.Device
	// Mem is guest memory.
	Mem *mem.Memory
	// Base is the window's guest-physical address; the Notifier's
	// matches are computed from it.
	Base uint64
	// IRQ fires one edge interrupt per newly set status bit. Exactly one
	// of IRQ and Line must be set.
	IRQ devices.IRQTrigger
	// Line is a level-triggered interrupt line, high while a status bit
	// is set.
	Line devices.IRQLine
	// Notifier, if set, attaches kick eventfds to QueueNotify.
	Notifier transport.Notifier
	// Log receives guest protocol errors; nil discards them.
	Log *slog.Logger
}

// Transport is one virtio-mmio device window. It implements
// devices.Device: insert it on the MMIO bus at Config.Base with size
// WindowSize. It is safe for concurrent use.
type Transport struct {
	core   *transport.Core
	isr    *transport.ISR
	base   uint64
	level  bool
	shmSel atomic.Uint32
}

var _ devices.Device = (*Transport)(nil)

// New builds the transport for cfg.Device.
func New(cfg Config) (*Transport, error) {
	if (cfg.IRQ == nil) == (cfg.Line == nil) {
		return nil, errors.New("virtio-mmio: set exactly one of IRQ (edge) and Line (level)")
	}
	if cfg.Device != nil && cfg.Device.ConfigSize() > MaxConfigSize {
		return nil, fmt.Errorf("virtio-mmio: configuration space of %d bytes does not fit in %d", cfg.Device.ConfigSize(), MaxConfigSize)
	}
	t := &Transport{base: cfg.Base}
	if cfg.Line != nil {
		t.level = true
		t.isr = transport.NewLevelISR(cfg.Line.SetLevel)
	} else {
		t.isr = transport.NewEdgeISR(cfg.IRQ)
	}
	log := cfg.Log
	if log != nil {
		log = log.With("transport", "mmio", "base", fmt.Sprintf("%#x", cfg.Base))
	}
	core, err := transport.NewCore(transport.Config{
		Device: cfg.Device, Mem: cfg.Mem, Notifier: cfg.Notifier, Log: log,
	}, (*hooks)(t))
	if err != nil {
		return nil, err
	}
	t.core = core
	return t, nil
}

// CmdlineDevice returns the kernel command-line parameter that declares a
// virtio-mmio device at base with interrupt irq, for kernels built with
// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: "virtio_mmio.device=0x200@<base>:<irq>".
// Such devices are edge-triggered on x86 unless the platform says
// otherwise; use Config.IRQ with them.
func CmdlineDevice(base uint64, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=%#x@%#x:%d", WindowSize, base, irq)
}

// LevelTriggered reports whether the device was built with a level line
// (describe its interrupt as level-triggered) rather than an edge
// trigger.
func (t *Transport) LevelTriggered() bool { return t.level }

// LevelPending reports whether an interrupt status bit is set: the level
// a line must show, for a VMM that re-asserts a resampled line.
func (t *Transport) LevelPending() bool { return t.isr.Load() != 0 }

// Status returns the device status register.
func (t *Transport) Status() virtio.Status { return t.core.Status() }

// Snapshot returns the device's state for a debug dump: the common part
// (transport.Core.Snapshot: status, ring words, engines), the interrupt
// status bits and the interrupt mode (Level; with a level line, whether
// it is asserted). Safe from any goroutine; it does not block for long.
func (t *Transport) Snapshot() transport.Snapshot {
	s := t.core.Snapshot()
	s.Kind = "mmio"
	s.ISR = t.isr.Load()
	s.Level = t.level
	s.LineAsserted = t.isr.Asserted()
	return s
}

// GuestErrors counts driver protocol errors seen so far.
func (t *Transport) GuestErrors() uint64 { return t.core.GuestErrors() }

// Close resets the device and releases the transport's eventfds. Remove
// the window from the bus first.
func (t *Transport) Close() { t.core.Close() }

// Read implements devices.Device.
func (t *Transport) Read(offset uint64, data []byte) {
	defer t.core.Contain("virtio-mmio register read")
	if offset >= ConfigOffset {
		t.core.ReadConfig(offset-ConfigOffset, data)
		return
	}
	clear(data)
	if len(data) != 4 || offset%4 != 0 {
		t.core.GuestError("virtio-mmio register read not 32-bit aligned", "offset", offset, "len", len(data))
		return
	}
	binary.LittleEndian.PutUint32(data, t.readReg(offset))
}

func (t *Transport) readReg(offset uint64) uint32 {
	switch offset {
	case RegMagicValue:
		return MagicValue
	case RegVersion:
		return Version
	case RegDeviceID:
		return uint32(t.core.Device().Type())
	case RegVendorID:
		return VendorID
	case RegInterruptStatus:
		return t.isr.Load()
	case RegSHMLenLow, RegSHMLenHigh, RegSHMBaseLow, RegSHMBaseHigh:
		return 0xffff_ffff // no shared memory regions: length -1
	case RegQueueReset:
		return 0
	}
	s := t.core.State()
	switch offset {
	case RegDeviceFeatures:
		return s.DeviceFeatures
	case RegQueueNumMax:
		return uint32(s.Queue.Max)
	case RegQueueReady:
		if s.Queue.Enabled {
			return 1
		}
		return 0
	case RegStatus:
		return uint32(s.Status)
	case RegConfigGeneration:
		return s.ConfigGeneration
	}
	t.core.GuestError("virtio-mmio read of a write-only or reserved register", "offset", offset)
	return 0
}

// Write implements devices.Device.
func (t *Transport) Write(offset uint64, data []byte) {
	defer t.core.Contain("virtio-mmio register write")
	if offset >= ConfigOffset {
		t.core.WriteConfig(offset-ConfigOffset, data)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		t.core.GuestError("virtio-mmio register write not 32-bit aligned", "offset", offset, "len", len(data))
		return
	}
	v := binary.LittleEndian.Uint32(data)
	c := t.core
	switch offset {
	case RegQueueNotify:
		c.Notify(v)
	case RegInterruptACK:
		t.isr.Ack(v)
	case RegDeviceFeaturesSel:
		c.SetDeviceFeatureSelect(v)
	case RegDriverFeatures:
		c.SetDriverFeatures(v)
	case RegDriverFeaturesSel:
		c.SetDriverFeatureSelect(v)
	case RegQueueSel:
		c.SelectQueue(v)
	case RegQueueNum:
		c.SetQueueSize(v)
	case RegQueueReady:
		switch v {
		case 0, 1:
			c.SetQueueEnabled(v == 1)
		default:
			c.GuestError("virtio-mmio QueueReady written with a value other than 0 or 1", "value", v)
		}
	case RegStatus:
		if v > 0xff {
			c.GuestError("virtio-mmio Status written with bits above 7", "value", v)
			return
		}
		c.WriteStatus(uint8(v))
	case RegQueueDescLow, RegQueueDescHigh:
		c.SetQueueAddrHalf(transport.AreaDesc, offset == RegQueueDescHigh, v)
	case RegQueueDriverLow, RegQueueDriverHigh:
		c.SetQueueAddrHalf(transport.AreaDriver, offset == RegQueueDriverHigh, v)
	case RegQueueDeviceLow, RegQueueDeviceHigh:
		c.SetQueueAddrHalf(transport.AreaDevice, offset == RegQueueDeviceHigh, v)
	case RegSHMSel:
		t.shmSel.Store(v)
	case RegQueueReset:
		c.GuestError("virtio-mmio QueueReset written without VIRTIO_F_RING_RESET", "value", v)
	default:
		c.GuestError("virtio-mmio write to a read-only or reserved register", "offset", offset, "value", v)
	}
}

// hooks is the Transport's transport.Hooks, kept off its public API.
type hooks Transport

// SignalQueue implements transport.Hooks.
func (h *hooks) SignalQueue(int) error { return h.isr.Raise(transport.ISRQueue) }

// SignalConfig implements transport.Hooks.
func (h *hooks) SignalConfig() error { return h.isr.Raise(transport.ISRConfig) }

// NotifyMatch implements transport.Hooks: every queue shares QueueNotify
// and is told apart by the value written.
func (h *hooks) NotifyMatch(q int) (transport.NotifyMatch, bool) {
	return transport.NotifyMatch{Addr: h.base + RegQueueNotify, Len: 4, Datamatch: true, Data: uint64(q)}, true
}

// Reset implements transport.Hooks.
func (h *hooks) Reset() {
	h.isr.Clear()
	h.shmSel.Store(0)
}
