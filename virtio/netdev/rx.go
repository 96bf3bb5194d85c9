package netdev

// The receive engine: backend -> guest.

import (
	"encoding/binary"
	"errors"
	"os"

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
// exactly the buffers it completed.
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
	r.parker, _ = env.be.(ReadvParker)
	if r.idleFn == nil {
		r.idleFn = r.idle
	}
}

// release drops every reference to guest memory and the queue.
func (r *rx) release() {
	r.win.release()
	r.q = nil
	r.engineEnv = engineEnv{}
	r.parker = nil
}

// Next delivers frames from the backend while the held buffers can take
// the largest one; it asks the engine to pop when they cannot.
func (r *rx) Next() virtio.Result {
	for {
		if r.engines.Stopping() {
			return virtio.Result{Do: virtio.Stop}
		}
		if wait := r.lim.Ready(); wait > 0 {
			return virtio.Result{Do: virtio.Throttle, Wait: wait}
		}
		if !r.enough() {
			return virtio.Result{} // pop
		}
		iov, space := r.win.iovecs()
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
		if r.deliver(n) {
			r.eng.Completed(1)
		}
	}
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
	n, parked, err := r.parker.ReadvOrPark(iov, r.idleFn)
	if parked && (err == nil || os.IsTimeout(err)) {
		return 0, errParked
	}
	return n, err
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
	return true
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
