package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// Type-0 header register offsets.
const (
	RegVendorID            = 0x00
	RegDeviceID            = 0x02
	RegCommand             = 0x04
	RegStatus              = 0x06
	RegRevisionID          = 0x08
	RegClassCode           = 0x09 // 3 bytes: programming interface, subclass, class
	RegCacheLineSize       = 0x0c
	RegLatencyTimer        = 0x0d
	RegHeaderType          = 0x0e
	RegBAR0                = 0x10
	RegSubsystemVendorID   = 0x2c
	RegSubsystemID         = 0x2e
	RegExpansionROM        = 0x30
	RegCapabilitiesPointer = 0x34
	RegInterruptLine       = 0x3c
	RegInterruptPin        = 0x3d
)

// Command register bits.
const (
	CommandIO             = 0x0001
	CommandMemory         = 0x0002
	CommandBusMaster      = 0x0004
	CommandParityResponse = 0x0040
	CommandSERR           = 0x0100
	CommandINTxDisable    = 0x0400

	commandWritable = CommandIO | CommandMemory | CommandBusMaster |
		CommandParityResponse | CommandSERR | CommandINTxDisable
)

// Status register bits.
const (
	StatusInterrupt = 0x0008 // INTx asserted (read-only, device-driven)
	StatusCapList   = 0x0010 // capability list present (read-only)
	// statusW1C: master data parity error, signaled/received target abort,
	// received master abort, signaled system error, detected parity error.
	statusW1C = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000
)

// Capability IDs the project uses.
const (
	CapPowerManagement = 0x01
	CapMSI             = 0x05
	CapVendorSpecific  = 0x09
	CapPCIExpress      = 0x10
	CapMSIX            = 0x11
)

// ConfigSpaceSize is the size of a conventional function's configuration
// space; ConfigSpace reads beyond it return zero and ignores writes.
const ConfigSpaceSize = 256

// NumBARs is the number of base address registers in a type-0 header.
const NumBARs = 6

// firstCapOffset is where capabilities start: right after the header.
const firstCapOffset = 0x40

// Header is the read-only identity of a type-0 function.
type Header struct {
	VendorID          uint16
	DeviceID          uint16
	RevisionID        uint8
	Class             uint32 // 0xCCSSPP: class, subclass, programming interface
	SubsystemVendorID uint16
	SubsystemID       uint16
	// MultiFunction sets header type bit 7. The Bus also shows the bit on
	// function 0 of any device with other functions attached.
	MultiFunction bool
	// InterruptPin is 0 for none, 1-4 for INTA#-INTD#.
	InterruptPin uint8
}

// BARKind says what a base address register decodes.
type BARKind uint8

// BAR kinds.
const (
	BARUnused BARKind = iota
	BARMem32          // 32-bit memory space
	BARMem64          // 64-bit memory space; uses two consecutive registers
	BARIO             // I/O space
)

// String returns a short name for the kind.
func (k BARKind) String() string {
	switch k {
	case BARMem32:
		return "mem32"
	case BARMem64:
		return "mem64"
	case BARIO:
		return "io"
	}
	return "unused"
}

// BAR describes one base address register.
type BAR struct {
	Kind BARKind
	// Size is the window size in bytes, a power of two: 16 bytes to 2 GiB
	// for BARMem32, 16 bytes to 2^63 for BARMem64, 4 to 256 for BARIO.
	Size uint64
	// Addr is the base address, aligned to Size.
	Addr         uint64
	Prefetchable bool
}

// BARState is a BAR as the guest has programmed it.
type BARState struct {
	BAR
	// Enabled reports whether decoding for the BAR's space is enabled in
	// the command register. A window should be on the bus only while
	// Enabled.
	Enabled bool
}

// BARChangeFunc is called after a guest configuration write changes where
// a BAR decodes: decoding of its space was turned on or off in the command
// register, or its address changed while decoding is on. index is the BAR
// number (the lower register of a 64-bit BAR). Address changes made while
// decoding is off (BAR sizing, reassignment) are not reported until decoding
// is turned back on, as Linux does around both. A guest that rewrites a
// 64-bit BAR with decoding on causes one call per dword written, the first
// with a half-updated address. A typical handler removes the window at
// old.Addr from the MMIO or PIO bus if old.Enabled and inserts it at
// new.Addr if new.Enabled.
type BARChangeFunc func(index int, old, new BARState)

// moved reports whether a BAR's effective window differs between a and b.
func moved(a, b BARState) bool {
	return a.Enabled != b.Enabled || a.Enabled && a.Addr != b.Addr
}

type barDef struct {
	kind     BARKind
	size     uint64
	prefetch bool
	upper    bool // upper half of the 64-bit BAR below it
}

// ConfigSpace is a standard type-0 configuration header plus a capability
// list, with per-bit guest write masks: read-only bits, read-write bits and
// write-1-to-clear bits. It implements Function, so a simple function can be
// attached to a Bus as is; a device that must react to configuration writes
// wraps it (call WriteConfig, then look at the registers it cares about).
//
// ConfigSpace is safe for concurrent use. Guest writes (WriteConfig) are
// serialised together with the BARChangeFunc calls they cause, which run
// with the register lock released: a BARChangeFunc may read the
// ConfigSpace and use the device-side setters, but must not call
// WriteConfig.
type ConfigSpace struct {
	writeMu sync.Mutex // serialises WriteConfig and its callbacks

	mu      sync.Mutex
	data    [ConfigSpaceSize]byte
	wmask   [ConfigSpaceSize]byte // bits the guest can write
	w1c     [ConfigSpaceSize]byte // bits the guest clears by writing 1
	bars    [NumBARs]barDef
	lastCap int // offset of the last capability, 0 if none
	nextCap int // where the next capability goes
	onBAR   BARChangeFunc
}

var _ Function = (*ConfigSpace)(nil)

// NewConfigSpace returns a configuration space with header h, no BARs and
// no capabilities. The guest can write the command register's I/O, memory,
// bus master, parity, SERR and INTx-disable bits, the cache line size and
// the interrupt line, and clear the status error bits; everything else is
// read-only until SetBAR, AddCapability or SetWritable say otherwise.
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{nextCap: firstCapOffset}
	le := binary.LittleEndian
	le.PutUint16(c.data[RegVendorID:], h.VendorID)
	le.PutUint16(c.data[RegDeviceID:], h.DeviceID)
	c.data[RegRevisionID] = h.RevisionID
	c.data[RegClassCode] = byte(h.Class)
	c.data[RegClassCode+1] = byte(h.Class >> 8)
	c.data[RegClassCode+2] = byte(h.Class >> 16)
	if h.MultiFunction {
		c.data[RegHeaderType] = 0x80
	}
	le.PutUint16(c.data[RegSubsystemVendorID:], h.SubsystemVendorID)
	le.PutUint16(c.data[RegSubsystemID:], h.SubsystemID)
	c.data[RegInterruptPin] = h.InterruptPin
	le.PutUint16(c.wmask[RegCommand:], commandWritable)
	le.PutUint16(c.w1c[RegStatus:], statusW1C)
	c.wmask[RegCacheLineSize] = 0xff
	c.wmask[RegInterruptLine] = 0xff
	return c
}

// ReadConfig implements Function.
func (c *ConfigSpace) ReadConfig(reg uint32, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		data[i] = 0
		if o := uint64(reg) + uint64(i); o < ConfigSpaceSize {
			data[i] = c.data[o]
		}
	}
}

// WriteConfig implements Function: it applies the write masks, then
// reports BAR changes to the BARChangeFunc.
func (c *ConfigSpace) WriteConfig(reg uint32, data []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	before := c.barStates()
	for i, v := range data {
		o := uint64(reg) + uint64(i)
		if o >= ConfigSpaceSize {
			break
		}
		old := c.data[o]
		nv := old&^c.wmask[o] | v&c.wmask[o]
		nv &^= v & c.w1c[o]
		c.data[o] = nv
	}
	after := c.barStates()
	cb := c.onBAR
	c.mu.Unlock()
	if cb == nil {
		return
	}
	for i := range after {
		if after[i].Kind != BARUnused && moved(before[i], after[i]) {
			cb(i, before[i], after[i])
		}
	}
}

// SetBARChangeFunc installs the function told about guest BAR changes
// (nil removes it).
func (c *ConfigSpace) SetBARChangeFunc(f BARChangeFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onBAR = f
}

// SetBAR defines BAR index with its size, kind and initial address. A
// BARMem64 also takes register index+1. The guest can then size the BAR
// (writing all ones reads back the size mask) and move it. Set BARs up
// before the guest runs; a BAR cannot be redefined.
func (c *ConfigSpace) SetBAR(index int, b BAR) error {
	if index < 0 || index >= NumBARs {
		return fmt.Errorf("pci: BAR index %d out of range", index)
	}
	if !isPow2(b.Size) {
		return fmt.Errorf("pci: BAR %d size %#x is not a power of two", index, b.Size)
	}
	if b.Addr&(b.Size-1) != 0 {
		return fmt.Errorf("pci: BAR %d address %#x not aligned to its size %#x", index, b.Addr, b.Size)
	}
	var lowMask, typeBits uint32
	switch b.Kind {
	case BARMem32:
		if b.Size < 16 || b.Size > 1<<31 || b.Addr+b.Size > 1<<32 {
			return fmt.Errorf("pci: 32-bit memory BAR %d [%#x, +%#x) invalid", index, b.Addr, b.Size)
		}
		lowMask = uint32(^(b.Size - 1)) &^ 0xf
	case BARMem64:
		if index == NumBARs-1 {
			return fmt.Errorf("pci: 64-bit BAR %d needs a second register", index)
		}
		if b.Size < 16 || b.Size > 1<<63 || b.Addr+b.Size < b.Addr {
			return fmt.Errorf("pci: 64-bit memory BAR %d [%#x, +%#x) invalid", index, b.Addr, b.Size)
		}
		lowMask = uint32(^(b.Size - 1)) &^ 0xf
		typeBits = 0x4
	case BARIO:
		if b.Size < 4 || b.Size > 256 || b.Prefetchable || b.Addr+b.Size > 1<<32 {
			return fmt.Errorf("pci: I/O BAR %d [%#x, +%#x) invalid", index, b.Addr, b.Size)
		}
		lowMask = uint32(^(b.Size - 1)) &^ 0x3
		typeBits = 0x1
	default:
		return fmt.Errorf("pci: BAR %d has no kind", index)
	}
	if b.Prefetchable {
		typeBits |= 0x8
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bars[index].kind != BARUnused || c.bars[index].upper ||
		b.Kind == BARMem64 && (c.bars[index+1].kind != BARUnused || c.bars[index+1].upper) {
		return fmt.Errorf("pci: BAR %d already defined", index)
	}
	le := binary.LittleEndian
	off := RegBAR0 + 4*index
	le.PutUint32(c.data[off:], uint32(b.Addr)&lowMask|typeBits)
	le.PutUint32(c.wmask[off:], lowMask)
	c.bars[index] = barDef{kind: b.Kind, size: b.Size, prefetch: b.Prefetchable}
	if b.Kind == BARMem64 {
		le.PutUint32(c.data[off+4:], uint32(b.Addr>>32))
		le.PutUint32(c.wmask[off+4:], uint32(^(b.Size-1)>>32))
		c.bars[index+1] = barDef{upper: true}
	}
	return nil
}

// BAR returns BAR index as currently programmed; ok is false for an unused
// register or the upper half of a 64-bit BAR.
func (c *ConfigSpace) BAR(index int) (s BARState, ok bool) {
	if index < 0 || index >= NumBARs {
		return BARState{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s = c.barState(index)
	return s, s.Kind != BARUnused
}

// barStates snapshots every BAR. Caller holds mu.
func (c *ConfigSpace) barStates() (s [NumBARs]BARState) {
	for i := range s {
		s[i] = c.barState(i)
	}
	return s
}

// barState decodes one BAR from the registers. Caller holds mu.
func (c *ConfigSpace) barState(i int) BARState {
	d := c.bars[i]
	if d.kind == BARUnused || d.upper {
		return BARState{}
	}
	le := binary.LittleEndian
	off := RegBAR0 + 4*i
	lo := le.Uint32(c.data[off:])
	cmd := le.Uint16(c.data[RegCommand:])
	s := BARState{BAR: BAR{Kind: d.kind, Size: d.size, Prefetchable: d.prefetch}}
	switch d.kind {
	case BARMem32:
		s.Addr = uint64(lo &^ 0xf)
		s.Enabled = cmd&CommandMemory != 0
	case BARMem64:
		s.Addr = uint64(lo&^0xf) | uint64(le.Uint32(c.data[off+4:]))<<32
		s.Enabled = cmd&CommandMemory != 0
	case BARIO:
		s.Addr = uint64(lo &^ 0x3)
		s.Enabled = cmd&CommandIO != 0
	}
	return s
}

// ErrNoCapabilitySpace is returned by AddCapability when the capability
// does not fit below offset 0x100.
var ErrNoCapabilitySpace = errors.New("pci: no room for capability")

// AddCapability appends a capability to the list and returns its offset.
// body is the capability after its two-byte header (ID and next pointer),
// so body[0] lands at offset+2. Capabilities are placed from 0x40 upwards,
// dword aligned, in the order added. Its bytes are read-only to the guest;
// make fields writable with SetWritable or SetWriteOneToClear at offset+n.
func (c *ConfigSpace) AddCapability(id uint8, body []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	off := c.nextCap
	if off+2+len(body) > ConfigSpaceSize {
		return 0, fmt.Errorf("%w: %d bytes at %#x", ErrNoCapabilitySpace, 2+len(body), off)
	}
	c.data[off] = id
	c.data[off+1] = 0
	copy(c.data[off+2:], body)
	if c.lastCap == 0 {
		c.data[RegCapabilitiesPointer] = byte(off)
	} else {
		c.data[c.lastCap+1] = byte(off)
	}
	c.data[RegStatus] |= StatusCapList
	c.lastCap = off
	c.nextCap = (off + 2 + len(body) + 3) &^ 3
	return off, nil
}

// FindCapability returns the offset of the first capability with the given
// ID, walking the list as a guest would.
func (c *ConfigSpace) FindCapability(id uint8) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data[RegStatus]&StatusCapList == 0 {
		return 0, false
	}
	off := int(c.data[RegCapabilitiesPointer] &^ 3)
	for ttl := (ConfigSpaceSize - firstCapOffset) / 4; off >= firstCapOffset && ttl > 0; ttl-- {
		if c.data[off] == id {
			return off, true
		}
		off = int(c.data[off+1] &^ 3)
	}
	return 0, false
}

func checkRange(off, n int) error {
	if off < 0 || n > ConfigSpaceSize || off > ConfigSpaceSize-n {
		return fmt.Errorf("pci: config range [%#x, +%d) outside the %d-byte space", off, n, ConfigSpaceSize)
	}
	return nil
}

// SetWritable makes the bits set in mask guest-writable, from offset off on
// (bits clear in mask become read-only). Use it for capability fields such
// as the MSI-X Message Control enable and mask bits:
// SetWritable(off+2, []byte{0x00, 0xc0}).
func (c *ConfigSpace) SetWritable(off int, mask []byte) error {
	if err := checkRange(off, len(mask)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.wmask[off:], mask)
	return nil
}

// SetWriteOneToClear makes the bits set in mask write-1-to-clear from
// offset off on.
func (c *ConfigSpace) SetWriteOneToClear(off int, mask []byte) error {
	if err := checkRange(off, len(mask)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.w1c[off:], mask)
	return nil
}

// Uint8 returns the byte at off, as the guest would read it. off must be
// below ConfigSpaceSize.
func (c *ConfigSpace) Uint8(off int) uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data[off]
}

// Uint16 returns the little-endian word at off.
func (c *ConfigSpace) Uint16(off int) uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint16(c.data[off:])
}

// Uint32 returns the little-endian dword at off.
func (c *ConfigSpace) Uint32(off int) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint32(c.data[off:])
}

// SetUint8 stores v at off from the device side, ignoring the guest write
// masks (for read-only status bits a device maintains).
func (c *ConfigSpace) SetUint8(off int, v uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data[off] = v
}

// SetUint16 stores v at off from the device side.
func (c *ConfigSpace) SetUint16(off int, v uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	binary.LittleEndian.PutUint16(c.data[off:], v)
}

// SetUint32 stores v at off from the device side.
func (c *ConfigSpace) SetUint32(off int, v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	binary.LittleEndian.PutUint32(c.data[off:], v)
}

// Command returns the command register.
func (c *ConfigSpace) Command() uint16 { return c.Uint16(RegCommand) }

// SetInterruptStatus sets or clears the status register's interrupt bit,
// which a device keeps in step with its INTx output.
func (c *ConfigSpace) SetInterruptStatus(asserted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if asserted {
		c.data[RegStatus] |= StatusInterrupt
	} else {
		c.data[RegStatus] &^= StatusInterrupt
	}
}

// isPow2 reports whether v is a power of two.
func isPow2(v uint64) bool { return v != 0 && bits.OnesCount64(v) == 1 }
