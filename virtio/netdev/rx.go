package netdev

// The receive engine: backend -> guest.

import (
	"encoding/binary"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"

	"github.com/flintvm/flint/internal/vnethdr"
)

const (
	// rxBatch is how many packets the device delivers before it
	// publishes them (and maybe interrupts); it also publishes whenever
	// the backend runs dry or the guest runs out of buffers.
	rxBatch = 64
	// maxIovecs is the most buffers one readv takes (Linux's IOV_MAX).
	maxIovecs = 1024
	ethHdrLen = 14
	vlanLen   = 4
	// maxGSOFrame is the largest frame a backend with GSO offloads hands
	// over (a 64 KiB IP packet plus Ethernet and VLAN headers, as Linux
	// sizes its big receive buffers): with the header, 65562 bytes.
	maxGSOFrame = 65550
)

// rx moves frames from the backend into the guest's receive buffers.
// It holds popped buffers (win) until they can take the largest frame
// the driver may be sent, readv's one frame straight into them, and
// pushes the buffers the frame used; buffers the frame did not use stay
// held for the next frame, across flushes. They are given back to the
// ring (queue.Undo) before the engine waits for the backend and when it
// stops, so that an idle or reset device's next-avail index counts
// exactly the buffers it completed. A mergeable device that holds less
// than the largest frame while the ring is empty reads anyway, with a
// bounce buffer behind the held ones (see starved).
type rx struct {
	engineEnv
	eng virtio.Engine
	q   *queue.Queue

	mergeable bool     // MRG_RXBUF: a frame may span buffers
	need      uint64   // bytes the largest frame needs, header included
	off       offloads // what the GUEST_* features let a header ask
	maxPlain  uint64   // with FeatureMTU: largest non-GSO frame (header included)

	win      window
	iovSpace uint64 // writable bytes of the chains the last readv got
	hb       [2]byte
	dl       deltas

	lim *ratelimit.Limiter // nil: unlimited (Options.RxLimiter)

	parker ReadvParker // the backend, when it reads or parks in one call
	idleFn func()      // r.idle, bound once

	// The busy poll of the backend (virtio.Engine.Spin): pollFn is
	// r.tryRead, bound once, reading into pollIov; a frame it read is
	// pollN bytes, or pollErr.
	pollFn  func() bool
	pollIov [][]byte
	pollN   int
	pollErr error

	// A frame read while starved that did not fit the held chains: its
	// first spillSpace bytes fill the k0 oldest, the other restLen wait
	// in bounce (r.need bytes, mergeable only) for more chains.
	bounce     []byte
	frameLen   int
	restLen    int
	spillSpace uint64
	k0         int
}

var _ virtio.Handler = (*rx)(nil)

// init prepares r for an activation on q with acked (the device's
// Engines then binds r.eng).
func (r *rx) init(env engineEnv, q *queue.Queue, acked uint64, mtu uint16) {
	r.engineEnv = env
	r.q = q
	r.mergeable = virtio.Has(acked, FeatureMrgRxbuf)
	r.need = HdrLen + ethHdrLen + vlanLen + uint64(mtu)
	if acked&guestGSO != 0 {
		r.need = HdrLen + maxGSOFrame
	}
	r.maxPlain = ^uint64(0)
	if virtio.Has(acked, FeatureMTU) {
		// The device must not pass larger non-GSO packets (§5.1.6.3.1);
		// a VLAN tag is allowed on top of the Ethernet header.
		r.maxPlain = HdrLen + ethHdrLen + vlanLen + uint64(mtu)
	}
	r.off = newOffloads(acked, guestOffloads)
	r.win.reset()
	r.restLen = 0
	if r.mergeable && uint64(cap(r.bounce)) < r.need {
		r.bounce = make([]byte, r.need)
	}
	r.bounce = r.bounce[:min(uint64(cap(r.bounce)), r.need)]
	r.parker, _ = env.be.(ReadvParker)
	if r.idleFn == nil {
		r.idleFn = r.idle
		r.pollFn = r.tryRead
	}
}

// release drops every reference to guest memory and the queue.
func (r *rx) release() {
	r.win.release()
	r.q = nil
	r.engineEnv = engineEnv{}
	r.parker = nil
	r.pollIov = nil
}

// Next delivers frames from the backend while the held buffers can take
// the largest one; it asks the engine to pop when they cannot.
func (r *rx) Next() virtio.Result {
	for {
		if r.engines.Stopping() {
			return virtio.Result{Do: virtio.Stop}
		}
		if r.restLen > 0 {
			if !r.finish() {
				return virtio.Result{} // pop: the spilled frame needs more buffers
			}
			continue
		}
		if wait := r.lim.Ready(); wait > 0 {
			return virtio.Result{Do: virtio.Throttle, Wait: wait}
		}
		starved := false
		if !r.enough() {
			if starved = r.starved(); !starved {
				return virtio.Result{} // pop
			}
		}
		var iov [][]byte
		var space uint64
		if starved {
			iov, space = r.win.iovecsTail(r.bounce)
		} else {
			iov, space = r.win.iovecs()
		}
		r.iovSpace = space
		n, err := r.read(iov)
		switch {
		case err == nil:
		case err == errParked:
			r.eng.BackendResumed()
			continue // the held buffers were given back: pop again
		case err == unix.EAGAIN:
			return virtio.Result{Do: virtio.WaitBackend, Activity: virtio.ActivityWaitReadable}
		case err == unix.EINTR:
			continue
		case r.engines.Stopping():
			return virtio.Result{Do: virtio.Stop}
		default:
			return virtio.Result{Do: virtio.Fail}
		}
		if starved && uint64(n) > space {
			r.spill(n)
			continue
		}
		if r.deliver(n) {
			r.eng.Completed(1)
		}
	}
}

// starved reports whether the held buffers, too few for the largest
// frame, may be all the device gets until it delivers something:
// mergeable buffers that take at least half the ring held, and none left
// in it. Waiting for more would wait for good on a driver that posts
// buffers only after it received into some: Linux refills when more
// than min(64, size)/2 are used, so on a ring of 64 or fewer it can
// leave the device below 64 KiB of buffers, with frames queued, forever.
// A starved device reads the next frame into what it holds, with the
// bounce buffer behind: a frame that fits is delivered, one that does
// not waits in the bounce buffer for the buffers it needs (spill,
// finish), as QEMU waits holding the frame it read. Below half the ring
// the device waits for the driver's kick as before: a driver keeps more
// than that posted (Linux at least size - min(64, size)/2), and a read
// now would copy a large frame twice, through the bounce buffer, each
// time a guest slower than its backend lets the ring run dry.
func (r *rx) starved() bool {
	if !r.mergeable || r.win.count() == 0 || len(r.bounce) == 0 || 2*r.win.descs < int(r.q.Size()) {
		return false
	}
	n, err := r.q.Available()
	return err == nil && n == 0
}

// spill keeps a frame of n bytes read while starved that ran past the
// held chains into the bounce buffer, if the device would deliver it,
// until finish can complete it.
func (r *rx) spill(n int) {
	if uint64(n) > r.need { // also a frame readv cut at the bounce buffer's end
		r.dl[cRxDropOversize]++
		return
	}
	_, first := r.win.oldest()
	switch r.checkHeader(first, uint64(n)) {
	case hdrBad:
		r.dl[cRxDropHeader]++
		return
	case hdrTooBig:
		r.dl[cRxDropOversize]++
		return
	}
	r.frameLen, r.restLen, r.spillSpace, r.k0 = n, n-int(r.iovSpace), r.iovSpace, r.win.count()
}

// finish delivers the spilled frame once the chains held after the ones
// it filled can take its rest, copied out of the bounce buffer; false
// means it needs more.
func (r *rx) finish() bool {
	if r.win.space-r.spillSpace < uint64(r.restLen) {
		return false
	}
	queue.CopySegs(r.bounce[:r.restLen], r.win.segsFrom(r.k0), 0, true)
	r.restLen = 0
	r.complete(r.frameLen)
	r.eng.Completed(1)
	return true
}

// errParked: read waited for the backend (not an error).
var errParked = errors.New("netdev: parked for the backend")

// read reads one frame into iov without blocking (TryReadv: unix.EAGAIN
// when none is queued, and the engine waits with Wait), or, when the
// backend reads or parks in one call, waits for one itself: idle
// publishes and gives the held buffers back before it parks, and after
// the wake read returns errParked (the caller pops buffers again and
// reads), or the wait's error: a deadline (Reset's; not a failure) is
// errParked too.
func (r *rx) read(iov [][]byte) (int, error) {
	if r.parker == nil {
		return r.be.TryReadv(iov)
	}
	if r.eng.Polling() {
		return r.pollRead(iov)
	}
	return r.readOrPark(iov)
}

func (r *rx) readOrPark(iov [][]byte) (int, error) {
	n, parked, err := r.parker.ReadvOrPark(iov, r.idleFn)
	if parked && (err == nil || os.IsTimeout(err)) {
		return 0, errParked
	}
	return n, err
}

// pollRead is read with the engine's busy-poll window: when no frame is
// queued it publishes what is complete (the driver gets it now, not
// after the poll) and polls the backend; only when the window passes
// does it park, timing the park for the window's next length.
func (r *rx) pollRead(iov [][]byte) (int, error) {
	r.pollIov = iov
	got := r.tryRead()
	if !got {
		r.eng.Flush()
		got = r.eng.Spin(r.pollFn)
	}
	r.pollIov = nil
	if got {
		return r.pollN, r.pollErr
	}
	start := time.Now()
	n, err := r.readOrPark(iov)
	if err == errParked {
		r.eng.Parked(time.Since(start))
	}
	return n, err
}

// tryRead is the busy poll's check: one non-blocking read into pollIov;
// false when no frame is queued.
func (r *rx) tryRead() bool {
	n, err := r.be.TryReadv(r.pollIov)
	if err == unix.EAGAIN {
		return false
	}
	r.pollN, r.pollErr = n, err
	return true
}

// idle is ReadvOrPark's hook: the engine publishes (and maybe signals
// the driver) and the handler gives its held buffers back
// (EventBackendWait), all before the backend parks.
func (r *rx) idle() { r.eng.BackendIdle(virtio.ActivityWaitReadable) }

// Chain holds c for the next frames (a snapshot of it: see heldChain),
// or returns it unused if it cannot take a header.
func (r *rx) Chain(c *queue.Chain) virtio.Result {
	if c.WriteLen < HdrLen || len(c.Writable) >= maxIovecs {
		// No room for a header (or more buffers than one readv
		// takes): the driver broke the rules; return it unused.
		r.dl[cRxBadChains]++
		r.win.noteCompleted()
		return virtio.Result{Do: virtio.Done}
	}
	r.win.hold(c)
	return virtio.Result{Do: virtio.Held}
}

// Wait waits for a frame; false means the backend failed.
func (r *rx) Wait(virtio.Activity) bool {
	err := r.be.WaitReadable()
	return err == nil || os.IsTimeout(err)
}

func (r *rx) Event(e virtio.Event) {
	switch e {
	case virtio.EventMalformed:
		// Completed by the queue: chains popped before it can no longer
		// be given back.
		r.dl[cRxMalformed]++
		r.win.noteCompleted()
	case virtio.EventInterrupt:
		r.dl[cRxInterrupts]++
	case virtio.EventPublished:
		r.dl.publish(r.stats)
	case virtio.EventKickWait:
		r.dl[cRxWaits]++
	case virtio.EventThrottled:
		r.dl[cRxThrottled]++
	case virtio.EventBroken:
		r.dl[cBroken]++
	case virtio.EventBackendFailed:
		r.dl[cRxBackendErrors]++
		r.win.giveBack(r.q)
	case virtio.EventBackendWait, virtio.EventStop:
		r.restLen = 0 // a spilled frame is lost with its chains (only at the reset: it never waits for the backend)
		r.win.giveBack(r.q)
	}
}

// enough reports whether the held buffers can take the largest frame:
// one chain in small and big mode; in mergeable mode chains worth
// r.need bytes, or fewer if they already fill the ring or the iovec
// limit (a ring too small for a maximum frame must not stall forever).
func (r *rx) enough() bool {
	w := &r.win
	if !r.mergeable {
		return w.count() > 0
	}
	return w.space >= r.need || w.descs >= int(r.q.Size()) || len(w.segv)-w.s0 >= maxIovecs-1
}

// deliver completes a frame of n bytes that readv put into the iovecs,
// or drops it (false). A dropped frame leaves its buffers held (the
// guest never sees them), so the next frame overwrites them.
func (r *rx) deliver(n int) bool {
	switch {
	case uint64(n) > r.iovSpace:
		r.dl[cRxDropOversize]++
		return false
	case n < HdrLen+ethHdrLen:
		r.dl[cRxDropShort]++
		return false
	}
	_, first := r.win.oldest()
	switch r.checkHeader(first, uint64(n)) {
	case hdrBad:
		r.dl[cRxDropHeader]++
		return false
	case hdrTooBig:
		r.dl[cRxDropOversize]++
		return false
	}
	r.complete(n)
	return true
}

// complete pushes the chains a checked frame of n bytes filled, oldest
// first, writes their number into its header and counts the frame.
func (r *rx) complete(n int) {
	_, first := r.win.oldest()
	k, left := 0, uint32(n)
	for left > 0 {
		h := r.win.at(k)
		take := min(left, h.wlen)
		r.eng.Push(h.head, take)
		left -= take
		k++
	}
	binary.LittleEndian.PutUint16(r.hb[:], uint16(k))
	queue.CopySegs(r.hb[:], first, vnethdr.NumBuffersOffset, true)
	r.win.take(k)
	r.dl[cRxPackets]++
	r.dl[cRxBytes] += uint64(n - HdrLen)
	r.dl[cRxBuffers] += uint64(k)
	r.lim.Charge(uint64(n - HdrLen))
}

// checkHeader checks the header the backend wrote for a frame of n
// bytes against the negotiated features: it refuses offloads the driver
// cannot handle and non-GSO frames above the negotiated MTU, and clears
// flags it did not negotiate (the device must send flags 0 without
// GUEST_CSUM).
func (r *rx) checkHeader(segs [][]byte, n uint64) hdrVerdict {
	queue.CopySegs(r.hb[:], segs, 0, false)
	flags, gso := r.hb[0], r.hb[1]
	if !r.off.allows(flags, gso) {
		return hdrBad
	}
	if gso&^vnethdr.GSOECN == vnethdr.GSONone && n > r.maxPlain {
		return hdrTooBig
	}
	var allowed uint8
	if r.off.csum {
		allowed = vnethdr.FNeedsCsum | vnethdr.FDataValid
	}
	if flags&^allowed != 0 {
		r.hb[0] = flags & allowed
		queue.CopySegs(r.hb[:1], segs, 0, true)
	}
	return hdrOK
}

type hdrVerdict int

const (
	hdrOK     hdrVerdict = iota
	hdrBad               // an offload the driver did not negotiate
	hdrTooBig            // a non-GSO frame longer than the negotiated MTU
)
