// Package kvm provides typed handles over the Linux KVM API for x86_64:
// System (/dev/kvm), VM and VCPU, the ioctl numbers (one file, checked by a
// test against the _IO/_IOR/_IOW encoding), ABI structs mirroring the
// kernel's, decoding of exits from the shared kvm_run page, and irqfd /
// ioeventfd / GSI routing. It uses golang.org/x/sys/unix only (no cgo), and
// keeps all unsafe code in ioctl_unsafe.go.
//
// kvm imports nothing from this module; devices, virtio and boot never
// import kvm (vmm translates between them).
package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// APIVersion is the only KVM API version there is.
const APIVersion = 12

// System is an open /dev/kvm.
type System struct {
	fd       int
	mmapSize int
}

// Open opens path (normally /dev/kvm) and checks the API version.
func Open(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := ioctl(fd, kvmGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("KVM API version %d, want %d", v, APIVersion)
	}
	n, err := ioctl(fd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.mmapSize = int(n)
	return s, nil
}

// Close closes /dev/kvm. VMs created from it stay valid.
func (s *System) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// CheckExtension returns KVM_CHECK_EXTENSION's answer for capability c
// (0 when unsupported).
func (s *System) CheckExtension(c int) int {
	r, err := ioctl(s.fd, kvmCheckExtension, uintptr(c))
	if err != nil {
		return 0
	}
	return int(r)
}

// maxCPUIDEntries bounds KVM_GET_SUPPORTED_CPUID's answer; the kernel
// answers E2BIG when the buffer is too small and we grow it up to this.
const maxCPUIDEntries = 1024

// SupportedCPUID returns the CPUID leaves KVM can expose to a guest.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for n := 256; n <= maxCPUIDEntries; n *= 2 { // hosts report 70-100 leaves: one call
		entries := make([]CPUIDEntry, n)
		hdr, _, err := varIoctl(s.fd, kvmGetSupportedCPUID, cpuid2Header{NEnt: uint32(n)}, entries)
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return entries[:hdr.NEnt], nil
	}
	return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: more than %d entries", maxCPUIDEntries)
}

// CreateVM creates an x86 VM.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	unix.CloseOnExec(int(fd))
	return &VM{fd: int(fd), mmapSize: s.mmapSize}, nil
}
