package machinefuzz

// The driver model: what a guest's virtio driver does through the buses
// (register accesses as a vCPU exit would deliver them, ring memory
// written through mem), kept small and able to build insane chains.

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/transport/mmio"
	vpci "github.com/flintvm/flint/virtio/transport/pci"
)

const (
	maxQueues    = 4
	maxQueueSize = 16

	// Virtio-pci common configuration offsets (virtio 1.2 §4.1.4.3).
	pciFeatureSel   = 0x00
	pciFeature      = 0x04
	pciDriverSel    = 0x08
	pciDriver       = 0x0c
	pciStatus       = 0x14
	pciQueueSel     = 0x16
	pciConfigVector = 0x10
	pciQueueSize    = 0x18
	pciQueueVector  = 0x1a
	pciQueueEnable  = 0x1c
	pciQueueDesc    = 0x20
	pciQueueDriver  = 0x28
	pciQueueDevice  = 0x30
	pciCommandMem   = 1 << 1
	pciCommandBusMa = 1 << 2

	descNext     = 1
	descWrite    = 2
	descIndirect = 4
)

// drvQueue is the driver's view of one ring.
type drvQueue struct {
	size      uint16 // 0: not set up
	nextDesc  uint16
	availIdx  uint16
	desc, avl uint64
	used      uint64
}

// Guest-side register access: a vCPU exit's write or read, except that a
// write KVM's ioeventfd would consume goes to the Notifier instead.

func (m *Machine) mmioWrite(addr uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	if n < 8 {
		v &= 1<<(8*n) - 1
	}
	if m.Notifier.GuestWrite(addr, uint32(n), v) {
		return
	}
	m.MMIO.Write(addr, b[:n])
}

func (m *Machine) mmioRead(addr uint64, n int) uint64 {
	var b [8]byte
	m.MMIO.Read(addr, b[:n])
	return binary.LittleEndian.Uint64(b[:])
}

func (m *Machine) pioWrite(port uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	m.PIO.Write(port, b[:n])
}

func (m *Machine) pioRead(port uint64, n int) uint64 {
	var b [8]byte
	m.PIO.Read(port, b[:n])
	return binary.LittleEndian.Uint64(b[:])
}

// cfgWrite writes a PCI configuration register of device dev through
// 0xCF8/0xCFC, as Linux's type-1 access does.
func (m *Machine) cfgWrite(dev int, reg uint32, n int, v uint64) {
	m.pioWrite(pci.ConfigAddressPort, 4, uint64(1<<31|uint32(dev&31)<<11|reg&0xfc))
	m.pioWrite(pci.ConfigDataPort+uint64(reg&3), n, v)
}

// cfgRead reads a PCI configuration register of device dev.
func (m *Machine) cfgRead(dev int, reg uint32, n int) uint64 {
	m.pioWrite(pci.ConfigAddressPort, 4, uint64(1<<31|uint32(dev&31)<<11|reg&0xfc))
	return m.pioRead(pci.ConfigDataPort+uint64(reg&3), n)
}

// enableMSIX finds s's MSI-X capability, enables it (function unmasked)
// and programs every table entry unmasked: vector 0 for configuration
// changes, vector 1+q for queue q, as Linux's per-queue vectors.
func (m *Machine) enableMSIX(s *Slot) {
	ptr := uint32(m.cfgRead(s.PCIDev, 0x34, 1))
	for i := 0; ptr != 0 && i < 16; i++ {
		if m.cfgRead(s.PCIDev, ptr, 1) == 0x11 {
			ctrl := m.cfgRead(s.PCIDev, ptr+2, 2)
			m.cfgWrite(s.PCIDev, ptr+2, 2, (ctrl|1<<15)&^(1<<14))
			break
		}
		ptr = uint32(m.cfgRead(s.PCIDev, ptr+1, 1))
	}
	base, ok := s.regs()
	if !ok {
		return
	}
	for v := range len(s.queues) + 1 {
		e := base + vpci.MSIXTableOffset + 16*uint64(v)
		m.mmioWrite(e, 4, 0xfee0_0000)
		m.mmioWrite(e+4, 4, 0)
		m.mmioWrite(e+8, 4, 0x30+uint64(v))
		m.mmioWrite(e+12, 4, 0)
	}
	m.mmioWrite(base+vpci.CommonOffset+pciConfigVector, 2, 0)
}

// regs is where s's transport registers are now: the virtio-mmio window,
// or BAR 0 wherever the guest put it (0, false while unmapped).
func (s *Slot) regs() (uint64, bool) {
	if s.PCI != nil {
		return s.PCI.BAR()
	}
	return s.Base, true
}

// common writes a common register: offMMIO on virtio-mmio, offPCI in
// virtio-pci's common configuration.
func (m *Machine) common(s *Slot, offMMIO, offPCI uint64, n int, v uint64) {
	base, ok := s.regs()
	if !ok {
		return
	}
	if s.PCI != nil {
		if n == 8 { // two dwords, as Linux's vp_iowrite64_twopart
			m.mmioWrite(base+vpci.CommonOffset+offPCI, 4, v&0xffff_ffff)
			m.mmioWrite(base+vpci.CommonOffset+offPCI+4, 4, v>>32)
			return
		}
		m.mmioWrite(base+vpci.CommonOffset+offPCI, n, v)
		return
	}
	if n == 8 { // the Low and High registers
		m.mmioWrite(base+offMMIO, 4, v&0xffff_ffff)
		m.mmioWrite(base+offMMIO+4, 4, v>>32)
		return
	}
	m.mmioWrite(base+offMMIO, 4, v)
}

func (m *Machine) commonRead(s *Slot, offMMIO, offPCI uint64, n int) uint64 {
	base, ok := s.regs()
	if !ok {
		return 0
	}
	if s.PCI != nil {
		return m.mmioRead(base+vpci.CommonOffset+offPCI, n)
	}
	return m.mmioRead(base+offMMIO, 4)
}

// Status reads s's device status register.
func (m *Machine) Status(s *Slot) virtio.Status {
	return virtio.Status(m.commonRead(s, mmio.RegStatus, pciStatus, 1))
}

// SetStatus writes s's device status register (0 resets the device).
func (m *Machine) SetStatus(s *Slot, st virtio.Status) {
	m.common(s, mmio.RegStatus, pciStatus, 1, uint64(st))
	if st == 0 {
		for _, q := range s.queues {
			*q = drvQueue{}
		}
	}
}

// RestorePCI puts every PCI function's BAR 0 back at its home address
// with memory decoding and bus mastering on, whatever the guest did to
// it: first all off (a BAR moved onto another's home blocks it), then
// each back.
func (m *Machine) RestorePCI() {
	for _, s := range m.Slots {
		if s.PCI != nil {
			m.cfgWrite(s.PCIDev, 0x04, 2, 0)
		}
	}
	for _, s := range m.Slots {
		if s.PCI != nil {
			m.cfgWrite(s.PCIDev, 0x10, 4, s.Base&0xffff_ffff)
			m.cfgWrite(s.PCIDev, 0x14, 4, s.Base>>32)
			m.cfgWrite(s.PCIDev, 0x04, 2, pciCommandMem|pciCommandBusMa)
		}
	}
}

// BringUp plays a driver's initialisation of s: reset, ACKNOWLEDGE,
// DRIVER, the offered features masked by mask (VERSION_1 always),
// FEATURES_OK, every queue at its ring page (size min(max, 16)),
// DRIVER_OK; on virtio-pci with msix, MSI-X enabled with a vector per
// queue. It returns an error saying where the device refused.
func (m *Machine) BringUp(s *Slot, mask uint64, msix bool) error {
	if s.PCI != nil {
		if _, ok := s.PCI.BAR(); !ok {
			m.cfgWrite(s.PCIDev, 0x04, 2, pciCommandMem|pciCommandBusMa)
		}
	}
	m.SetStatus(s, 0)
	if st := m.Status(s); st != 0 {
		return fmt.Errorf("%s: status %v after reset", s.Name, st)
	}
	m.SetStatus(s, virtio.StatusAcknowledge)
	m.SetStatus(s, virtio.StatusAcknowledge|virtio.StatusDriver)
	var offered uint64
	for sel := uint64(0); sel < 2; sel++ {
		m.common(s, mmio.RegDeviceFeaturesSel, pciFeatureSel, 4, sel)
		offered |= m.commonRead(s, mmio.RegDeviceFeatures, pciFeature, 4) & 0xffff_ffff << (32 * sel)
	}
	want := offered & (mask | virtio.FeatureVersion1.Mask())
	for sel := uint64(0); sel < 2; sel++ {
		m.common(s, mmio.RegDriverFeaturesSel, pciDriverSel, 4, sel)
		m.common(s, mmio.RegDriverFeatures, pciDriver, 4, want>>(32*sel)&0xffff_ffff)
	}
	st := virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK
	m.SetStatus(s, st)
	if got := m.Status(s); !got.Has(virtio.StatusFeaturesOK) {
		return fmt.Errorf("%s: FEATURES_OK refused for %#x (status %v)", s.Name, want, got)
	}
	msix = msix && s.PCI != nil
	if msix {
		m.enableMSIX(s)
	}
	for i, q := range s.queues {
		m.common(s, mmio.RegQueueSel, pciQueueSel, 2, uint64(i))
		mx := uint16(m.commonRead(s, mmio.RegQueueNumMax, pciQueueSize, 2))
		size := uint16(maxQueueSize)
		for size > mx && size > 1 {
			size /= 2
		}
		page := ringBase + uint64(s.index*maxQueues+i)*0x1000
		clear(mustSlice(m, page, 0x1000))
		*q = drvQueue{size: size, desc: page, avl: page + 0x400, used: page + 0x800}
		m.common(s, mmio.RegQueueNum, pciQueueSize, 2, uint64(size))
		if msix {
			m.common(s, 0, pciQueueVector, 2, uint64(1+i))
		}
		m.common(s, mmio.RegQueueDescLow, pciQueueDesc, 8, q.desc)
		m.common(s, mmio.RegQueueDriverLow, pciQueueDriver, 8, q.avl)
		m.common(s, mmio.RegQueueDeviceLow, pciQueueDevice, 8, q.used)
		m.common(s, mmio.RegQueueReady, pciQueueEnable, 2, 1)
	}
	m.SetStatus(s, st|virtio.StatusDriverOK)
	if got := m.Status(s); !got.Has(virtio.StatusDriverOK) || got.Has(virtio.StatusDeviceNeedsReset) || got.Has(virtio.StatusFailed) {
		return fmt.Errorf("%s: DRIVER_OK not reached: status %v", s.Name, got)
	}
	return nil
}

func mustSlice(m *Machine, addr, n uint64) []byte {
	b, err := m.Mem.Slice(addr, n)
	if err != nil {
		panic(fmt.Sprintf("machinefuzz: the driver model's own area %#x+%#x is outside RAM", addr, n))
	}
	return b
}

// Desc is one descriptor a chain is built from.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16 // descWrite, or raw flags for an insane chain
	Next  uint16 // used only by insane chains
}

// Post puts a chain on ring q of s and publishes it (no kick). A sane
// chain links descs with NEXT in table order (or, indirect, through a
// table at tableAddr); an insane one writes each Desc's flags and next
// exactly as given. The driver model does not wait for used buffers: it
// reuses descriptors round-robin, so a full ring turns sane chains into
// overwritten ones, which the device must survive too.
func (m *Machine) Post(s *Slot, qi int, descs []Desc, insane, indirect bool, tableAddr uint64) {
	if qi >= len(s.queues) || s.queues[qi].size == 0 || len(descs) == 0 {
		return
	}
	q := s.queues[qi]
	put := func(table uint64, i uint16, d Desc, last bool, idx func(uint16) uint16) {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[0:], d.Addr)
		binary.LittleEndian.PutUint32(b[8:], d.Len)
		flags, next := d.Flags, d.Next
		if !insane {
			flags &= descWrite
			next = 0
			if !last {
				flags |= descNext
				next = idx(i + 1)
			}
		}
		binary.LittleEndian.PutUint16(b[12:], flags)
		binary.LittleEndian.PutUint16(b[14:], next)
		m.Mem.Write(table+16*uint64(idx(i)), b[:])
	}
	head := q.nextDesc % q.size
	if indirect {
		for i, d := range descs {
			put(tableAddr, uint16(i), d, i == len(descs)-1, func(i uint16) uint16 { return i })
		}
		put(q.desc, 0, Desc{Addr: tableAddr, Len: uint32(16 * len(descs)), Flags: descIndirect}, true,
			func(uint16) uint16 { return head })
		q.nextDesc++
	} else {
		ring := func(i uint16) uint16 { return (head + i) % q.size }
		for i, d := range descs {
			put(q.desc, uint16(i), d, i == len(descs)-1, ring)
		}
		q.nextDesc += uint16(len(descs))
	}
	m.Mem.WriteU16(q.avl+4+2*uint64(q.availIdx%q.size), head)
	q.availIdx++
	if idx, err := m.Mem.AtomicU16(q.avl + 2); err == nil {
		idx.Store(q.availIdx) // after the ring entry, as a driver's barrier orders it
	}
}

// Kick notifies ring q of s as a driver does: QueueNotify on virtio-mmio,
// the queue's notify address on virtio-pci.
func (m *Machine) Kick(s *Slot, q int) {
	base, ok := s.regs()
	if !ok {
		return
	}
	if s.PCI != nil {
		m.mmioWrite(base+vpci.NotifyOffset+vpci.NotifyMultiplier*uint64(q), 2, uint64(q))
		return
	}
	m.mmioWrite(base+mmio.RegQueueNotify, 4, uint64(q))
}

// UsedIdx reads ring q's used index (0 if the driver model has not set
// the ring up).
func (m *Machine) UsedIdx(s *Slot, q int) uint16 {
	if q >= len(s.queues) || s.queues[q].size == 0 {
		return 0
	}
	idx, _ := m.Mem.AtomicU16(s.queues[q].used + 2)
	return idx.Load()
}

// Settle waits until the devices have used every chain the driver model
// published, at most max, and no more than 1 ms without progress: a
// device may leave broken chains unused.
func (m *Machine) Settle(max time.Duration) {
	end := time.Now().Add(max)
	prev, still := m.usedSum(), time.Now()
	for !m.idle() && time.Now().Before(end) && time.Since(still) < time.Millisecond {
		time.Sleep(100 * time.Microsecond)
		if cur := m.usedSum(); cur != prev {
			prev, still = cur, time.Now()
		}
	}
}

// usedSum adds up the used indices (progress shows as a change).
func (m *Machine) usedSum() int {
	n := 0
	for _, s := range m.Slots {
		for i := range s.queues {
			n += int(m.UsedIdx(s, i))
		}
	}
	return n
}

// idle reports whether every set-up ring's used index has caught up with
// the driver's avail index.
func (m *Machine) idle() bool {
	for _, s := range m.Slots {
		for i, q := range s.queues {
			if q.size != 0 && m.UsedIdx(s, i) != q.availIdx {
				return false
			}
		}
	}
	return true
}

// WaitUsed waits at most max for ring q of s to reach used index n.
func (m *Machine) WaitUsed(s *Slot, q int, n uint16, max time.Duration) bool {
	end := time.Now().Add(max)
	for m.UsedIdx(s, q) != n {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}
