// Package pci emulates a PCI host bridge with configuration mechanism #1
// and bus 0, and provides ConfigSpace, a reusable type-0 configuration
// header with write masks, BAR sizing and a capability list, on which PCI
// devices (virtio-pci) are built.
//
// # Ports
//
// A Bus is a devices.Device for the eight I/O ports 0xCF8-0xCFF; insert it
// with Insert(bus, ConfigAddressPort, PortsSize).
//
//   - 0xCF8, CONFIG_ADDRESS: a dword register, latched only by full 32-bit
//     writes (smaller accesses to 0xCF8-0xCFB are not config cycles). Bit 31
//     enables config cycles; bits 23-16 bus, 15-11 device, 10-8 function,
//     7-2 register. Bits 27-24 extend the register number to 4 KiB, the
//     AMD extension Linux uses for offsets above 0xFF.
//   - 0xCF9, reset control (byte access): setting bit 2 (RST_CPU) requests a
//     reset through BusConfig.OnReset. Linux's reboot=pci writes it, and an
//     FADT RESET_REG may name it with RESET_VALUE 0x06.
//   - 0xCFC-0xCFF, CONFIG_DATA: 1-, 2- or 4-byte accesses within the dword,
//     forwarded to the function CONFIG_ADDRESS selects.
//
// With the enable bit clear, for a bus other than 0, or for an empty slot,
// data reads return all ones and writes are dropped, as on a real bus.
//
// Device 0 function 0 is the host bridge (vendor 0x8086, device 0x0d57,
// class 0x060000: the identity other KVM-based VMMs give their virtual host
// bridge). Linux's type-1 probe insists on a host bridge or VGA device on
// bus 0 unless the DMI BIOS date is 2001 or later, and a VMM without
// firmware has no DMI tables.
//
// # Locking
//
// The Bus's mutex guards CONFIG_ADDRESS and the slot table only; functions
// are called with it released and do their own locking (ConfigSpace does).
// Guest software serialises config cycles (Linux's pci_lock), so the bus
// does not make an address/data pair atomic. OnReset is called without
// locks held.
//
// The package imports only devices, never kvm.
package pci

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/flintvm/flint/devices"
)

// I/O ports of configuration mechanism #1.
const (
	// ConfigAddressPort is the first port; insert the Bus here.
	ConfigAddressPort = 0xcf8
	// ResetControlPort is the reset control register (byte).
	ResetControlPort = 0xcf9
	// ConfigDataPort is the first byte of the data window.
	ConfigDataPort = 0xcfc
	// PortsSize is the number of ports the Bus occupies.
	PortsSize = 8
)

// Bus topology.
const (
	NumDevices   = 32
	NumFunctions = 8
)

// Host bridge identity.
const (
	HostBridgeVendorID = 0x8086
	HostBridgeDeviceID = 0x0d57
	HostBridgeClass    = 0x060000
)

const (
	addrEnable = 1 << 31
	// addrMask keeps the enable bit, the AMD extended-register bits 27-24
	// and bus/device/function/register; reserved bits 30-28 and 1-0 read 0.
	addrMask = 0x8fff_fffc

	resetCPU      = 0x04
	resetWritable = 0x0a // SYS_RST and FULL_RST; RST_CPU self-clears
)

// Function is one PCI function's configuration space as the bus sees it.
// reg is the byte offset of the first byte (0-4095), len(data) is 1, 2 or 4
// and the access stays within one dword; multi-byte values are little
// endian. A function that implements fewer than 4096 bytes reads the rest
// as zero. Functions must be safe for concurrent use.
type Function interface {
	ReadConfig(reg uint32, data []byte)
	WriteConfig(reg uint32, data []byte)
}

// BusConfig wires a Bus to the machine.
type BusConfig struct {
	// OnReset is called when the guest sets RST_CPU in the reset control
	// register at 0xCF9. It may be called more than once and must not block.
	OnReset func()
}

// Bus is PCI bus 0 behind configuration mechanism #1. Create it with NewBus.
type Bus struct {
	mu       sync.Mutex
	addr     uint32
	resetCtl uint8
	fns      [NumDevices][NumFunctions]Function
	host     *ConfigSpace
	onReset  func()
}

var _ devices.Device = (*Bus)(nil)

// NewBus returns bus 0 with the host bridge at 00:00.0.
func NewBus(cfg BusConfig) *Bus {
	b := &Bus{onReset: cfg.OnReset}
	b.host = NewConfigSpace(Header{
		VendorID: HostBridgeVendorID,
		DeviceID: HostBridgeDeviceID,
		Class:    HostBridgeClass,
	})
	b.fns[0][0] = b.host
	return b
}

// HostBridge returns the host bridge's configuration space.
func (b *Bus) HostBridge() *ConfigSpace { return b.host }

// Attach puts f at device dev, function fn of bus 0. Devices with several
// functions must attach function 0; the bus then reports the multi-function
// bit on it.
func (b *Bus) Attach(dev, fn int, f Function) error {
	if dev < 0 || dev >= NumDevices || fn < 0 || fn >= NumFunctions {
		return fmt.Errorf("pci: no slot %02x.%d", dev, fn)
	}
	if f == nil {
		return fmt.Errorf("pci: nil function for %02x.%d", dev, fn)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fns[dev][fn] != nil {
		return fmt.Errorf("pci: slot 00:%02x.%d is taken", dev, fn)
	}
	b.fns[dev][fn] = f
	return nil
}

// AttachNext puts f at function 0 of the lowest free device number and
// returns that number.
func (b *Bus) AttachNext(f Function) (int, error) {
	if f == nil {
		return 0, fmt.Errorf("pci: nil function")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for dev := range b.fns {
		if b.slotEmpty(dev) {
			b.fns[dev][0] = f
			return dev, nil
		}
	}
	return 0, fmt.Errorf("pci: bus 0 is full")
}

func (b *Bus) slotEmpty(dev int) bool {
	for _, f := range b.fns[dev] {
		if f != nil {
			return false
		}
	}
	return true
}

// Detach removes the function at dev.fn and reports whether one was there.
// The host bridge cannot be removed.
func (b *Bus) Detach(dev, fn int) bool {
	if dev < 0 || dev >= NumDevices || fn < 0 || fn >= NumFunctions || dev == 0 && fn == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	had := b.fns[dev][fn] != nil
	b.fns[dev][fn] = nil
	return had
}

// FunctionAt returns the function at dev.fn, or nil.
func (b *Bus) FunctionAt(dev, fn int) Function {
	if dev < 0 || dev >= NumDevices || fn < 0 || fn >= NumFunctions {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fns[dev][fn]
}

// ConfigAddress encodes a CONFIG_ADDRESS value with the enable bit set, the
// way Linux's pci_conf1 does (register bits 11-8 in address bits 27-24).
func ConfigAddress(bus, dev, fn uint8, reg uint16) uint32 {
	return addrEnable | uint32(reg&0xf00)<<16 | uint32(bus)<<16 |
		uint32(dev&0x1f)<<11 | uint32(fn&7)<<8 | uint32(reg&0xfc)
}

// target resolves a data-window access at byte off (0-3) of CONFIG_DATA.
func (b *Bus) target(off uint64) (f Function, reg uint32, multi bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.addr
	if a&addrEnable == 0 || (a>>16)&0xff != 0 {
		return nil, 0, false
	}
	dev, fn := (a>>11)&0x1f, (a>>8)&7
	f = b.fns[dev][fn]
	if fn == 0 {
		for _, g := range b.fns[dev][1:] {
			multi = multi || g != nil
		}
	}
	reg = (a>>16)&0xf00 | a&0xfc | uint32(off)
	return f, reg, multi
}

func fillOnes(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Read implements devices.Device for ports 0xCF8-0xCFF.
func (b *Bus) Read(offset uint64, data []byte) {
	n := uint64(len(data))
	switch {
	case offset == 0 && n == 4:
		b.mu.Lock()
		binary.LittleEndian.PutUint32(data, b.addr)
		b.mu.Unlock()
	case offset == ResetControlPort-ConfigAddressPort && n == 1:
		b.mu.Lock()
		data[0] = b.resetCtl
		b.mu.Unlock()
	case offset >= 4 && n > 0 && offset+n <= PortsSize:
		f, reg, multi := b.target(offset - 4)
		if f == nil {
			fillOnes(data)
			return
		}
		f.ReadConfig(reg, data)
		if multi && reg <= RegHeaderType && RegHeaderType < reg+uint32(n) {
			data[RegHeaderType-reg] |= 0x80
		}
	default:
		fillOnes(data)
	}
}

// Write implements devices.Device for ports 0xCF8-0xCFF.
func (b *Bus) Write(offset uint64, data []byte) {
	n := uint64(len(data))
	switch {
	case offset == 0 && n == 4:
		b.mu.Lock()
		b.addr = binary.LittleEndian.Uint32(data) & addrMask
		b.mu.Unlock()
	case offset == ResetControlPort-ConfigAddressPort && n == 1:
		b.mu.Lock()
		b.resetCtl = data[0] & resetWritable
		b.mu.Unlock()
		// RST_CPU reads back as 0, so any write setting it is a 0->1 edge.
		if data[0]&resetCPU != 0 && b.onReset != nil {
			b.onReset()
		}
	case offset >= 4 && n > 0 && offset+n <= PortsSize:
		if f, reg, _ := b.target(offset - 4); f != nil {
			f.WriteConfig(reg, data)
		}
	}
}
