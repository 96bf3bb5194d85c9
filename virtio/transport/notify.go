package transport

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/eventfd"
)

// NotifyMatch describes the guest write that notifies one queue: a write
// of Len bytes to guest-physical address Addr and, when Datamatch is set,
// only with the value Data. It maps one-to-one onto a KVM ioeventfd
// (KVM_IOEVENTFD addr, len, datamatch).
//
//   - virtio-mmio: every queue shares QueueNotify, so Addr is the
//     window's base + 0x50, Len 4, Datamatch set and Data the queue index.
//   - virtio-pci: each queue has its own notify address (notify_off_multiplier
//     4), so Datamatch is clear; Len is 2, the width Linux writes.
type NotifyMatch struct {
	Addr      uint64 // guest-physical address of the notify register
	Len       uint32 // access width the driver uses
	Datamatch bool   // match only writes of Data
	Data      uint64 // the value to match (the queue index on MMIO)
}

// Notifier lets the VMM deliver notifications straight to a queue's kick
// eventfd, without a VM exit. The VMM backs it with KVM ioeventfds. It is
// optional: without it (tests, or when registration fails) the
// transport's register Write handler signals the same eventfd itself, so
// behaviour is identical, only slower.
//
// The transport creates each kick eventfd (non-blocking, close-on-exec)
// when the driver enables the queue, attaches it while the queue is
// enabled and its notify register is mapped, detaches it before closing
// it on reset, and re-attaches it when the register moves (a PCI BAR the
// guest reprograms). Attach and Detach are called from vCPU goroutines
// with transport locks held: they must not call back into the transport.
type Notifier interface {
	// Attach makes every guest write matching m signal kick. Get the
	// descriptor with ControlFD, never kick.Fd(), which would switch the
	// file to blocking mode and break the deadlines devices use to stop
	// their kick readers.
	Attach(m NotifyMatch, kick *os.File) error
	// Detach undoes an Attach with the same arguments.
	Detach(m NotifyMatch, kick *os.File) error
}

// ControlFD calls fn with f's file descriptor, which stays valid for the
// duration of the call. Unlike f.Fd it leaves the file in non-blocking
// mode, registered with the Go poller.
func ControlFD(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// kick is one queue's notification eventfd.
type kick struct {
	f  *os.File
	rc syscall.RawConn
}

func newKick(name string) (kick, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return kick{}, fmt.Errorf("eventfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return kick{}, err
	}
	return kick{f: f, rc: rc}, nil
}

// signal adds 1 to the eventfd's counter. It never blocks: a counter at
// its maximum (EAGAIN) already reads as "notified".
func (k kick) signal() error {
	var werr error
	if err := k.rc.Control(func(fd uintptr) { werr = eventfd.Signal(int(fd)) }); err != nil {
		return err
	}
	return werr
}
