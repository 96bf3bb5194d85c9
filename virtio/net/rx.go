package net

// The receive engine: backend -> guest.

import (
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
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

type rxUsed struct {
	head uint16
	n    uint32
}

// heldChain is what the device keeps of a popped receive chain: a
// snapshot taken when it was popped (its segments are in rx.segv). The
// queue's cached Chain is not kept: a hostile driver can make the same
// head available twice, and the re-walk would change it under the
// device's feet.
type heldChain struct {
	head uint16
	wlen uint32 // writable bytes
	nseg int32  // writable segments
	cost int32  // ring descriptors it occupies (estimate, see descCost)
}

// rx moves frames from the backend into the guest's receive buffers. It
// pops buffers (held) until they can take the largest frame the driver
// may be sent, readv's one frame straight into them, and completes the
// buffers the frame used (pending, pushed at the end of a batch). Held
// buffers the frame did not use stay held for the next frame. They are
// given back to the ring with Undo (which must precede any Push) before
// the goroutine waits for the backend and when it exits, so that after
// Reset the queue's next-avail index counts exactly the buffers
// completed.
type rx struct {
	engineEnv
	eng virtio.Engine
	q   *queue.Queue

	mergeable bool   // MRG_RXBUF: a frame may span buffers
	need      uint64 // bytes the largest frame needs, header included
	csum      bool   // GUEST_CSUM: NEEDS_CSUM and DATA_VALID may pass
	ecn       bool   // GUEST_ECN
	gsoTypes  uint8  // bit t set: gso_type t may pass
	maxPlain  uint64 // with FeatureMTU: largest non-GSO frame (header included)

	// held[h0:] are the popped, unused chains, oldest first, and
	// segv[s0:] their writable segments in the same order: the iovec
	// array for readv is a window on segv, kept up to date as chains are
	// popped and consumed rather than rebuilt per frame. Both windows
	// are compacted when they empty or have moved far enough.
	held    []heldChain
	h0      int
	segv    [][]byte
	s0      int
	fresh   int      // newest held chains Undo can give back
	space   uint64   // writable bytes in held
	descs   int      // estimate of ring descriptors held
	pending []rxUsed // used buffers to push at the next flush

	cut      [][]byte // iovecs when segv[s0:] exceeds maxIovecs
	iovSpace uint64   // writable bytes of the chains readv gets
	tail     [64]byte // readv overflow: a frame reaching it did not fit
	hb       [2]byte
	dl       deltas

	lim *ratelimit.Limiter // nil: unlimited (Options.RxLimiter)
}

var _ virtio.Handler = (*rx)(nil)

func (r *rx) init(env engineEnv, cfg virtio.EngineConfig, acked uint64, mtu uint16) {
	r.engineEnv = env
	r.q = cfg.Queue.Ring
	cfg.Handler, cfg.Index, cfg.Batch = r, RxQueue, rxBatch
	r.eng.Bind(cfg)
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
	r.csum = virtio.Has(acked, FeatureGuestCsum)
	r.ecn = virtio.Has(acked, FeatureGuestECN)
	r.gsoTypes = 1 << gsoNone
	for _, g := range []struct {
		f virtio.Feature
		t uint8
	}{{FeatureGuestTSO4, gsoTCPv4}, {FeatureGuestTSO6, gsoTCPv6}, {FeatureGuestUFO, gsoUDP}} {
		if virtio.Has(acked, g.f) {
			r.gsoTypes |= 1 << g.t
		}
	}
	r.held, r.segv, r.pending = r.held[:0], r.segv[:0], r.pending[:0]
	r.h0, r.s0, r.fresh, r.space, r.descs = 0, 0, 0, 0, 0
}

// release drops every reference to guest memory and the queue.
func (r *rx) release() {
	clear(r.segv[:cap(r.segv)])
	clear(r.cut[:cap(r.cut)])
	r.held, r.segv, r.cut = r.held[:0], r.segv[:0], r.cut[:0]
	r.h0, r.s0 = 0, 0
	r.pending = r.pending[:0]
	r.q = nil
	r.eng.Release()
	r.engineEnv = engineEnv{}
}

// Next delivers frames from the backend while the held buffers can take
// the largest one; it asks the engine to pop when they cannot.
func (r *rx) Next() virtio.Result {
	for {
		if r.stopping.Load() {
			return virtio.Result{Do: virtio.Stop}
		}
		if wait := r.lim.Ready(); wait > 0 {
			return virtio.Result{Do: virtio.Throttle, Wait: wait}
		}
		if !r.enough() {
			return virtio.Result{} // pop
		}
		n, err := r.be.TryReadv(r.iovecs())
		switch {
		case err == nil:
		case err == unix.EAGAIN:
			return virtio.Result{Do: virtio.WaitBackend, Activity: virtio.ActivityWaitReadable}
		case err == unix.EINTR:
			continue
		case r.stopping.Load():
			return virtio.Result{Do: virtio.Stop}
		default:
			return virtio.Result{Do: virtio.Fail}
		}
		if r.deliver(n) {
			r.eng.Completed(1)
		}
	}
}

// Chain holds c for the next frames (a snapshot of it: see heldChain),
// or returns it unused if it cannot take a header.
func (r *rx) Chain(c *queue.Chain) virtio.Result {
	if c.WriteLen < HdrLen || len(c.Writable) >= maxIovecs {
		// No room for a header (or more buffers than one readv
		// takes): the driver broke the rules; return it unused.
		r.dl[cRxBadChains]++
		r.fresh = 0
		return virtio.Result{Do: virtio.Done}
	}
	h := heldChain{head: c.Head, wlen: c.WriteLen, nseg: int32(len(c.Writable)), cost: int32(descCost(c))}
	r.held = append(r.held, h)
	r.segv = append(r.segv, c.Writable...)
	r.fresh++
	r.space += uint64(h.wlen)
	r.descs += int(h.cost)
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
		r.fresh = 0
	case virtio.EventFlush:
		r.flush()
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
		r.giveBack()
	case virtio.EventBackendWait, virtio.EventStop:
		r.giveBack()
	}
}

func (r *rx) enough() bool {
	if !r.mergeable {
		return len(r.held) > r.h0
	}
	return r.space >= r.need || r.descs >= int(r.q.Size()) || len(r.segv)-r.s0 >= maxIovecs-1
}

// descCost estimates the ring descriptors c occupies.
func descCost(c *queue.Chain) int {
	if c.Indirect {
		return 1
	}
	return len(c.Readable) + len(c.Writable)
}

// iovecs returns the iovec array for the next readv: the writable
// segments of the chains a frame may use (all held chains in mergeable
// mode, the oldest in small and big mode), then the overflow tail. It
// sets iovSpace to their writable bytes.
func (r *rx) iovecs() [][]byte {
	end := len(r.segv)
	r.iovSpace = r.space
	switch {
	case !r.mergeable:
		// Exactly one chain is held (fill pops one at a time).
		r.iovSpace = uint64(r.held[r.h0].wlen)
	case end-r.s0 >= maxIovecs:
		// Rare: more segments than one readv takes. Use whole chains
		// up to the limit, in a separate array (the tail must not
		// overwrite a segment of a later chain).
		cut, space, at := r.cut[:0], uint64(0), r.s0
		for _, h := range r.held[r.h0:] {
			if len(cut)+int(h.nseg) >= maxIovecs {
				break
			}
			cut = append(cut, r.segv[at:at+int(h.nseg)]...)
			at += int(h.nseg)
			space += uint64(h.wlen)
		}
		r.cut = append(cut, r.tail[:])
		r.iovSpace = space
		return r.cut
	}
	if end == cap(r.segv) {
		r.segv = append(r.segv, nil)[:end] // room for the tail
	}
	iov := r.segv[r.s0 : end+1]
	iov[end-r.s0] = r.tail[:] // past len(segv): the next append overwrites it
	return iov
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
	first := r.segv[r.s0 : r.s0+int(r.held[r.h0].nseg)]
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
		h := r.held[r.h0+k]
		take := min(left, h.wlen)
		r.pending = append(r.pending, rxUsed{h.head, take})
		left -= take
		k++
	}
	binary.LittleEndian.PutUint16(r.hb[:], uint16(k))
	queue.CopySegs(r.hb[:], first, hdrNumBufsOff, true)
	r.consume(k)
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
	if flags&hdrFNeedsCsum != 0 && !r.csum {
		return hdrBad
	}
	if gso&gsoECN != 0 && !r.ecn {
		return hdrBad
	}
	t := gso &^ gsoECN
	if t >= 8 || r.gsoTypes&(1<<t) == 0 {
		return hdrBad
	}
	if t == gsoNone && n > r.maxPlain {
		return hdrTooBig
	}
	var allowed uint8
	if r.csum {
		allowed = hdrFNeedsCsum | hdrFDataValid
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

// consume drops the k oldest held chains (now pending).
func (r *rx) consume(k int) {
	for _, h := range r.held[r.h0 : r.h0+k] {
		r.space -= uint64(h.wlen)
		r.s0 += int(h.nseg)
		r.descs -= int(h.cost)
	}
	r.h0 += k
	r.fresh = min(r.fresh, len(r.held)-r.h0)
	if r.h0 == len(r.held) || r.h0 >= 64 {
		r.compact()
	}
}

// compact moves the held windows to the start of their arrays.
func (r *rx) compact() {
	n := copy(r.held, r.held[r.h0:])
	r.held, r.h0 = r.held[:n], 0
	m := copy(r.segv, r.segv[r.s0:])
	clear(r.segv[m:])
	r.segv, r.s0 = r.segv[:m], 0
}

// giveBack returns the held chains it can to the ring (Undo), newest
// first. Chains popped before a completion the queue made on its own (a
// malformed or unusable chain) cannot be undone; they stay held and are
// used first.
func (r *rx) giveBack() {
	n := r.q.Undo(min(r.fresh, len(r.held)-r.h0))
	keep := len(r.held) - n
	segs := len(r.segv)
	for _, h := range r.held[keep:] {
		r.space -= uint64(h.wlen)
		segs -= int(h.nseg)
		r.descs -= int(h.cost)
	}
	r.held, r.segv = r.held[:keep], r.segv[:segs]
	r.fresh = 0
	r.compact()
}

// flush pushes the used buffers, after giving back unused ones (Undo
// must come before any Push); the engine then publishes them.
func (r *rx) flush() {
	if len(r.pending) > 0 {
		r.giveBack()
		for _, u := range r.pending {
			r.q.Push(u.head, u.n)
		}
		r.pending = r.pending[:0]
	}
}
