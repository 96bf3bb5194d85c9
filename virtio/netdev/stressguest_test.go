package netdev

// The stress test's guest (stress_test.go): virtio_net's interrupt
// handlers (skb_recv_done, skb_xmit_done behind vring_interrupt), NAPI
// (SCHED and MISSED, virtqueue_napi_schedule and _complete), the
// small-buffer receive poll with its refill, and the transmit side with
// napi_tx: the qdisc's bursts, start_xmit, virtnet_poll_tx and the
// receive poll's clean-up of the transmit queue, as Linux 6.1 (with the
// 6.1.9 fix "virtio-net: correctly enable callback during start_xmit")
// runs them over stressring_test.go's rings.

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/internal/vnethdr"
)

// napi is a NAPI instance's SCHED and MISSED bits (net/core/dev.c).
type napi struct {
	state atomic.Uint32
	run   chan struct{}
}

const (
	napiSched  = 1
	napiMissed = 2
)

func (n *napi) schedulePrep() bool {
	for {
		v := n.state.Load()
		nv := v | napiSched
		if v&napiSched != 0 {
			nv = v | napiMissed
		}
		if n.state.CompareAndSwap(v, nv) {
			return v&napiSched == 0
		}
	}
}

func (n *napi) schedule() {
	select {
	case n.run <- struct{}{}:
	default:
	}
}

// completeDone is napi_complete_done: with MISSED set it keeps SCHED
// and polls again.
func (n *napi) completeDone() bool {
	for {
		v := n.state.Load()
		nv := v &^ (napiSched | napiMissed)
		if v&napiMissed != 0 {
			nv |= napiSched
		}
		if n.state.CompareAndSwap(v, nv) {
			if v&napiMissed != 0 {
				n.schedule()
				return false
			}
			return true
		}
	}
}

// napiSchedule is virtio_net's virtqueue_napi_schedule.
func napiSchedule(n *napi, v *vq) {
	if n.schedulePrep() {
		v.disableCB()
		n.schedule()
	}
}

func (s *stress) irqLoop(q int, v *vq, callback func()) {
	defer s.wg.Done()
	for {
		select {
		case <-s.irq.ch[q]:
			v.interrupt(callback)
		case <-s.stop:
			return
		}
	}
}

// napiLoop runs a NAPI instance's polls while it is scheduled; poll
// reports whether it completed (else the budget ran out: poll again).
func (s *stress) napiLoop(n *napi, poll func() bool) {
	defer s.wg.Done()
	for {
		select {
		case <-n.run:
		case <-s.stop:
			return
		}
		for !poll() {
			s.jitter()
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}
}

// rxPoll is virtnet_poll: a packet is one used buffer, or with
// mergeable buffers as many as its header's num_buffers says (all of
// them published together: Linux drops a packet whose buffers are not
// all there, "rx error: buffers missing").
func (s *stress) rxPoll() bool {
	s.cleanTx()
	received := 0
	for received < stressBudget {
		tok, n, ok := s.rx.getBuf()
		if !ok {
			break
		}
		b := s.rxBytes(tok, n)
		if s.v.rx == stressMrg && len(b) >= HdrLen {
			nb := int(binary.LittleEndian.Uint16(b[vnethdr.NumBuffersOffset:]))
			for k := 1; k < nb; k++ {
				tok, n, ok := s.rx.getBuf()
				if !ok {
					s.errorf("rx: packet %d: %d of %d buffers missing", s.rxNext, nb-k, nb)
					break
				}
				b = append(b, s.rxBytes(tok, n)...)
			}
		}
		s.receive(b)
		received++
		s.jitter()
		if s.slowRx && rand.IntN(4) == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if s.rx.numFree() > min(stressBudget, int(s.v.size))/2 {
		s.fillRx()
	}
	if received == stressBudget {
		return false
	}
	opaque := s.rx.enableCBPrepare()
	s.jitter()
	if s.rxNapi.completeDone() {
		if s.rx.poll(opaque) {
			napiSchedule(&s.rxNapi, s.rx)
		}
	} else {
		s.rx.disableCB()
	}
	return true
}

// fillRx is try_fill_recv with add_recvbuf_small, _big or _mergeable
// (whose buffer sizes follow an average: here anything from a small
// buffer to a page).
func (s *stress) fillRx() {
	for {
		tok, lens := s.rxTok, s.rxLens
		if s.v.rx == stressMrg {
			lens = []uint32{rxBufLen + uint32(rand.IntN(4096-HdrLen-rxBufLen+1))}
		}
		if !s.rx.add(lens, true, tok, func(g []seg) { s.rxSeg[tok] = g }) {
			break
		}
		s.rxTok++
		if s.rx.numFree() == 0 {
			break
		}
	}
	s.rx.kickPrepareNotify()
}

// rxBytes is what the device wrote into used buffer tok, n bytes.
func (s *stress) rxBytes(tok int, n uint32) []byte {
	sgs, ok := s.rxSeg[tok]
	delete(s.rxSeg, tok)
	var b []byte
	for _, e := range sgs {
		b = append(b, s.g.bytes(e.addr, uint64(min(e.len, n-uint32(len(b)))))...)
	}
	switch {
	case !ok:
		s.errorf("rx: used buffer token %d was not posted", tok)
	case int(n) > len(b):
		s.errorf("rx: used length %d for a buffer of %d elements", n, len(sgs))
	}
	return b
}

// receive checks packet b, header first, against the next one due.
func (s *stress) receive(b []byte) {
	if len(b) < HdrLen+minFrame {
		s.errorf("rx: packet %d of %d bytes", s.rxNext, len(b))
		return
	}
	if b[0] != 0 || b[1] != 0 {
		s.errorf("rx: header flags %#x gso %#x", b[0], b[1])
	}
	if err := checkStressFrame(b[HdrLen:], s.rxNext); err != nil {
		s.errorf("rx: %v", err)
	}
	s.rxNext++
	s.rxGot.Add(1)
}

// sender is the qdisc: bursts of packets (xmit_more on all but the
// last), each waiting while the queue is stopped.
func (s *stress) sender(rnd *rand.Rand, dur time.Duration) {
	defer s.wg.Done()
	defer s.genDone.Store(true)
	end := time.Now().Add(dur)
	for seq := uint32(0); time.Now().Before(end); {
		burst := 1 + rnd.IntN(8)
		for k := 0; k < burst; {
			if s.txStopped.Load() {
				select {
				case <-s.txWake:
				case <-s.stop:
					return
				}
				continue
			}
			s.txLock.Lock()
			if s.txStopped.Load() {
				s.txLock.Unlock()
				continue
			}
			s.startXmit(rnd, seq, k+1 < burst)
			s.txLock.Unlock()
			seq++
			k++
			s.jitter()
		}
	}
}

// startXmit is virtio_net's start_xmit with napi_tx (txLock held).
func (s *stress) startXmit(rnd *rand.Rand, seq uint32, more bool) {
	kick := !more
	for {
		s.tx.disableCB()
		s.freeOldXmit()
		if !kick || s.tx.enableCBDelayed() {
			break
		}
	}
	n := minFrame + rnd.IntN(maxFrame-minFrame+1)
	pkt := make([]byte, HdrLen+n)
	putStressFrame(pkt[HdrLen:], seq)
	lens := splitLens(rnd, len(pkt))
	if !s.tx.add(lens, false, int(seq), func(g []seg) {
		off := 0
		for _, e := range g {
			off += copy(s.g.bytes(e.addr, uint64(e.len)), pkt[off:])
		}
	}) {
		s.errorf("tx: no room for packet %d with %d free: the stop threshold is wrong", seq, s.tx.numFree())
		return
	}
	s.txXmit.Add(1)
	if s.tx.numFree() < s.thresh {
		s.txStopped.Store(true) // netif_stop_subqueue
		if !s.tx.enableCBDelayed() {
			napiSchedule(&s.txNapi, s.tx)
		}
	}
	if kick || s.txStopped.Load() {
		s.tx.kickPrepareNotify()
	}
}

// splitLens cuts a packet of n bytes into 1 to stressMaxSG elements:
// the header alone first when there are several (as when virtio_net
// cannot push it into the skb's headroom), then the data.
func splitLens(rnd *rand.Rand, n int) []uint32 {
	k := 1 + rnd.IntN(stressMaxSG)
	if k == 1 {
		return []uint32{uint32(n)}
	}
	lens := []uint32{HdrLen}
	left := n - HdrLen
	for i := 1; i < k; i++ {
		take := left
		if i+1 < k {
			take = 1 + rnd.IntN(left-(k-i-1))
		}
		lens = append(lens, uint32(take))
		left -= take
	}
	return lens
}

func (s *stress) freeOldXmit() {
	for {
		if _, _, ok := s.tx.getBuf(); !ok {
			return
		}
		s.txFreed.Add(1)
	}
}

// wakeTx is netif_tx_wake_queue (txLock held).
func (s *stress) wakeTx() {
	if s.txStopped.CompareAndSwap(true, false) {
		select {
		case s.txWake <- struct{}{}:
		default:
		}
	}
}

// txPoll is virtnet_poll_tx.
func (s *stress) txPoll() {
	s.txLock.Lock()
	s.tx.disableCB()
	s.freeOldXmit()
	if s.tx.numFree() >= s.thresh {
		s.wakeTx()
	}
	opaque := s.tx.enableCBPrepare()
	done := s.txNapi.completeDone()
	if !done {
		s.tx.disableCB()
	}
	s.txLock.Unlock()
	s.jitter()
	if done && s.tx.poll(opaque) && s.txNapi.schedulePrep() {
		s.txLock.Lock()
		s.tx.disableCB()
		s.txLock.Unlock()
		s.txNapi.schedule()
	}
}

// cleanTx is virtnet_poll_cleantx, from the receive NAPI.
func (s *stress) cleanTx() {
	if !s.txLock.TryLock() {
		return
	}
	for {
		s.tx.disableCB()
		s.freeOldXmit()
		if s.tx.enableCBDelayed() {
			break
		}
	}
	if s.tx.numFree() >= s.thresh {
		s.wakeTx()
	}
	s.txLock.Unlock()
}
