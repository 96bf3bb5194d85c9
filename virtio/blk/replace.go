package blk

// Swapping a running drive's image (Firecracker's PATCH /drives with a
// new path_on_host).

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/hostfile"
)

// ReplaceImage makes the regular file at path the drive's image while the
// device may be running. It opens path as Open would (read-only for a
// read-only drive) and checks it before anything changes: its size must
// be the drive's capacity (the guest was told that capacity; a new size
// is not supported yet). The swap itself is one dup3 onto the image's
// file descriptor: the kernel replaces the file atomically, so a request
// in progress finishes its current read or write on the old file and
// every later one uses the new file; no request ever sees a closed or
// reused descriptor. The old file is closed once no request uses it
// (and, for a Writeback drive, synced first, so writes the guest made
// before the swap reach it). On error the drive keeps its image.
func (d *Device) ReplaceImage(path string) error {
	flag := unix.O_RDWR
	if d.readOnly {
		flag = unix.O_RDONLY
	}
	f, err := hostfile.OpenInput(path, flag, hostfile.Regular)
	if err != nil {
		return fmt.Errorf("virtio-blk: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("virtio-blk: %w", err)
	}
	if size := uint64(st.Size()); size != d.capacity*SectorSize {
		return fmt.Errorf("virtio-blk: %s is %d bytes, the drive's image %d: a new image of another size is not supported by flint yet",
			path, size, d.capacity*SectorSize)
	}
	d.engines.Lock()
	defer d.engines.Unlock()
	if d.engines.Closed() {
		return errors.New("virtio-blk: device closed")
	}
	// Keep the old file open until the swap is done, to sync it.
	old, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("virtio-blk: keeping the old image: %w", err)
	}
	defer unix.Close(old)
	if err := unix.Dup3(int(f.Fd()), d.fd, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("virtio-blk: installing %s: %w", path, err)
	}
	d.eng.syncFailed.Store(false) // the failed sync was the old file's
	if d.flush && !d.readOnly {
		if err := fdatasync(old); err != nil {
			return fmt.Errorf("virtio-blk: syncing the old image: %w", err)
		}
	}
	return nil
}
