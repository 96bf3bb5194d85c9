// Package vhostusertest plays a vhost-user frontend (the part QEMU or
// UML's virtio_uml play) for tests of vhostuser backends: guest memory in
// a memfd shared with the backend through SET_MEM_TABLE, a client that
// sends requests with their fds and reads replies, and a minimal
// driver-side split ring laid out in that memory, kicked through an
// eventfd and notified through a pipe or eventfd.
//
// It exists because virtio/queue/queuetest lays its rings out in a Go
// slice it allocates itself, which cannot be shared with another
// mapping. It is for tests only and imports mem, virtio/queue and
// x/sys/unix.
package vhostusertest

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/mem"
)

// Memory is the frontend's guest RAM: one memfd, mapped shared here and
// passed to the backend. Guest-physical address GuestBase is frontend
// user address UserBase (they differ on purpose unless the test asks
// otherwise, so a backend that confuses them fails).
type Memory struct {
	// FD is the memfd backing the RAM.
	FD int
	// Host is the frontend's shared mapping of the RAM.
	Host []byte
	// GuestBase and UserBase are the addresses of Host[0].
	GuestBase, UserBase uint64
	// M is the RAM as guest-physical memory.
	M *mem.Memory

	next uint64 // bump allocator, as an offset into Host
}

// NewMemory creates size bytes (a multiple of the page size) of shared
// RAM at guestBase, seen by the frontend at userBase.
func NewMemory(size, guestBase, userBase uint64) (*Memory, error) {
	fd, err := unix.MemfdCreate("vhostusertest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ftruncate: %w", err)
	}
	b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap: %w", err)
	}
	m, err := mem.FromRegions(mem.NewRegion(guestBase, b))
	if err != nil {
		unix.Munmap(b)
		unix.Close(fd)
		return nil, err
	}
	return &Memory{FD: fd, Host: b, GuestBase: guestBase, UserBase: userBase, M: m}, nil
}

// Close unmaps the RAM and closes the memfd.
func (m *Memory) Close() {
	if m.Host != nil {
		unix.Munmap(m.Host)
		m.Host = nil
	}
	if m.FD >= 0 {
		unix.Close(m.FD)
		m.FD = -1
	}
}

// Size is the RAM size.
func (m *Memory) Size() uint64 { return uint64(len(m.Host)) }

// User translates a guest-physical address to the frontend's user address.
func (m *Memory) User(gpa uint64) uint64 { return gpa - m.GuestBase + m.UserBase }

// Region is the whole RAM as one SET_MEM_TABLE region.
func (m *Memory) Region() Region {
	return Region{GuestAddr: m.GuestBase, Size: m.Size(), UserAddr: m.UserBase, FD: m.FD}
}

// Alloc reserves n bytes aligned to align (a power of two) and returns
// their guest address; it panics when the RAM is full (a test bug).
func (m *Memory) Alloc(n, align uint64) uint64 {
	off := (m.next + align - 1) &^ (align - 1)
	if off+n > m.Size() {
		panic(fmt.Sprintf("vhostusertest: out of guest memory (%d of %d bytes used, %d more asked)", m.next, m.Size(), n))
	}
	m.next = off + n
	return m.GuestBase + off
}

// Bytes returns the RAM at guest address gpa, n bytes; it panics outside.
func (m *Memory) Bytes(gpa, n uint64) []byte {
	off := gpa - m.GuestBase
	return m.Host[off : off+n : off+n]
}
