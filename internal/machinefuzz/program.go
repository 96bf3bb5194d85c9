package machinefuzz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/flintvm/flint/devices/acpipm"
	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/virtio/transport/mmio"
	vpci "github.com/flintvm/flint/virtio/transport/pci"
)

// A program is a sequence of 8-byte ops: [kind, a, b (2 bytes LE), c (4
// bytes LE)]; a trailing partial op is ignored, and at most MaxOps run.
const (
	OpSize = 8
	MaxOps = 256
)

// Op kinds (the first byte, modulo NumOps).
const (
	OpPIORead   = iota // port: b indexes Ports (a&0x80: b is the port); width a&3
	OpPIOWrite         // the same, writing c
	OpMMIORead         // window (a>>2)&7: a slot's registers at offset b, or 6: the PCI window, 7: the virtio-mmio window; width a&3
	OpMMIOWrite        // the same, writing c
	OpCfgWrite         // PCI device a%8, register b&0xff, width (b>>8)&3, value c, through 0xCF8/0xCFC
	OpMemWrite         // guest RAM at (a<<16|b) % MemSize: c (4 bytes)
	OpBringUp          // slot a: the driver's initialisation, features offered & (c | b<<32), or all when a&0x80; MSI-X when a&0x40
	OpPost             // slot a, queue a>>4: a chain (see post)
	OpKick             // slot a, queue a>>4
	OpSettle           // wait for the devices to settle, at most 1+c%20 ms
	OpStatus           // slot a: status 0 (reset), or b&0xff when a&0x80
	OpBufWrite         // slot a's buffer area at b % bufSize: c (4 bytes)
	NumOps
)

// Ports are the PIO ports OpPIORead/OpPIOWrite aim at.
var Ports = func() []uint64 {
	var p []uint64
	for i := range uint64(8) {
		p = append(p, COM1Port+i, pci.ConfigAddressPort+i)
	}
	p = append(p, I8042Data, I8042Cmd, CMOSPort, CMOSPort+1, DebugPort)
	for i := range uint64(acpipm.Size) {
		p = append(p, acpipm.Base+i)
	}
	return p
}()

var widths = [4]int{1, 2, 4, 8}

// Op builds one op.
func Op(kind, a byte, b uint16, c uint32) []byte {
	op := []byte{kind, a, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(op[2:], b)
	binary.LittleEndian.PutUint32(op[4:], c)
	return op
}

// Run plays prog against m. Its OpSettle waits take at most 50 ms in
// all.
func (m *Machine) Run(prog []byte) {
	m.settleBudget = 50 * time.Millisecond
	for n := 0; len(prog) >= OpSize && n < MaxOps; n++ {
		kind, a := prog[0]%NumOps, prog[1]
		b, c := binary.LittleEndian.Uint16(prog[2:]), binary.LittleEndian.Uint32(prog[4:])
		prog = prog[OpSize:]
		m.step(kind, a, b, c)
	}
}

func (m *Machine) slot(a byte) *Slot { return m.Slots[int(a&0x0f)%len(m.Slots)] }

func (m *Machine) step(kind, a byte, b uint16, c uint32) {
	w := widths[a&3]
	switch kind {
	case OpPIORead, OpPIOWrite:
		port := Ports[int(b)%len(Ports)]
		if a&0x80 != 0 {
			port = uint64(b)
		}
		if kind == OpPIORead {
			m.pioRead(port, w)
		} else {
			m.pioWrite(port, w, uint64(c))
		}
	case OpMMIORead, OpMMIOWrite:
		addr := m.mmioTarget(a, b, c)
		if kind == OpMMIORead {
			m.mmioRead(addr, w)
		} else {
			m.mmioWrite(addr, w, uint64(c))
		}
	case OpCfgWrite:
		reg := uint32(b & 0xff)
		n := widths[(b>>8)&3]
		if n == 8 || reg%4+uint32(n) > 4 {
			n = 4
			reg &^= 3
		}
		m.cfgWrite(int(a%8), reg, n, uint64(c))
	case OpMemWrite:
		m.Mem.WriteU32((uint64(a)<<16|uint64(b))%(MemSize-3), c)
	case OpBringUp:
		mask := uint64(c) | uint64(b)<<32
		if a&0x80 != 0 {
			mask = ^uint64(0)
		}
		m.BringUp(m.slot(a), mask, a&0x40 != 0) // a refusal is the device's right
	case OpPost:
		m.post(m.slot(a), int(a>>4), b, c)
	case OpKick:
		s := m.slot(a)
		m.Kick(s, int(a>>4)%(len(s.queues)+1)) // one past the last: an invalid queue
	case OpSettle:
		d := min(time.Duration(1+c%20)*time.Millisecond, m.settleBudget)
		m.settleBudget -= d
		m.Settle(d)
	case OpStatus:
		s := m.slot(a)
		if a&0x80 != 0 {
			m.common(s, mmio.RegStatus, pciStatus, 1, uint64(b&0xff))
		} else {
			m.SetStatus(s, 0)
		}
	case OpBufWrite:
		m.Mem.WriteU32(bufBase+uint64(m.slot(a).index)*bufSize+uint64(b)%(bufSize-3), c)
	}
}

// mmioTarget picks an MMIO address: mostly inside a device's registers.
func (m *Machine) mmioTarget(a byte, b uint16, c uint32) uint64 {
	t := int(a>>2) & 7
	switch {
	case t < len(m.Slots):
		s := m.Slots[t]
		base, ok := s.regs()
		if !ok {
			base = s.Base
		}
		if s.PCI != nil {
			return base + uint64(b)%vpci.BARSize
		}
		return base + uint64(b)%mmio.WindowSize
	case t == 6:
		return PCIWindow + (uint64(c)<<16|uint64(b))%(4*vpci.BARSize)
	}
	return MMIOWindow + (uint64(c)<<16|uint64(b))%0x4000
}

// post builds a chain from an OpPost's fields on ring q of s: 1+(b&3)
// descriptors, writable where bit i of (b>>2)&0xf is set, indirect when
// b&0x40, insane when b&0x80; a sane chain's buffers start at
// ((b>>8)&0x3f)*256 in the slot's buffer area and are 4*(byte i of c)
// bytes long (at least 1); an insane one takes addresses, lengths, flags and next
// links from c and b as they come.
func (m *Machine) post(s *Slot, q int, b uint16, c uint32) {
	if len(s.queues) == 0 {
		return
	}
	q %= len(s.queues)
	n := 1 + int(b&3)
	area := bufBase + uint64(s.index)*bufSize
	at := area + uint64((b>>8)&0x3f)*256
	descs := make([]Desc, n)
	insane := b&0x80 != 0
	for i := range descs {
		cb := byte(c >> (8 * i))
		if insane {
			descs[i] = Desc{Addr: uint64(c) << (4 * i), Len: uint32(cb)<<12 | c&0xfff, Flags: uint16(c >> (8 * i)), Next: uint16(b>>8) + uint16(i)}
			continue
		}
		l := max(1, 4*uint32(cb))
		var f uint16
		if (b>>2)&0xf&(1<<i) != 0 {
			f = descWrite
		}
		descs[i] = Desc{Addr: at, Len: l, Flags: f}
		at += uint64(l)
	}
	m.Post(s, q, descs, insane, b&0x40 != 0, area+bufSize-256)
}

// Redrive checks that every device, whatever the program did, can be
// reset and driven to DRIVER_OK again, and that the simple ones then
// work: a read of sector 0 on blk, a packet out of net, bytes out of the
// console, bytes from rng.
func (m *Machine) Redrive() error {
	m.RestorePCI()
	var errs []error
	for _, s := range m.Slots {
		if err := m.BringUp(s, ^uint64(0), false); err != nil {
			errs = append(errs, fmt.Errorf("after the program: %w", err))
			continue
		}
		area := bufBase + uint64(s.index)*bufSize
		clear(mustSlice(m, area, bufSize))
		var q int
		var chain []Desc
		switch s.Name {
		case "blk": // header (IN, sector 0), data, status
			chain = []Desc{{Addr: area, Len: 16}, {Addr: area + 512, Len: 512, Flags: descWrite}, {Addr: area + 1024, Len: 1, Flags: descWrite}}
			m.Mem.WriteU8(area+1024, 0xff)
		case "net": // transmitq: a zero header and a 60-byte frame
			q, chain = 1, []Desc{{Addr: area, Len: 12 + 60}}
		case "console": // transmitq
			q, chain = 1, []Desc{{Addr: area, Len: 5}}
		case "rng":
			chain = []Desc{{Addr: area, Len: 64, Flags: descWrite}}
		default:
			continue
		}
		m.Post(s, q, chain, false, false, 0)
		m.Kick(s, q)
		if !m.WaitUsed(s, q, 1, 5*time.Second) {
			errs = append(errs, fmt.Errorf("%s: re-driven after the program, a request on queue %d was not used within 5s (status %v)", s.Name, q, m.Status(s)))
			continue
		}
		if st, _ := m.Mem.ReadU8(area + 1024); s.Name == "blk" && st != 0 {
			errs = append(errs, fmt.Errorf("blk: re-driven after the program, a read of sector 0 answered status %d", st))
		}
	}
	return errors.Join(errs...)
}
