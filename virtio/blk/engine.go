package blk

// The request engine: one goroutine per activation pops request chains,
// executes them against the image and completes them.

import (
	"encoding/binary"
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Request types and status values (virtio 1.2 §5.2.6).
const (
	TypeIn          = 0
	TypeOut         = 1
	TypeFlush       = 4
	TypeGetID       = 8
	TypeGetLifetime = 10
	TypeDiscard     = 11
	TypeWriteZeroes = 13
	TypeSecureErase = 14

	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

// HeaderLen is the size of struct virtio_blk_req's header.
const HeaderLen = 16

const (
	// batch is how many requests are completed before they are
	// published (and maybe signalled); the engine also publishes when the
	// ring runs empty and before it sleeps for the rate limiter.
	batch = 32
	// iovMax is the most iovecs one preadv/pwritev takes (IOV_MAX).
	iovMax = 1024
	// chunkMax is the most bytes one preadv/pwritev moves. A request's
	// data can be 4 GiB (1022 descriptors of 4 MiB naming the same guest
	// memory): moved in one go it held the engine, and so Reset and
	// ReplaceImage, for over 10 s. Between chunks the transfer gives up
	// once the engines stop or ReplaceImage waits. Requests Linux sends
	// by default (up to 1.25 MiB) fit in one.
	chunkMax = 4 << 20
)

var (
	// errShort reports a host transfer that ended early (the image shrank).
	errShort = errors.New("virtio-blk: short transfer")
	// errYielded reports a transfer abandoned because the device is
	// being reset or closed, or its image replaced.
	errYielded = errors.New("virtio-blk: transfer abandoned for a reset or a new image")
)

// engine is the request queue's work: the virtio.Engine pops request
// chains and handle executes them. Its buffers (the iovec array) are
// allocated once and reused by every request and activation.
type engine struct {
	virtio.ChainsOnly // requests come only with chains; the image is never "not ready"
	d                 *Device
	eng               virtio.Engine

	hdr    [HeaderLen]byte
	status [1]byte
	iov    []unix.Iovec

	// syncData syncs the image's data (fdatasync; tests count or fail
	// it). The rest is guarded by Device.io.
	syncData func(fd int) error
	// failed: a sync of the image failed, so the host may have dropped
	// written pages it then marks clean, and a later sync would report
	// success for data that is lost: every later flush (and
	// write-through write) answers IOERR instead, until ReplaceImage
	// installs another file.
	failed bool
	// owed: writes completed OK may be lost to a failed sync and no
	// request was answered IOERR since: the next sync answers IOERR,
	// even on an image ReplaceImage installed since then (the guest
	// hears of the loss once, whatever the image).
	owed bool
}

var _ virtio.Handler = (*engine)(nil)

func (e *engine) alloc(d *Device) {
	e.d = d
	e.iov = make([]unix.Iovec, 0, iovMax)
	e.syncData = fdatasync
}

// Chain executes one request; a request the rate limiter refuses is
// given back and popped again after the wait.
func (e *engine) Chain(c *queue.Chain) virtio.Result {
	e.d.io.Lock()
	defer e.d.io.Unlock() // deferred: a fault the engine contains must not keep it
	used, wait := e.handle(c)
	if wait > 0 {
		return virtio.Result{Do: virtio.Throttle, Wait: wait}
	}
	return virtio.Result{Do: virtio.Done, Used: used}
}

// Event counts the engine's events (as New maps them).
func (e *engine) Event(ev virtio.Event) { e.d.stats.Event(ev) }

// handle executes one well-formed chain and returns its used length, or
// the time to wait if the rate limiter refused it (nothing done then).
func (e *engine) handle(c *queue.Chain) (used uint32, wait time.Duration) {
	if c.WriteLen == 0 {
		e.d.stats.Inc(cBadChains) // nowhere to put a status
		return 0, 0
	}
	dataIn := uint64(c.WriteLen) - 1 // writable bytes before the status
	if c.ReadAt(e.hdr[:], 0) < HeaderLen {
		return e.finish(c, StatusIOErr, 0)
	}
	typ := binary.LittleEndian.Uint32(e.hdr[0:])
	sector := binary.LittleEndian.Uint64(e.hdr[8:])
	switch typ {
	case TypeIn, TypeOut:
		n := dataIn
		if typ == TypeOut {
			n = uint64(c.ReadLen) - HeaderLen
		}
		if !e.inRange(sector, n) || (typ == TypeOut && e.d.readOnly) {
			return e.finish(c, StatusIOErr, 0)
		}
		if ok, w := e.d.limiter.Consume(n); !ok {
			return 0, w
		}
		if typ == TypeIn {
			return e.read(c, sector, n)
		}
		return e.write(c, sector, n)
	case TypeFlush:
		if ok, w := e.d.limiter.Consume(0); !ok {
			return 0, w
		}
		if e.d.flush && !e.d.readOnly && !e.sync() {
			return e.finish(c, StatusIOErr, 0)
		}
		e.d.stats.Inc(cFlushes)
		return e.finish(c, StatusOK, 0)
	case TypeGetID:
		if ok, w := e.d.limiter.Consume(0); !ok {
			return 0, w
		}
		n := min(dataIn, IDBytes)
		c.WriteAt(e.d.id[:n], 0)
		e.d.stats.Inc(cIDs)
		return e.finish(c, StatusOK, uint32(n))
	}
	return e.finish(c, StatusUnsupp, 0)
}

// inRange reports whether n bytes at sector are whole sectors inside the
// capacity.
func (e *engine) inRange(sector, n uint64) bool {
	return n%SectorSize == 0 && sector <= e.d.capacity && n/SectorSize <= e.d.capacity-sector
}

func (e *engine) read(c *queue.Chain, sector, n uint64) (uint32, time.Duration) {
	if err := e.transfer(false, c.Writable, 0, n, sector*SectorSize); err != nil {
		return e.transferFailed(c, err)
	}
	e.d.stats.Inc(cReadOps)
	e.d.stats.Add(cReadBytes, n)
	return e.finish(c, StatusOK, uint32(n))
}

func (e *engine) write(c *queue.Chain, sector, n uint64) (uint32, time.Duration) {
	if err := e.transfer(true, c.Readable, HeaderLen, n, sector*SectorSize); err != nil {
		return e.transferFailed(c, err)
	}
	e.owed = e.owed || e.failed // in the host's cache, which may drop it
	// FLUSH offered but not negotiated: the driver was told of no write
	// cache, so a completed write must be stable (virtio 1.2 §5.2.6.2).
	if e.d.flush && !virtio.Has(e.d.Negotiated(), FeatureFlush) && !e.sync() {
		return e.finish(c, StatusIOErr, 0)
	}
	e.d.stats.Inc(cWriteOps)
	e.d.stats.Add(cWriteBytes, n)
	return e.finish(c, StatusOK, 0)
}

// transferFailed answers IOERR for a transfer that failed: a host error,
// a reset that came first (the driver forgets the request then) or a new
// image (the request is not all on the image the guest now has).
func (e *engine) transferFailed(c *queue.Chain, err error) (uint32, time.Duration) {
	if err != errYielded {
		e.d.stats.Inc(cHostErrors)
	}
	return e.finish(c, StatusIOErr, 0)
}

// finish writes status into the chain's last writable byte and returns
// the used length: the data bytes written plus the status byte.
func (e *engine) finish(c *queue.Chain, status byte, written uint32) (uint32, time.Duration) {
	switch status {
	case StatusIOErr:
		e.d.stats.Inc(cIOErrors)
		written = 0
	case StatusUnsupp:
		e.d.stats.Inc(cUnsupported)
	}
	e.status[0] = status
	c.WriteAt(e.status[:], uint64(c.WriteLen)-1)
	return written + 1, 0
}

// transfer moves n bytes between the image at byte offset pos and the
// chain segments segs starting skip bytes into them: pwritev (write) or
// preadv, at most iovMax segments and chunkMax bytes per call, resumed
// after short transfers. Once the engines stop (a reset, Close) it
// stops between two calls with errYielded, and so does it once
// ReplaceImage waits for it. It allocates nothing.
func (e *engine) transfer(write bool, segs [][]byte, skip, n uint64, pos uint64) error {
	for done := uint64(0); done < n; {
		if done > 0 && (e.d.engines.Stopping() || e.d.replacing.Load()) {
			return errYielded
		}
		e.iov = queue.AppendIovecs(e.iov[:0], segs, skip+done, min(n-done, chunkMax), iovMax)
		if len(e.iov) == 0 {
			return errShort // the chain is shorter than its lengths say: cannot happen
		}
		var got int
		var errno unix.Errno
		if write {
			got, errno = pwritev(e.d.fd, e.iov, int64(pos+done))
		} else {
			got, errno = preadv(e.d.fd, e.iov, int64(pos+done))
		}
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return errno
		case got == 0:
			return errShort
		}
		done += uint64(got)
	}
	return nil
}

// sync makes the image's written data stable and reports whether it
// did. After one failed sync it reports false without trying: the host
// may have dropped the pages that failed, and a new fdatasync would not
// say so (counted as a host error each time). A loss owed to the guest
// (owed) is reported first, once.
func (e *engine) sync() bool {
	switch {
	case e.owed:
		e.owed = false
	case e.failed:
	case e.syncData(e.d.fd) == nil:
		return true
	default:
		e.failed = true
	}
	e.d.stats.Inc(cHostErrors)
	return false
}

// retire syncs the image before ReplaceImage swaps it (under Device.io),
// for a Writeback drive, so every write completed on it is stable; it
// returns the sync's error, after which the image is failed and the loss
// owed (its writes were answered OK). An image already failed is not
// synced again: its loss was reported or is owed.
func (e *engine) retire() error {
	if !e.d.flush || e.d.readOnly || e.failed {
		return nil
	}
	if err := e.syncData(e.d.fd); err != nil {
		e.failed, e.owed = true, true
		e.d.stats.Inc(cHostErrors)
		return err
	}
	return nil
}

// fdatasync syncs the image's data, retrying EINTR.
func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			return err
		}
	}
}
