package pci

import (
	"encoding/binary"

	"github.com/flintvm/flint/virtio/transport"
)

// Field offsets in virtio_pci_common_cfg (virtio 1.2 §4.1.4.3).
const (
	cfgDeviceFeatureSelect = 0x00
	cfgDeviceFeature       = 0x04
	cfgDriverFeatureSelect = 0x08
	cfgDriverFeature       = 0x0c
	cfgConfigMSIXVector    = 0x10
	cfgNumQueues           = 0x12
	cfgDeviceStatus        = 0x14
	cfgConfigGeneration    = 0x15
	cfgQueueSelect         = 0x16
	cfgQueueSize           = 0x18
	cfgQueueMSIXVector     = 0x1a
	cfgQueueEnable         = 0x1c
	cfgQueueNotifyOff      = 0x1e
	cfgQueueDesc           = 0x20
	cfgQueueDriver         = 0x28
	cfgQueueDevice         = 0x30
	cfgQueueNotifyData     = 0x38
	cfgQueueReset          = 0x3a
)

// region says which structure of BAR 0 an access falls in, and the
// offset inside it; ok is false if the access is not wholly inside one.
func region(off uint64, n int) (base uint64, ok bool) {
	for _, r := range [...]struct{ base, size uint64 }{
		{CommonOffset, CommonLength},
		{ISROffset, 0x1000},
		{DeviceOffset, MaxConfigSize},
		{NotifyOffset, 0x1000},
		{MSIXTableOffset, MSIXPBAOffset - MSIXTableOffset},
		{MSIXPBAOffset, BARSize - MSIXPBAOffset},
	} {
		if off >= r.base && off-r.base < r.size && uint64(n) <= r.size-(off-r.base) {
			return r.base, true
		}
	}
	return 0, false
}

// Read implements devices.Device for BAR 0 (offset relative to the BAR).
func (t *Transport) Read(off uint64, data []byte) {
	defer t.core.Contain("virtio-pci BAR read")
	clear(data)
	base, ok := region(off, len(data))
	if !ok || len(data) == 0 {
		t.core.GuestError("virtio-pci BAR read outside the virtio structures", "offset", off, "len", len(data))
		return
	}
	switch base {
	case CommonOffset:
		t.readCommon(off, data)
	case ISROffset:
		if off == ISROffset {
			data[0] = byte(t.isr.ReadAndClear())
		}
	case DeviceOffset:
		t.core.ReadConfig(off-DeviceOffset, data)
	case NotifyOffset:
		// Write-only; reads as zero.
	case MSIXTableOffset:
		if t.msix == nil || !t.msix.readTable(off-MSIXTableOffset, data) {
			t.core.GuestError("MSI-X table read not an aligned dword/qword of an entry", "offset", off, "len", len(data))
		}
	case MSIXPBAOffset:
		if t.msix == nil || !t.msix.readPBA(off-MSIXPBAOffset, data) {
			t.core.GuestError("MSI-X PBA read not an aligned dword/qword", "offset", off, "len", len(data))
		}
	}
}

// Write implements devices.Device for BAR 0.
func (t *Transport) Write(off uint64, data []byte) {
	defer t.core.Contain("virtio-pci BAR write")
	base, ok := region(off, len(data))
	if !ok || len(data) == 0 {
		t.core.GuestError("virtio-pci BAR write outside the virtio structures", "offset", off, "len", len(data))
		return
	}
	switch base {
	case CommonOffset:
		t.writeCommon(off, data)
	case ISROffset:
		t.core.GuestError("write to the read-only ISR status", "offset", off)
	case DeviceOffset:
		t.core.WriteConfig(off-DeviceOffset, data)
	case NotifyOffset:
		// Queue q's notify address is NotifyOffset + 4q; the value
		// written (the queue index) carries nothing more without
		// VIRTIO_F_NOTIFICATION_DATA.
		t.core.Notify(uint32((off - NotifyOffset) / NotifyMultiplier))
	case MSIXTableOffset:
		if t.msix == nil || !t.msix.writeTable(off-MSIXTableOffset, data) {
			t.core.GuestError("MSI-X table write not an aligned dword/qword of an entry", "offset", off, "len", len(data))
		}
	case MSIXPBAOffset:
		t.core.GuestError("write to the read-only MSI-X PBA", "offset", off)
	}
}

// readCommon serves any read inside the common configuration structure:
// it has no side effects, so a snapshot is laid out and sliced.
func (t *Transport) readCommon(off uint64, data []byte) {
	s := t.core.State()
	var b [CommonLength]byte
	le := binary.LittleEndian
	le.PutUint32(b[cfgDeviceFeatureSelect:], s.DeviceFeatureSelect)
	le.PutUint32(b[cfgDeviceFeature:], s.DeviceFeatures)
	le.PutUint32(b[cfgDriverFeatureSelect:], s.DriverFeatureSelect)
	le.PutUint32(b[cfgDriverFeature:], s.DriverFeatures)
	le.PutUint16(b[cfgConfigMSIXVector:], uint16(t.configVec.Load()))
	le.PutUint16(b[cfgNumQueues:], uint16(s.NumQueues))
	b[cfgDeviceStatus] = byte(s.Status)
	b[cfgConfigGeneration] = byte(s.ConfigGeneration)
	le.PutUint16(b[cfgQueueSelect:], uint16(s.Queue.Index))
	if q := s.Queue; q.Exists {
		le.PutUint16(b[cfgQueueSize:], uint16(q.Size))
		le.PutUint16(b[cfgQueueMSIXVector:], uint16(t.queueVec[q.Index].Load()))
		if q.Enabled {
			le.PutUint16(b[cfgQueueEnable:], 1)
		}
		le.PutUint16(b[cfgQueueNotifyOff:], uint16(q.Index))
		le.PutUint64(b[cfgQueueDesc:], q.Desc)
		le.PutUint64(b[cfgQueueDriver:], q.Driver)
		le.PutUint64(b[cfgQueueDevice:], q.Device)
	}
	copy(data, b[off-CommonOffset:])
}

// writeCommon serves a write to the common configuration structure. The
// driver must use each field's natural width (64-bit addresses may be
// written as two dwords, as Linux does); other writes are ignored.
func (t *Transport) writeCommon(off uint64, data []byte) {
	c, n := t.core, len(data)
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(data[i])
	}
	f := off - CommonOffset
	switch {
	case f == cfgDeviceFeatureSelect && n == 4:
		c.SetDeviceFeatureSelect(uint32(v))
	case f == cfgDriverFeatureSelect && n == 4:
		c.SetDriverFeatureSelect(uint32(v))
	case f == cfgDriverFeature && n == 4:
		c.SetDriverFeatures(uint32(v))
	case f == cfgConfigMSIXVector && n == 2:
		t.configVec.Store(t.vector(uint16(v)))
	case f == cfgDeviceStatus && n == 1:
		c.WriteStatus(uint8(v))
	case f == cfgQueueSelect && n == 2:
		c.SelectQueue(uint32(v))
	case f == cfgQueueSize && n == 2:
		c.SetQueueSize(uint32(v))
	case f == cfgQueueMSIXVector && n == 2:
		q := c.State().Queue
		if !q.Exists {
			c.GuestError("queue_msix_vector written for a queue the device does not have", "queue", q.Index)
			return
		}
		t.queueVec[q.Index].Store(t.vector(uint16(v)))
	case f == cfgQueueEnable && n == 2:
		if v != 1 {
			c.GuestError("queue_enable written with a value other than 1", "value", v)
			return
		}
		c.SetQueueEnabled(true)
	case f >= cfgQueueDesc && f < cfgQueueNotifyData && (n == 4 || n == 8) && f%uint64(n) == 0:
		area := transport.Area((f - cfgQueueDesc) / 8)
		if n == 8 {
			c.SetQueueAddr(area, v)
		} else {
			c.SetQueueAddrHalf(area, f%8 == 4, uint32(v))
		}
	case f == cfgQueueReset && n == 2:
		c.GuestError("queue_reset written without VIRTIO_F_RING_RESET", "value", v)
	default:
		c.GuestError("common configuration write to a read-only field or with the wrong width", "offset", f, "len", n)
	}
}

// vector returns v if it names an MSI-X table entry, else NoVector: what
// the driver reads back tells it whether the assignment took.
func (t *Transport) vector(v uint16) uint32 {
	if t.msix == nil || int(v) >= len(t.msix.entries) {
		return NoVector
	}
	return uint32(v)
}
