package netdev

// TestNetStress: the real device, its engine goroutines, real kick files
// (an eventfd, as KVM's ioeventfd signals it, or a pipe) and a TAP-like
// socketpair backend (stressbe_test.go), against a guest that runs
// Linux 6.1's virtio_net receive (small, big or mergeable buffers) and
// NAPI transmit paths (stressguest_test.go) over virtio_ring's split or
// packed ring (stresssplit_test.go, stressring_test.go), with random
// frames both ways checked end to end, in order and byte for byte. The
// guest is goroutines: an interrupt handler per queue (vring_interrupt
// and the virtio_net callbacks), a NAPI poller per queue (virtnet_poll
// with its refill and TX clean-up, virtnet_poll_tx) and a sender (the
// qdisc and start_xmit, stopping and waking the queue). A direction
// that moves nothing for stallAfter (FLINT_STRESS_STALL_SECS, default
// 3) while it has work fails the test with a dump of both sides of both
// rings.
//
// Default: one round over the matrix (ring format, sizes including
// non-powers of two for packed rings, EVENT_IDX, indirect descriptors,
// eventfd or pipe kicks, GOMAXPROCS 1 and 2, receive modes), 25 ms of
// traffic each, about 3 s in all.
// Soak: FLINT_STRESS_SECS=1200 repeats the matrix with new seeds until
// that many seconds passed, FLINT_STRESS_VARIANT_SECS (default 1 in a
// soak) of traffic per variant; -run 'TestNetStress/.*/packed' picks
// variants; FLINT_STRESS_SEED fixes the seeds.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

type stressVariant struct {
	packed, event, indirect bool
	size                    uint16
	pipe                    bool // pipe kicks, else eventfd
	procs                   int
	rx                      stressRx
	poll                    bool // busy-poll window virtio.MaxPoll
}

// stressRx is virtio_net's receive mode: small buffers, big ones
// (GUEST_TSO4 without MRG_RXBUF) or mergeable ones (MRG_RXBUF).
type stressRx uint8

const (
	stressSmall stressRx = iota
	stressBig
	stressMrg
)

func (m stressRx) String() string { return [...]string{"small", "big", "mrg"}[m] }

func (v stressVariant) String() string {
	ring := "split"
	if v.packed {
		ring = "packed"
	}
	kick := "eventfd"
	if v.pipe {
		kick = "pipe"
	}
	return fmt.Sprintf("%s-%d-%v-event=%v-indirect=%v-%s-procs=%d-poll=%v", ring, v.size, v.rx, v.event, v.indirect, kick, v.procs, v.poll)
}

// stressMatrix is every variant; a soak runs all, the default run the
// ones with a kick kind alternating (each format, size and feature set
// still sees both kinds across GOMAXPROCS values; big and mergeable
// receive buffers at size 256 only, one GOMAXPROCS value each). Big
// receive buffers take 19 descriptors without indirect tables, so they
// run on rings of at least 64 (Linux's try_fill_recv posts none on a
// smaller one). Every third feature set busy-polls (Options.Poll).
func stressMatrix(soak bool) []stressVariant {
	var out []stressVariant
	sizes := map[bool][]uint16{false: {8, 256}, true: {7, 16, 256}}
	if soak {
		sizes = map[bool][]uint16{false: {8, 16, 64, 256}, true: {5, 7, 8, 16, 100, 256}}
	}
	n := 0
	for pi, procs := range []int{1, 2} {
		for _, packed := range []bool{true, false} {
			for si, size := range sizes[packed] {
				for _, event := range []bool{true, false} {
					for _, indirect := range []bool{true, false} {
						n++
						for _, pipe := range []bool{false, true} {
							if !soak && pipe != ((n+si+pi)%2 == 0) {
								continue
							}
							modes := []stressRx{stressSmall}
							if size >= 64 && (soak || procs == 1) {
								modes = append(modes, stressBig)
							}
							if soak || size == 256 && procs == 2 {
								modes = append(modes, stressMrg)
							}
							for _, m := range modes {
								out = append(out, stressVariant{packed, event, indirect, size, pipe, procs, m, n%3 == 0})
							}
						}
					}
				}
			}
		}
	}
	return out
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}

func TestNetStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress: not in -short")
	}
	budget := envFloat("FLINT_STRESS_SECS", 0)
	soak := budget > 0
	per := envFloat("FLINT_STRESS_VARIANT_SECS", 0.025)
	if soak && os.Getenv("FLINT_STRESS_VARIANT_SECS") == "" {
		per = 1
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("FLINT_STRESS_SEED"), 0, 64); err == nil {
		seed = s
	}
	start := time.Now()
	matrix := stressMatrix(soak)
	for round := 0; round == 0 || time.Since(start).Seconds() < budget; round++ {
		for i, v := range matrix {
			if soak && time.Since(start).Seconds() >= budget {
				break
			}
			vs := seed + uint64(round)*1_000_003 + uint64(i)*7919
			ok := t.Run(fmt.Sprintf("r%d/%v", round, v), func(t *testing.T) {
				runStress(t, v, vs, time.Duration(per*float64(time.Second)))
			})
			if !ok {
				return
			}
		}
	}
}

const (
	stressBudget = 64   // NAPI weight
	stressMaxSG  = 4    // transmit elements per packet at most
	rxBufLen     = 1530 // virtio_net's small buffer: header + GOOD_PACKET_LEN
	bigSGs       = 19   // a big buffer: header, then 1+MAX_SKB_FRAGS pages
	minFrame     = 60
	maxFrame     = 1514
	maxBigFrame  = 9000 // no GSO here, but frames that span pages
)

// stressIRQ delivers used-buffer notifications as an MSI would: each
// queue's vector latches one pending interrupt for its handler.
type stressIRQ struct {
	ch    [2]chan struct{}
	n     [2]atomic.Uint64
	reset atomic.Bool
}

func (i *stressIRQ) Signal(q int) error {
	if q < 0 || q > 1 {
		return fmt.Errorf("stress: interrupt for queue %d", q)
	}
	i.n[q].Add(1)
	select {
	case i.ch[q] <- struct{}{}:
	default:
	}
	return nil
}

func (i *stressIRQ) SignalConfig() error { return nil }
func (i *stressIRQ) NeedsReset() error   { i.reset.Store(true); return nil }

type stress struct {
	t    *testing.T
	v    stressVariant
	seed uint64

	g              *guestMem
	rx, tx         *vq
	rxNapi, txNapi napi
	irq            *stressIRQ
	d              *Device
	queues         [2]*queue.Queue
	be             *sockQueue
	peer           int

	rxSeg     map[int][]seg // RX NAPI's goroutine only
	rxLens    []uint32      // one receive buffer's elements
	rxTok     int
	rxNext    uint32
	txLock    sync.Mutex
	txStopped atomic.Bool
	txWake    chan struct{}
	thresh    int // 2+MAX_SKB_FRAGS, scaled down for tiny rings
	jitterP   int
	pauses    bool
	slowRx    bool // a slow receive NAPI, flooded: its ring runs dry, the device waits for kicks

	stop    chan struct{}
	wg      sync.WaitGroup
	genDone atomic.Bool
	injDone atomic.Bool

	rxGot, txXmit, txFreed, peerRx, peerTx atomic.Uint64

	errMu sync.Mutex
	errs  []string
}

func (s *stress) errorf(format string, args ...any) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if len(s.errs) < 5 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func (s *stress) failed() bool {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return len(s.errs) > 0
}

// jitter perturbs the guest's timing: yields, short sleeps and, with
// pauses set, a vCPU that stops for a while (a nested host's vCPUs do).
func (s *stress) jitter() {
	switch r := rand.IntN(1024); {
	case r < s.jitterP:
		runtime.Gosched()
	case r < s.jitterP+2:
		time.Sleep(time.Duration(rand.IntN(40)) * time.Microsecond)
	case s.pauses && r == 1023 && rand.IntN(4) == 0:
		time.Sleep(time.Duration(500+rand.IntN(2000)) * time.Microsecond)
	}
}

func runStress(t *testing.T, v stressVariant, seed uint64, dur time.Duration) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(v.procs))
	rnd := rand.New(rand.NewPCG(seed, 1))
	s := &stress{t: t, v: v, seed: seed, irq: &stressIRQ{}, stop: make(chan struct{}), txWake: make(chan struct{}, 1),
		rxSeg: map[int][]seg{}, jitterP: []int{0, 16, 128, 512}[rnd.IntN(4)], pauses: rnd.IntN(2) == 0,
		slowRx: rnd.IntN(3) == 0}
	for i := range s.irq.ch {
		s.irq.ch[i] = make(chan struct{}, 1)
	}
	s.rxNapi.run, s.txNapi.run = make(chan struct{}, 1), make(chan struct{}, 1)
	s.thresh = min(2+17, max(stressMaxSG, int(v.size)/2))
	sndbuf := []int{0, 0, 16 << 10}[rnd.IntN(3)]
	s.be, s.peer = newSockPair(t, sndbuf)
	s.setup(t)
	// virtnet_open: fill the receive ring before anything runs, then
	// enable both NAPIs (below).
	s.fillRx()

	s.wg.Add(7)
	go s.irqLoop(0, s.rx, func() { napiSchedule(&s.rxNapi, s.rx) })
	go s.irqLoop(1, s.tx, func() {
		s.tx.disableCB() // skb_xmit_done
		napiSchedule(&s.txNapi, s.tx)
	})
	go s.napiLoop(&s.rxNapi, s.rxPoll)
	go s.napiLoop(&s.txNapi, func() bool { s.txPoll(); return true })
	go s.sender(rand.New(rand.NewPCG(seed, 2)), dur)
	go s.injector(rand.New(rand.NewPCG(seed, 3)), dur)
	go s.receiver()
	napiSchedule(&s.rxNapi, s.rx)
	napiSchedule(&s.txNapi, s.tx)

	stall := s.watch()
	dump := ""
	if stall != "" {
		dump = s.dump()
	}
	s.shutdown()
	if stall != "" {
		t.Fatalf("%v seed %#x: %s\n%s", v, seed, stall, dump)
	}
	if s.failed() {
		t.Fatalf("%v seed %#x: %s", v, seed, strings.Join(s.errs, "\n"))
	}
	if s.peerTx.Load() != s.rxGot.Load() || s.peerRx.Load() != s.txXmit.Load() {
		t.Fatalf("%v seed %#x: rx %d of %d, tx %d of %d", v, seed, s.rxGot.Load(), s.peerTx.Load(), s.peerRx.Load(), s.txXmit.Load())
	}
	if st := s.d.Stats(); st.RxMalformed+st.TxMalformed+st.RxDropOversize+st.RxDropShort+st.RxDropHeader+st.TxDropShort+st.TxDropHeader != 0 || st.Broken != 0 {
		t.Fatalf("%v: device counted errors: %+v", v, st)
	}
	t.Logf("rx %d tx %d packets, irqs rx %d (no work %d) tx %d (no work %d), kicks rx %d tx %d", s.rxGot.Load(), s.txXmit.Load(),
		s.irq.n[0].Load(), s.rx.spurious, s.irq.n[1].Load(), s.tx.spurious, s.rx.kicks, s.tx.kicks)
}

// setup builds the guest's rings, the device over the backend, and the
// kick files, and activates the device as a transport does at DRIVER_OK.
func (s *stress) setup(t *testing.T) {
	v := s.v
	rcfg := ringCfg{num: v.size, event: v.event, indirect: v.indirect, stride: 2048, maxSG: 1}
	s.rxLens = []uint32{rxBufLen}
	switch v.rx {
	case stressMrg: // add_recvbuf_mergeable: one page fragment, sized by fillRx
		rcfg.stride = 4096 + 64
	case stressBig: // add_recvbuf_big: the header, the rest of its page, 17 pages
		s.rxLens = []uint32{HdrLen, 4096 - 16}
		for range bigSGs - 2 {
			s.rxLens = append(s.rxLens, 4096)
		}
		rcfg.stride, rcfg.maxSG = 76<<10, bigSGs
	}
	s.g = newGuestMem(uint64(v.size)*(rcfg.stride+16*bigSGs+4096+16*stressMaxSG) + 1<<20)
	tcfg := ringCfg{num: v.size, event: v.event, indirect: v.indirect, stride: 4096, maxSG: stressMaxSG}
	var rr, tr vring
	if v.packed {
		rr, tr = newPackedRing(s.g, rcfg), newPackedRing(s.g, tcfg)
	} else {
		rr, tr = newSplitRing(s.g, rcfg), newSplitRing(s.g, tcfg)
	}
	s.rx, s.tx = &vq{r: rr, event: v.event}, &vq{r: tr, event: v.event}
	bigRx := fCsum | FeatureGuestTSO4.Mask()
	offered := fCommon | fIndir | fEvent | virtio.FeatureRingPacked.Mask() | bigRx | fMrg
	var poll time.Duration
	if v.poll {
		poll = virtio.MaxPoll
	}
	// Resends need EVENT_IDX; every such variant checks its notifications.
	d, err := New(s.be, Options{Features: offered, Poll: poll, IRQResend: 250 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	acked := fCommon
	if v.event {
		acked |= fEvent
	}
	switch v.rx {
	case stressBig:
		acked |= bigRx
	case stressMrg: // with GUEST_TSO4: frames past the MTU (and the device holds 64 KiB of buffers)
		acked |= fMrg | bigRx
	}
	if v.indirect {
		acked |= fIndir
	}
	if v.packed {
		acked |= virtio.FeatureRingPacked.Mask()
	}
	neg, err := virtio.Negotiate(d.Features(), acked)
	if err == nil {
		err = d.AckFeatures(neg)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	var qs []virtio.Queue
	for i, r := range []vring{rr, tr} {
		q, err := queue.New(d.QueueMaxSizes()[i])
		if err != nil {
			t.Fatal(err)
		}
		desc, drv, dev := r.areas()
		if err := q.SetFeatures(neg); err != nil {
			t.Fatal(err)
		}
		if err := q.SetSize(r.size()); err != nil {
			t.Fatal(err)
		}
		if err := q.SetAddrs(desc, drv, dev); err != nil {
			t.Fatal(err)
		}
		if err := q.Validate(s.g.m); err != nil {
			t.Fatal(err)
		}
		s.queues[i] = q
		kf, kick := stressKick(t, v.pipe)
		[]*vq{s.rx, s.tx}[i].kick = kick
		qs = append(qs, virtio.Queue{Ring: q, Kick: kf})
	}
	if err := d.Activate(s.g.m, qs, s.irq); err != nil {
		t.Fatal(err)
	}
}

// stressKick returns a kick file and the guest's notify: an eventfd
// signalled with 1 per kick (KVM's ioeventfd does eventfd_signal), or a
// pipe carrying 8 bytes per kick (vhost-user frontends that use one).
// Both are closed when the test ends, after the device's Reset.
func stressKick(t *testing.T, pipe bool) (*os.File, func()) {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if pipe {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return r, func() { w.Write(one) }
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "kick")
	t.Cleanup(func() { f.Close() })
	return f, func() { unix.Write(fd, one) }
}

// injector is the host sending frames to the guest through the
// backend, in bursts with pauses (so the device's receive engine both
// parks on the backend and runs out of guest buffers).
func (s *stress) injector(rnd *rand.Rand, dur time.Duration) {
	defer s.wg.Done()
	defer s.injDone.Store(true)
	end := time.Now().Add(dur)
	for seq := uint32(0); time.Now().Before(end); seq++ {
		n := minFrame + rnd.IntN(maxFrame-minFrame+1)
		if s.v.rx != stressSmall && rnd.IntN(4) == 0 {
			n = minFrame + rnd.IntN(s.maxFrame()-minFrame+1)
		}
		f := make([]byte, HdrLen+n)
		putStressFrame(f[HdrLen:], seq)
		if _, err := unix.Write(s.peer, f); err != nil {
			return // shut down
		}
		s.peerTx.Add(1)
		if s.slowRx {
			continue // flood the slow guest: its ring runs dry
		}
		switch r := rnd.IntN(64); {
		case r == 0:
			time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond)
		case r < 8:
			time.Sleep(time.Duration(rnd.IntN(50)) * time.Microsecond)
		}
	}
}

// maxFrame is the largest frame the injector sends: maxBigFrame, or
// with mergeable buffers what the buffers Linux keeps posted can hold.
// It refills only after more than min(64, size)/2 were used, so the
// device may never see more than the rest of the ring, and a frame
// larger than those buffers would wait for them for good, whatever the
// device (QEMU's waits too; its rings have at least 256 entries).
func (s *stress) maxFrame() int {
	if s.v.rx != stressMrg {
		return maxBigFrame
	}
	posted := int(s.v.size) - min(stressBudget, int(s.v.size))/2
	return min(maxBigFrame, posted*rxBufLen-HdrLen)
}

// receiver is the host reading the guest's frames from the backend.
func (s *stress) receiver() {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for seq := uint32(0); ; seq++ {
		n, err := unix.Read(s.peer, buf)
		if err != nil || n == 0 {
			return
		}
		if buf[0] != 0 || buf[1] != 0 {
			s.errorf("tx: header flags %#x gso %#x", buf[0], buf[1])
		}
		if err := checkStressFrame(buf[HdrLen:n], seq); err != nil {
			s.errorf("tx: %v", err)
		}
		s.peerRx.Add(1)
		if s.pauses && rand.IntN(256) == 0 {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // the host is busy: the socket fills
		}
	}
}

// putStressFrame fills f with frame seq: its number, its length, then
// a pattern of both.
func putStressFrame(f []byte, seq uint32) {
	binary.LittleEndian.PutUint32(f, seq)
	binary.LittleEndian.PutUint16(f[4:], uint16(len(f)))
	for i := 6; i < len(f); i++ {
		f[i] = byte(seq*13) ^ byte(i*7+i>>8)
	}
}

func checkStressFrame(f []byte, seq uint32) error {
	if len(f) < 6 {
		return fmt.Errorf("frame of %d bytes", len(f))
	}
	got, n := binary.LittleEndian.Uint32(f), int(binary.LittleEndian.Uint16(f[4:]))
	if got != seq || n != len(f) {
		return fmt.Errorf("frame %d (%d bytes) where frame %d was due (%d bytes)", got, n, seq, len(f))
	}
	for i := 6; i < len(f); i++ {
		if f[i] != byte(seq*13)^byte(i*7+i>>8) {
			return fmt.Errorf("frame %d: byte %d corrupt", seq, i)
		}
	}
	return nil
}

// stallAfter is how long a direction with work may move nothing.
var stallAfter = time.Duration(envFloat("FLINT_STRESS_STALL_SECS", 3) * float64(time.Second))

// watchTick is the watcher's poll interval; a tick that came over
// watchLate after the one before does not count towards a stall (the
// process was not running, so neither was the device).
const watchTick, watchLate = 2 * time.Millisecond, 20 * time.Millisecond

// watch waits until both directions delivered everything the
// generators sent, or an error, or a stall (its description): stallAfter
// of the watcher's own running time, not wall time.
func (s *stress) watch() string {
	type dir struct {
		last uint64
		at   time.Time
	}
	now := time.Now()
	rxd, txd := dir{at: now}, dir{at: now}
	for !s.failed() {
		time.Sleep(watchTick)
		prev := now
		now = time.Now()
		if gap := now.Sub(prev); gap > watchLate {
			rxd.at, txd.at = rxd.at.Add(gap-watchTick), txd.at.Add(gap-watchTick)
		}
		rxGot, peerTx := s.rxGot.Load(), s.peerTx.Load()
		xmit, peerRx := s.txXmit.Load(), s.peerRx.Load()
		rxWork := peerTx > rxGot || !s.injDone.Load()
		txWork := peerRx < xmit || !s.genDone.Load()
		if !rxWork && !txWork {
			return ""
		}
		if rxGot != rxd.last || !rxWork {
			rxd = dir{rxGot, now}
		}
		if xmit+peerRx != txd.last || !txWork {
			txd = dir{xmit + peerRx, now}
		}
		if now.Sub(rxd.at) > stallAfter {
			return fmt.Sprintf("RX stalled: guest received %d of %d frames the host sent, nothing for %v", rxGot, peerTx, stallAfter)
		}
		if now.Sub(txd.at) > stallAfter {
			return fmt.Sprintf("TX stalled: guest sent %d (queue stopped %v), host received %d, nothing for %v", xmit, s.txStopped.Load(), peerRx, stallAfter)
		}
	}
	return ""
}

// dump is both sides of both rings, the guest's NAPI and queue state
// and the engines' activity, while stalled.
func (s *stress) dump() string {
	var b strings.Builder
	states := s.d.EngineStates()
	for i, name := range []string{"rx", "tx"} {
		v := []*vq{s.rx, s.tx}[i]
		n := []*napi{&s.rxNapi, &s.txNapi}[i]
		fmt.Fprintf(&b, "%s guest: %s napi_state=%d irqs_sent=%d\n", name, v.dump(), n.state.Load(), s.irq.n[i].Load())
		fmt.Fprintf(&b, "%s device: engine %v ring %v\n", name, states[i].Attrs(), s.queues[i].RingState().Attrs())
	}
	fmt.Fprintf(&b, "tx stopped=%v xmit=%d freed=%d host got %d; rx host sent %d guest got %d; device stats %+v\n",
		s.txStopped.Load(), s.txXmit.Load(), s.txFreed.Load(), s.peerRx.Load(), s.peerTx.Load(), s.rxGot.Load(), s.d.Stats())
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "flint/virtio.(*Engine)") {
			b.WriteString(g + "\n\n")
		}
	}
	return b.String()
}

// shutdown stops the guest and the host, then resets the device.
func (s *stress) shutdown() {
	close(s.stop)
	s.d.Reset() // before the host's end closes: the device would read EOFs
	unix.Shutdown(s.peer, unix.SHUT_RDWR)
	s.wg.Wait()
	unix.Close(s.peer)
	s.be.Close()
}
