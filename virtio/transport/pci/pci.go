// Package pci is the modern virtio-pci transport (virtio 1.2 §4.1), 1.x
// only (non-transitional): a PCI function for devices/pci's Bus whose
// virtio structures all live in one 64-bit memory BAR, with MSI-X and an
// INTx fallback.
//
// # Identity
//
// Vendor 0x1af4, device 0x1040 + virtio device type, revision 1,
// subsystem vendor 0x1af4 and subsystem 0x40 + type; class by device type
// (net 0x020000, block 0x010000, console 0x078000, others 0xff0000) unless
// Config.Class says otherwise; interrupt pin INTA when Config.INTx is set.
//
// # BAR 0 layout (BARSize = 32 KiB, 64-bit, non-prefetchable)
//
//	0x0000  common configuration (virtio_pci_common_cfg, 0x3c bytes)
//	0x1000  ISR status (1 byte, read-to-clear)
//	0x2000  device-specific configuration (up to 4 KiB)
//	0x3000  notifications: queue q at 0x3000 + 4*q (notify_off_multiplier 4,
//	        queue_notify_off q), up to MaxQueues
//	0x4000  MSI-X table, one 16-byte entry per vector: one vector per
//	        queue plus one for configuration changes
//	0x6000  MSI-X pending bit array
//
// Capabilities, from 0x40 in configuration space: MSI-X (if
// Config.MSIX), then the vendor-specific virtio capabilities common,
// notify, ISR, device (if the device has configuration space) and the
// PCI configuration access capability (VIRTIO_PCI_CAP_PCI_CFG), through
// which a driver can reach the whole BAR with configuration cycles.
//
// # Interrupts
//
// With MSI-X enabled, queue q's notifications send the vector the driver
// wrote into its queue_msix_vector and configuration changes the
// config_msix_vector (VIRTIO_MSI_NO_VECTOR: none) through the VMM's
// MSIXRouter; a masked vector (entry mask or function mask) sets its
// pending bit and is delivered when unmasked. With MSI-X disabled the
// ISR bits drive a level INTx line (devices.IRQLine, asserted while a bit
// is set and unless the command register's INTx disable is set), and the
// driver's read of ISR status clears them and deasserts the line; the
// status register's interrupt bit follows.
//
// # BAR placement
//
// BAR 0 starts at Config.BARAddr (inside the PCI MMIO window the VMM
// describes to the guest, aligned to BARSize). The transport puts the BAR
// on Config.Bus (the VMM's MMIO bus) whenever the guest enables memory
// decoding and moves it when the guest reprograms the BAR, re-attaching
// the queues' notify ioeventfds through the Notifier; the VMM only
// provides the bus.
//
// # Imports
//
// pci imports virtio, virtio/transport, mem, devices and devices/pci. It
// must not import kvm or the vmm.
package pci

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/devices"
	pcidev "github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport"
)

// Identity.
const (
	// VendorID is the virtio PCI vendor.
	VendorID = 0x1af4
	// DeviceIDBase plus the virtio device type is the PCI device ID of a
	// modern (non-transitional) device.
	DeviceIDBase = 0x1040
	// RevisionID marks a non-transitional device.
	RevisionID = 1
	// SubsystemIDBase plus the device type is the subsystem ID.
	SubsystemIDBase = 0x40
)

// BAR 0 layout.
const (
	// BARIndex is the BAR holding every virtio structure.
	BARIndex = 0
	// BARSize is BAR 0's size.
	BARSize = 0x8000

	CommonOffset     = 0x0000
	CommonLength     = 0x3c
	ISROffset        = 0x1000
	ISRLength        = 1
	DeviceOffset     = 0x2000
	MaxConfigSize    = 0x1000
	NotifyOffset     = 0x3000
	NotifyMultiplier = 4
	MSIXTableOffset  = 0x4000
	MSIXPBAOffset    = 0x6000

	// MaxQueues is the most queues the layout has room for: the MSI-X
	// table holds 512 vectors, one per queue plus the config vector.
	MaxQueues = (MSIXPBAOffset-MSIXTableOffset)/msixEntrySize - 1
)

// NoVector is VIRTIO_MSI_NO_VECTOR: no MSI-X vector assigned.
const NoVector = 0xffff

// virtio_pci_cap cfg_type values.
const (
	capCommonCfg = 1
	capNotifyCfg = 2
	capISRCfg    = 3
	capDeviceCfg = 4
	capPCICfg    = 5
)

// MMIOBus is where the transport maps its BAR: *devices.Bus satisfies it.
type MMIOBus interface {
	Insert(dev devices.Device, base, size uint64) error
	Remove(base uint64) bool
}

// Config describes one virtio-pci function.
type Config struct {
	// Device is the virtio device behind the function.
	Device virtio.Device
	// Mem is guest memory.
	Mem *mem.Memory
	// BARAddr is BAR 0's initial guest-physical address, aligned to
	// BARSize, inside the VMM's PCI MMIO window.
	BARAddr uint64
	// Bus is the VMM's MMIO bus; the BAR is mapped there while the guest
	// enables memory decoding.
	Bus MMIOBus
	// MSIX delivers MSI-X vectors; nil: no MSI-X capability.
	MSIX MSIXRouter
	// INTx is the function's INTA# line; nil: no INTx (interrupt pin 0).
	// At least one of MSIX and INTx must be set.
	INTx devices.IRQLine
	// Notifier, if set, attaches kick eventfds to the notify addresses.
	Notifier transport.Notifier
	// Class is the class code (0xCCSSPP); 0 picks one by device type.
	Class uint32
	// Log receives guest protocol errors; nil discards them.
	Log *slog.Logger
}

// Transport is one virtio-pci function. It implements pcidev.Function
// (attach it with Bus.Attach or AttachNext) and, for BAR 0,
// devices.Device (offsets relative to the BAR; the transport inserts
// itself on Config.Bus). It is safe for concurrent use.
type Transport struct {
	core *transport.Core
	cs   *pcidev.ConfigSpace
	bus  MMIOBus
	isr  *transport.ISR
	msix *msix // nil without MSI-X
	intx devices.IRQLine
	nq   int

	configVec atomic.Uint32
	queueVec  []atomic.Uint32
	msixOn    atomic.Bool
	intxOff   atomic.Bool
	lineHigh  bool // guarded by the ISR's lock (level callback)

	barAddr   atomic.Uint64
	barMapped atomic.Bool
	barMu     sync.Mutex

	cfgMu   sync.Mutex // serialises config writes with their side effects
	msixCap int        // 0 without MSI-X
	cfgCap  int        // VIRTIO_PCI_CAP_PCI_CFG offset
}

var (
	_ pcidev.Function = (*Transport)(nil)
	_ devices.Device  = (*Transport)(nil)
)

// New builds the function for cfg.Device. Its BAR is not mapped until the
// guest enables memory decoding.
func New(cfg Config) (*Transport, error) {
	if cfg.Device == nil || cfg.Bus == nil {
		return nil, errors.New("virtio-pci: device and bus are required")
	}
	if cfg.MSIX == nil && cfg.INTx == nil {
		return nil, errors.New("virtio-pci: set MSIX, INTx or both")
	}
	typ := cfg.Device.Type()
	if typ == 0 || typ > 0x3f {
		return nil, fmt.Errorf("virtio-pci: device type %d outside the modern ID range", typ)
	}
	if cs := cfg.Device.ConfigSize(); cs > MaxConfigSize {
		return nil, fmt.Errorf("virtio-pci: configuration space of %d bytes, at most %d", cs, MaxConfigSize)
	}
	if cfg.BARAddr%BARSize != 0 {
		return nil, fmt.Errorf("virtio-pci: BAR address %#x not aligned to %#x", cfg.BARAddr, BARSize)
	}
	t := &Transport{bus: cfg.Bus, intx: cfg.INTx}
	log := cfg.Log
	if log != nil {
		log = log.With("transport", "pci")
	}
	core, err := transport.NewCore(transport.Config{
		Device: cfg.Device, Mem: cfg.Mem, Notifier: cfg.Notifier, Log: log, MaxQueues: MaxQueues,
	}, (*hooks)(t))
	if err != nil {
		return nil, err
	}
	t.core = core
	t.nq = core.NumQueues()
	t.queueVec = make([]atomic.Uint32, t.nq)
	t.isr = transport.NewLevelISR(t.intxLevel)
	(*hooks)(t).Reset()
	if cfg.MSIX != nil {
		t.msix = newMSIX(t.nq+1, cfg.MSIX, core.GuestError)
	}
	if err := t.buildConfigSpace(cfg, typ); err != nil {
		return nil, err
	}
	return t, nil
}

// defaultClass is the class code for a device type.
func defaultClass(t virtio.DeviceID) uint32 {
	switch t {
	case virtio.DeviceNet:
		return 0x020000 // network controller, Ethernet
	case virtio.DeviceBlock:
		return 0x010000 // mass storage, SCSI
	case virtio.DeviceConsole:
		return 0x078000 // communication controller, other
	}
	return 0xff0000 // device does not fit any defined class
}

func (t *Transport) buildConfigSpace(cfg Config, typ virtio.DeviceID) error {
	class := cfg.Class
	if class == 0 {
		class = defaultClass(typ)
	}
	h := pcidev.Header{
		VendorID: VendorID, DeviceID: DeviceIDBase + uint16(typ), RevisionID: RevisionID, Class: class,
		SubsystemVendorID: VendorID, SubsystemID: SubsystemIDBase + uint16(typ),
	}
	if cfg.INTx != nil {
		h.InterruptPin = 1 // INTA#
	}
	cs := pcidev.NewConfigSpace(h)
	t.cs = cs
	if err := cs.SetBAR(BARIndex, pcidev.BAR{Kind: pcidev.BARMem64, Size: BARSize, Addr: cfg.BARAddr}); err != nil {
		return err
	}
	var err error
	if t.msix != nil {
		n := uint16(len(t.msix.entries) - 1) // table size, N-1
		body := make([]byte, 10)
		putLE(body[0:], uint32(n), 2)
		putLE(body[2:], MSIXTableOffset|BARIndex, 4)
		putLE(body[6:], MSIXPBAOffset|BARIndex, 4)
		if t.msixCap, err = cs.AddCapability(pcidev.CapMSIX, body); err != nil {
			return err
		}
		if err := cs.SetWritable(t.msixCap+2, []byte{0, 0xc0}); err != nil {
			return err
		}
	}
	type virtioCap struct {
		typ    uint8
		off, n uint32
		extra  []byte // notify_off_multiplier, pci_cfg_data
	}
	caps := []virtioCap{
		{typ: capCommonCfg, off: CommonOffset, n: CommonLength},
		{typ: capNotifyCfg, off: NotifyOffset, n: uint32(NotifyMultiplier * t.nq), extra: []byte{NotifyMultiplier, 0, 0, 0}},
		{typ: capISRCfg, off: ISROffset, n: ISRLength},
	}
	if n := cfg.Device.ConfigSize(); n > 0 {
		caps = append(caps, virtioCap{typ: capDeviceCfg, off: DeviceOffset, n: uint32(n)})
	}
	caps = append(caps, virtioCap{typ: capPCICfg, extra: make([]byte, 4)})
	for _, c := range caps {
		body := make([]byte, 14, 14+len(c.extra))
		body[0] = byte(16 + len(c.extra)) // cap_len
		body[1] = c.typ
		body[2] = BARIndex
		putLE(body[6:], c.off, 4)
		putLE(body[10:], c.n, 4)
		body = append(body, c.extra...)
		off, err := cs.AddCapability(pcidev.CapVendorSpecific, body)
		if err != nil {
			return err
		}
		if c.typ == capPCICfg {
			// bar, offset, length and pci_cfg_data are driver-written.
			t.cfgCap = off
			if err := cs.SetWritable(off+4, []byte{0xff}); err != nil {
				return err
			}
			if err := cs.SetWritable(off+8, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); err != nil {
				return err
			}
		}
	}
	cs.SetBARChangeFunc(t.onBARChange)
	return nil
}

func putLE(b []byte, v uint32, n int) {
	for i := range n {
		b[i] = byte(v >> (8 * i))
	}
}

// ConfigSpace returns the function's configuration space, for the VMM's
// own touches (for example the interrupt line register).
func (t *Transport) ConfigSpace() *pcidev.ConfigSpace { return t.cs }

// Status returns the device status register.
func (t *Transport) Status() virtio.Status { return t.core.Status() }

// Snapshot returns the function's state for a debug dump: the common part
// (transport.Core.Snapshot: status, ring words, engines), the ISR bits,
// whether INTx is the interrupt in use (Level: MSI-X disabled) and
// asserted, and the MSI-X state: enable, function mask, the config and
// queue vectors, and each table entry's mask and pending bits. Safe from
// any goroutine; it does not block for long.
func (t *Transport) Snapshot() transport.Snapshot {
	s := t.core.Snapshot()
	s.Kind = "pci"
	s.ISR = t.isr.Load()
	msixOn := t.msixOn.Load()
	s.Level = !msixOn
	s.LineAsserted = t.intx != nil && !msixOn && !t.intxOff.Load() && t.isr.Asserted()
	if t.msix != nil {
		m := t.msix.snapshot()
		m.ConfigVector = uint16(t.configVec.Load())
		m.QueueVectors = make([]uint16, len(t.queueVec))
		for i := range t.queueVec {
			m.QueueVectors[i] = uint16(t.queueVec[i].Load())
		}
		s.MSIX = m
	}
	return s
}

// GuestErrors counts driver protocol errors seen so far.
func (t *Transport) GuestErrors() uint64 { return t.core.GuestErrors() }

// BAR returns where BAR 0 is mapped on the bus, if it is.
func (t *Transport) BAR() (addr uint64, mapped bool) {
	t.barMu.Lock()
	defer t.barMu.Unlock()
	return t.barAddr.Load(), t.barMapped.Load()
}

// Close resets the device, removes the BAR from the bus and releases the
// eventfds. Detach the function from the PCI bus first.
func (t *Transport) Close() {
	t.barMu.Lock()
	if t.barMapped.Load() {
		t.bus.Remove(t.barAddr.Load())
		t.barMapped.Store(false)
	}
	t.barMu.Unlock()
	t.core.Close()
}

// ReadConfig implements pcidev.Function. A read of pci_cfg_data first
// performs the BAR read the PCI configuration access capability selects.
func (t *Transport) ReadConfig(reg uint32, data []byte) {
	defer t.core.Contain("virtio-pci configuration read")
	if overlaps(reg, len(data), t.cfgCap+16, 4) {
		func() {
			t.cfgMu.Lock()
			defer t.cfgMu.Unlock()
			t.cfgAccess(false)
		}()
	}
	t.cs.ReadConfig(reg, data)
}

// WriteConfig implements pcidev.Function: the configuration space applies
// the write (and moves BAR 0 through the BAR-change callback), then the
// transport reacts to Bus Master Enable, the MSI-X control bits, the
// INTx disable bit and pci_cfg_data.
//
// Clearing Bus Master Enable stops a running device (transport.Core.Stop:
// DEVICE_NEEDS_RESET until the driver resets it), as QEMU does: a
// function without bus mastering must not write guest memory, and Linux
// clears the bit on every PCI device before kexec precisely so that no
// device keeps filling the old kernel's buffers, which the next kernel
// reuses.
func (t *Transport) WriteConfig(reg uint32, data []byte) {
	defer t.core.Contain("virtio-pci configuration write")
	t.cfgMu.Lock()
	defer t.cfgMu.Unlock()
	was := t.cs.Command()
	t.cs.WriteConfig(reg, data)
	cmd := t.cs.Command()
	if was&^cmd&pcidev.CommandBusMaster != 0 {
		t.core.Stop("bus mastering turned off")
	}
	if overlaps(reg, len(data), t.cfgCap+16, 4) {
		t.cfgAccess(true)
	}
	refresh := false
	if off := intxOff(cmd); off != t.intxOff.Load() {
		t.intxOff.Store(off)
		refresh = true
	}
	if t.msix != nil {
		ctrl := t.cs.Uint16(t.msixCap + 2)
		on := ctrl&msixCtrlEnable != 0
		if on != t.msixOn.Load() {
			t.msixOn.Store(on)
			refresh = true
		}
		t.msix.setControl(on, ctrl&msixCtrlFuncMsk != 0)
	}
	if refresh {
		t.isr.Refresh()
	}
}

func intxOff(cmd uint16) bool { return cmd&pcidev.CommandINTxDisable != 0 }

func overlaps(reg uint32, n, start, size int) bool {
	return start > 0 && int(reg) < start+size && int(reg)+n > start
}

// cfgAccess performs the BAR access the VIRTIO_PCI_CAP_PCI_CFG capability
// describes (virtio 1.2 §4.1.4.9): cap.bar, cap.offset, cap.length (1, 2
// or 4, offset aligned to it) select it; a write sends the first length
// bytes of pci_cfg_data, a read fills them. Invalid selections are
// ignored; length 0 (nothing selected) silently. Caller holds cfgMu.
func (t *Transport) cfgAccess(write bool) {
	c := t.cfgCap
	bar, off, n := t.cs.Uint8(c+4), t.cs.Uint32(c+8), t.cs.Uint32(c+12)
	if n == 0 {
		return // no window selected (a config-space dump reading through)
	}
	if bar != BARIndex || n != 1 && n != 2 && n != 4 || off%n != 0 || off >= BARSize {
		t.core.GuestError("PCI configuration access capability: invalid bar, offset or length",
			"bar", bar, "offset", off, "length", n)
		return
	}
	var b [4]byte
	if write {
		putLE(b[:], t.cs.Uint32(c+16), 4)
		t.Write(uint64(off), b[:n])
		return
	}
	t.Read(uint64(off), b[:n])
	t.cs.SetUint32(c+16, uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24)
}

// onBARChange moves BAR 0's window on the bus and re-attaches the notify
// ioeventfds. devices/pci calls it after a configuration write turns
// memory decoding on or off or moves the BAR while decoding is on.
func (t *Transport) onBARChange(index int, _, now pcidev.BARState) {
	if index != BARIndex {
		return
	}
	t.barMu.Lock()
	defer t.barMu.Unlock()
	if t.barMapped.Load() {
		t.bus.Remove(t.barAddr.Load())
		t.barMapped.Store(false)
	}
	if now.Enabled {
		if err := t.bus.Insert(t, now.Addr, BARSize); err != nil {
			t.core.GuestError("BAR 0 placed where it cannot be mapped", "addr", now.Addr, "err", err)
		} else {
			t.barAddr.Store(now.Addr)
			t.barMapped.Store(true)
		}
	}
	t.core.Rearm()
}

// intxLevel is the ISR's level callback: it keeps the status register's
// interrupt bit and the INTx line in step with the ISR bits, MSI-X enable
// and the INTx disable bit. Called with the ISR's lock held.
func (t *Transport) intxLevel(pending bool) error {
	active := pending && !t.msixOn.Load()
	t.cs.SetInterruptStatus(active)
	high := active && !t.intxOff.Load()
	if t.intx == nil || high == t.lineHigh {
		return nil
	}
	t.lineHigh = high
	return t.intx.SetLevel(high)
}

// hooks is the Transport's transport.Hooks, kept off its public API.
type hooks Transport

// SignalQueue implements transport.Hooks.
func (h *hooks) SignalQueue(q int) error {
	if h.msixOn.Load() {
		v := h.queueVec[q].Load()
		if v == NoVector {
			return nil
		}
		return h.msix.signal(int(v))
	}
	return h.isr.Raise(transport.ISRQueue)
}

// SignalConfig implements transport.Hooks. The ISR's configuration bit
// is set in both modes, as the spec requires.
func (h *hooks) SignalConfig() error {
	if h.msixOn.Load() {
		h.isr.Raise(transport.ISRConfig)
		v := h.configVec.Load()
		if v == NoVector {
			return nil
		}
		return h.msix.signal(int(v))
	}
	return h.isr.Raise(transport.ISRConfig)
}

// NotifyMatch implements transport.Hooks: queue q's notify address in
// BAR 0, while the BAR is mapped.
func (h *hooks) NotifyMatch(q int) (transport.NotifyMatch, bool) {
	if !h.barMapped.Load() {
		return transport.NotifyMatch{}, false
	}
	return transport.NotifyMatch{Addr: h.barAddr.Load() + NotifyOffset + NotifyMultiplier*uint64(q), Len: 2}, true
}

// Reset implements transport.Hooks: vectors become VIRTIO_MSI_NO_VECTOR
// and the ISR clears. The MSI-X table belongs to PCI and is kept.
func (h *hooks) Reset() {
	h.configVec.Store(NoVector)
	for i := range h.queueVec {
		h.queueVec[i].Store(NoVector)
	}
	if h.isr != nil {
		h.isr.Clear()
	}
}
