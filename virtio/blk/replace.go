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
// is not supported yet). It then waits for the request in progress, if
// any (one of more than 4 MiB gives up at its next 4 MiB and is answered
// IOERR: it would not be all on the image the guest now has), and holds
// off the next ones while it syncs the old image (a Writeback drive, so
// every write the guest completed on it is stable before any request uses
// the new file) and swaps the file with one dup3 onto the image's
// descriptor, which closes the old file. On error nothing changed: the
// drive keeps its image, and when the old image's sync failed it stays
// failed (every later flush IOERR, as after a failed FLUSH). An image
// already failed is swapped without a sync (a new fdatasync would not
// report the lost pages); if the guest was not answered IOERR since its
// last write completed there, the first flush (or write-through write) on
// the new image is IOERR: the loss is reported once, whatever the image.
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
	d.replacing.Store(true) // a request of more than 4 MiB in progress ends IOERR
	d.io.Lock()
	d.replacing.Store(false)
	defer d.io.Unlock()
	if err := d.eng.retire(); err != nil {
		return fmt.Errorf("virtio-blk: syncing the image before replacing it (the drive keeps it): %w", err)
	}
	if err := unix.Dup3(int(f.Fd()), d.fd, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("virtio-blk: installing %s: %w", path, err)
	}
	d.eng.failed = false // the old file's; a loss still owed stays owed
	return nil
}
