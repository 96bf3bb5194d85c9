package blk

// The request engine: one goroutine per activation pops request chains,
// executes them against the image and completes them.

import (
	"encoding/binary"
	"errors"
	"os"
	"sync/atomic"
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
)

// errShort reports a host transfer that ended early (the image shrank).
var errShort = errors.New("virtio-blk: short transfer")

type pumpState int

const (
	pumpIdle      pumpState = iota // the ring is empty
	pumpThrottled                  // the limiter said wait
	pumpBroken                     // the driver broke the queue
	pumpStopped                    // Reset
)

// engine runs the request queue. Its buffers (the chain, the iovec array)
// are allocated once and reused by every request and activation.
type engine struct {
	d        *Device
	q        *queue.Queue
	kick     *os.File
	irq      virtio.Interrupt
	stopping *atomic.Bool
	stop     <-chan struct{}

	chain   queue.Chain
	hdr     [HeaderLen]byte
	status  [1]byte
	iov     []unix.Iovec
	kbuf    [64]byte
	timer   *time.Timer
	pending int           // completions not yet published
	wait    time.Duration // how long the limiter asked for

	activity virtio.EngineStatus // what run is doing, for dumps
}

func (e *engine) alloc() {
	e.iov = make([]unix.Iovec, 0, iovMax)
	e.timer = time.NewTimer(time.Hour)
	e.timer.Stop()
}

func (e *engine) init(d *Device, q virtio.Queue, irq virtio.Interrupt) {
	e.d, e.q, e.kick, e.irq = d, q.Ring, q.Kick, irq
	e.stopping, e.stop = &d.stopping, d.stop
	e.pending = 0
}

func (e *engine) release() {
	e.chain.Reset()
	e.q, e.kick, e.irq, e.stop = nil, nil, nil, nil
}

func (e *engine) run() {
	defer func() {
		e.flush()
		e.activity.Set(virtio.ActivityStopped, e.q)
	}()
	e.activity.Set(virtio.ActivityRunning, e.q)
	for {
		e.q.DisableNotifications()
		st := e.pump()
		e.flush()
		switch st {
		case pumpBroken:
			e.d.stats.inc(cBroken)
			e.activity.Set(virtio.ActivityBroken, e.q)
			e.irq.NeedsReset()
			<-e.stop
			return
		case pumpStopped:
			return
		case pumpThrottled:
			e.activity.Set(virtio.ActivityThrottled, e.q)
			if !e.sleep(e.wait) {
				return
			}
			e.activity.Set(virtio.ActivityRunning, e.q)
			continue
		}
		if e.q.EnableNotifications() {
			continue
		}
		e.activity.Set(virtio.ActivityWaitKick, e.q)
		if !e.waitKick() {
			return
		}
		e.activity.Set(virtio.ActivityRunning, e.q)
	}
}

// pump completes every request the driver made available, until the ring
// is empty, the limiter refuses one, or Reset.
func (e *engine) pump() pumpState {
	for {
		if e.stopping.Load() {
			return pumpStopped
		}
		ok, err := e.q.Pop(&e.chain)
		if err != nil {
			if errors.Is(err, queue.ErrMalformedChain) {
				e.d.stats.inc(cMalformed) // already completed by the queue
				e.pending++
				continue
			}
			return pumpBroken
		}
		if !ok {
			return pumpIdle
		}
		used, wait := e.handle(&e.chain)
		if wait > 0 {
			// Give the chain back: it is popped again after the wait (or
			// by whoever resumes the ring after a reset).
			e.q.Undo(1)
			e.d.stats.inc(cThrottled)
			e.wait = wait
			return pumpThrottled
		}
		e.q.Push(e.chain.Head, used)
		if e.pending++; e.pending >= batch {
			e.flush()
		}
	}
}

// flush publishes completed requests and notifies the driver if it wants.
func (e *engine) flush() {
	e.pending = 0
	if e.q.Publish() && e.q.NeedsInterrupt() {
		e.irq.Signal(0)
		e.d.stats.inc(cInterrupts)
	}
}

// sleep waits for the limiter's timer, or Reset; false means stop.
func (e *engine) sleep(d time.Duration) bool {
	e.timer.Reset(d)
	select {
	case <-e.timer.C:
		return !e.stopping.Load()
	case <-e.stop:
		e.timer.Stop()
		return false
	}
}

// waitKick blocks until the driver kicks the queue, or Reset.
func (e *engine) waitKick() bool {
	_, err := e.kick.Read(e.kbuf[:])
	if e.stopping.Load() {
		return false
	}
	if err != nil && !os.IsTimeout(err) {
		<-e.stop // the kick file is gone: only Reset can wake us
		return false
	}
	return true
}

// handle executes one well-formed chain and returns its used length, or
// the time to wait if the rate limiter refused it (nothing done then).
func (e *engine) handle(c *queue.Chain) (used uint32, wait time.Duration) {
	if c.WriteLen == 0 {
		e.d.stats.inc(cBadChains) // nowhere to put a status
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
		if e.d.flush && !e.d.readOnly {
			if err := fdatasync(e.d.fd); err != nil {
				e.d.stats.inc(cHostErrors)
				return e.finish(c, StatusIOErr, 0)
			}
		}
		e.d.stats.inc(cFlushes)
		return e.finish(c, StatusOK, 0)
	case TypeGetID:
		if ok, w := e.d.limiter.Consume(0); !ok {
			return 0, w
		}
		n := min(dataIn, IDBytes)
		c.WriteAt(e.d.id[:n], 0)
		e.d.stats.inc(cIDs)
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
		e.d.stats.inc(cHostErrors)
		return e.finish(c, StatusIOErr, 0)
	}
	e.d.stats.inc(cReadOps)
	e.d.stats.add(cReadBytes, n)
	return e.finish(c, StatusOK, uint32(n))
}

func (e *engine) write(c *queue.Chain, sector, n uint64) (uint32, time.Duration) {
	if err := e.transfer(true, c.Readable, HeaderLen, n, sector*SectorSize); err != nil {
		e.d.stats.inc(cHostErrors)
		return e.finish(c, StatusIOErr, 0)
	}
	e.d.stats.inc(cWriteOps)
	e.d.stats.add(cWriteBytes, n)
	return e.finish(c, StatusOK, 0)
}

// finish writes status into the chain's last writable byte and returns
// the used length: the data bytes written plus the status byte.
func (e *engine) finish(c *queue.Chain, status byte, written uint32) (uint32, time.Duration) {
	switch status {
	case StatusIOErr:
		e.d.stats.inc(cIOErrors)
		written = 0
	case StatusUnsupp:
		e.d.stats.inc(cUnsupported)
	}
	e.status[0] = status
	c.WriteAt(e.status[:], uint64(c.WriteLen)-1)
	return written + 1, 0
}

// transfer moves n bytes between the image at byte offset pos and the
// chain segments segs starting skip bytes into them: pwritev (write) or
// preadv, at most iovMax segments per call, resumed after short
// transfers. It allocates nothing.
func (e *engine) transfer(write bool, segs [][]byte, skip, n uint64, pos uint64) error {
	for done := uint64(0); done < n; {
		e.iov = appendIovecs(e.iov[:0], segs, skip+done, n-done)
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

// appendIovecs appends iovecs for bytes [off, off+n) of the concatenated
// segments, at most iovMax of them.
func appendIovecs(dst []unix.Iovec, segs [][]byte, off, n uint64) []unix.Iovec {
	for _, s := range segs {
		if n == 0 || len(dst) == iovMax {
			break
		}
		if off >= uint64(len(s)) {
			off -= uint64(len(s))
			continue
		}
		s = s[off:]
		off = 0
		if uint64(len(s)) > n {
			s = s[:n]
		}
		v := unix.Iovec{Base: &s[0]}
		v.SetLen(len(s))
		dst = append(dst, v)
		n -= uint64(len(s))
	}
	return dst
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
