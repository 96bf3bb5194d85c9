package pci

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/virtio/transport"
)

// message is an MSI message as the guest programmed it in a table entry.
type message struct {
	addr uint64
	data uint32
}

// MSIXRouter delivers one function's MSI-X interrupts. The VMM implements
// it, typically with one GSI and one irqfd per vector: SetVector records
// a vector's MSI message, Commit installs the routes recorded since the
// last Commit (one KVM_SET_GSI_ROUTING at most, none if no unmasked
// route changed), Trigger writes the irqfd, so a device's interrupt
// costs one eventfd write and no lock on the data path beyond a read
// lock shared with the other vectors.
//
// The transport owns masking and the pending bits: it never calls Trigger
// for a masked vector (it sets the vector's pending bit instead and
// triggers on unmask), so the router needs no mask logic of its own.
// After each guest register write it calls SetVector for the entries
// whose message or mask state changed, then Commit once, and only then
// triggers vectors the write unmasked: a guest rewriting entries in a
// loop costs the VMM an ioctl only when an unmasked route really changes
// (issue 13 finding 12).
type MSIXRouter interface {
	// SetVector reports vector v's table entry, the MSI message (addr,
	// data), whenever the message or its mask state changes. masked is
	// the effective state: the entry's mask bit, the function mask, or
	// MSI-X disabled. A router may ignore updates with masked true and
	// program the route on the next unmasked one; it need not install
	// anything before Commit. Called from vCPU goroutines, never
	// concurrently with another SetVector, Commit or a Trigger.
	SetVector(v int, addr uint64, data uint32, masked bool) error
	// Commit installs what SetVector reported since the last Commit; a
	// router should do nothing when no unmasked route changed. Same
	// calling rules as SetVector. An error means the vectors reported
	// unmasked since the last Commit are not routed.
	Commit() error
	// Trigger sends vector v's message once. It is called only while v
	// is unmasked, after the Commit that followed the SetVector that
	// reported its current message unmasked; from device goroutines,
	// concurrently for different (or the same) vectors, and from a vCPU
	// goroutine when an unmask delivers a pending interrupt. It must not
	// allocate.
	Trigger(v int) error
}

// MSI-X table entry layout (PCI Local Bus 3.0 §6.8.2.6).
const (
	msixEntrySize   = 16
	msixAddrLo      = 0
	msixAddrHi      = 4
	msixData        = 8
	msixVectorCtrl  = 12
	msixCtrlMasked  = 1
	msixCtrlEnable  = 0x8000 // Message Control: MSI-X Enable
	msixCtrlFuncMsk = 0x4000 // Message Control: Function Mask
)

type msixEntry struct {
	addrLo, addrHi, data, ctrl uint32

	reported       bool // SetVector was called at least once
	lastMsg        message
	lastMasked     bool
	lastReportedOK bool
}

// msix is a function's MSI-X table, pending bits and control state.
type msix struct {
	router  MSIXRouter
	onError func(msg string, args ...any)

	mu      sync.RWMutex // write: table and control; read: signal
	entries []msixEntry
	enabled bool
	fmask   bool
	// uncommitted: SetVector was called since the last Commit.
	uncommitted bool
	pending     []atomic.Uint64 // set under mu.RLock, cleared under mu.Lock
}

func newMSIX(n int, r MSIXRouter, onError func(string, ...any)) *msix {
	m := &msix{router: r, onError: onError, entries: make([]msixEntry, n),
		pending: make([]atomic.Uint64, (n+63)/64)}
	for i := range m.entries {
		m.entries[i].ctrl = msixCtrlMasked
	}
	return m
}

// maskedLocked reports v's effective mask. Caller holds mu (either mode).
func (m *msix) maskedLocked(v int) bool {
	return !m.enabled || m.fmask || m.entries[v].ctrl&msixCtrlMasked != 0
}

// signal delivers vector v, or marks it pending while masked.
func (m *msix) signal(v int) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if v < 0 || v >= len(m.entries) {
		return nil
	}
	if m.maskedLocked(v) {
		m.pending[v/64].Or(1 << (v % 64))
		return nil
	}
	return m.router.Trigger(v)
}

// reportLocked reports v's entry to the router if it changed; commitLocked
// must follow. Caller holds mu for writing.
func (m *msix) reportLocked(v int) {
	e := &m.entries[v]
	msg := message{addr: uint64(e.addrHi)<<32 | uint64(e.addrLo), data: e.data}
	masked := m.maskedLocked(v)
	if e.reported && msg == e.lastMsg && masked == e.lastMasked {
		return
	}
	e.reported, e.lastMsg, e.lastMasked = true, msg, masked
	err := m.router.SetVector(v, msg.addr, msg.data, masked)
	e.lastReportedOK = err == nil
	m.uncommitted = true
	if err != nil {
		m.onError("MSI-X vector not routed", "vector", v, "err", err)
	}
}

// commitLocked has the router install what reportLocked reported (one
// Commit for a whole register write), then delivers the pending
// interrupts of the vectors in [lo, hi) that are now unmasked and routed.
// Caller holds mu for writing.
func (m *msix) commitLocked(lo, hi int) {
	if m.uncommitted {
		m.uncommitted = false
		if err := m.router.Commit(); err != nil {
			m.onError("MSI-X routes not installed", "err", err)
			for v := lo; v < hi; v++ {
				if e := &m.entries[v]; !m.maskedLocked(v) {
					e.lastReportedOK, e.reported = false, false // reported again at the next write
				}
			}
		}
	}
	for v := lo; v < hi; v++ {
		bit := uint64(1) << (v % 64)
		if !m.maskedLocked(v) && m.entries[v].lastReportedOK && m.pending[v/64].Load()&bit != 0 {
			m.pending[v/64].And(^bit)
			m.router.Trigger(v)
		}
	}
}

// setControl applies the Message Control enable and function mask bits.
func (m *msix) setControl(enabled, fmask bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if enabled == m.enabled && fmask == m.fmask {
		return
	}
	m.enabled, m.fmask = enabled, fmask
	for v := range m.entries {
		m.reportLocked(v)
	}
	m.commitLocked(0, len(m.entries))
}

// readTable serves a 4- or 8-byte aligned read at off in the table.
func (m *msix) readTable(off uint64, data []byte) bool {
	if !aligned(off, len(data)) || off/msixEntrySize >= uint64(len(m.entries)) {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for i := 0; i < len(data); i += 4 {
		e := &m.entries[(off+uint64(i))/msixEntrySize]
		var v uint32
		switch (off + uint64(i)) % msixEntrySize {
		case msixAddrLo:
			v = e.addrLo
		case msixAddrHi:
			v = e.addrHi
		case msixData:
			v = e.data
		case msixVectorCtrl:
			v = e.ctrl
		}
		binary.LittleEndian.PutUint32(data[i:], v)
	}
	return true
}

// writeTable serves a 4- or 8-byte aligned write at off in the table.
func (m *msix) writeTable(off uint64, data []byte) bool {
	if !aligned(off, len(data)) || off/msixEntrySize >= uint64(len(m.entries)) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v := int(off / msixEntrySize)
	e := &m.entries[v]
	for i := 0; i < len(data); i += 4 {
		w := binary.LittleEndian.Uint32(data[i:])
		switch (off + uint64(i)) % msixEntrySize {
		case msixAddrLo:
			e.addrLo = w &^ 3 // dword-aligned message address
		case msixAddrHi:
			e.addrHi = w
		case msixData:
			e.data = w
		case msixVectorCtrl:
			e.ctrl = w & msixCtrlMasked
		}
	}
	m.reportLocked(v)
	m.commitLocked(v, v+1)
	return true
}

// readPBA serves a 4- or 8-byte aligned read of the pending bit array.
func (m *msix) readPBA(off uint64, data []byte) bool {
	if !aligned(off, len(data)) || off >= uint64(8*len(m.pending)) {
		return false
	}
	for i := 0; i < len(data); i += 4 {
		o := off + uint64(i)
		w := m.pending[o/8].Load() >> (8 * (o % 8))
		binary.LittleEndian.PutUint32(data[i:], uint32(w))
	}
	return true
}

// snapshot returns the enable and function mask bits and each entry's
// mask and pending bits, for dumps.
func (m *msix) snapshot() *transport.MSIXSnapshot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := &transport.MSIXSnapshot{Enabled: m.enabled, FunctionMask: m.fmask,
		Vectors: make([]transport.VectorSnapshot, len(m.entries))}
	for v := range m.entries {
		s.Vectors[v] = transport.VectorSnapshot{Masked: m.entries[v].ctrl&msixCtrlMasked != 0, Pending: m.pendingBit(v)}
	}
	return s
}

// pendingBit reports vector v's pending bit (tests, dumps).
func (m *msix) pendingBit(v int) bool {
	return m.pending[v/64].Load()&(1<<(v%64)) != 0
}

// aligned reports whether an access of n bytes at off is a 4- or 8-byte
// naturally aligned access, as MSI-X structures require.
func aligned(off uint64, n int) bool {
	return (n == 4 || n == 8) && off%uint64(n) == 0
}
