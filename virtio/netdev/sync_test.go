package netdev

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// syncDev drives the device's engines without their goroutines: the test
// plays the guest and calls pump itself, so benchmarks, allocation tests
// and the fuzzer measure the device's work alone, deterministically.
type syncDev struct {
	d        *Device
	rxd, txd *qt.Driver
	rxq, txq *queue.Queue
	irq      *virtiotest.Interrupt
}

func newSync(tb testing.TB, be Backend, acked uint64, size uint16, dataSize uint64) *syncDev {
	tb.Helper()
	d, err := New(be, Options{Features: SupportedFeatures &^ FeatureMAC.Mask()})
	if err != nil {
		tb.Fatal(err)
	}
	cfgs := make([]qt.Config, len(d.QueueMaxSizes())) // the control queue left disabled
	cfgs[RxQueue] = qt.Config{Size: size, DataSize: dataSize}
	cfgs[TxQueue] = cfgs[RxQueue]
	ds, queues, irq := virtiotest.SyncQueues(tb, d, acked|fCommon, cfgs...)
	s := &syncDev{d: d, rxd: ds[RxQueue], txd: ds[TxQueue], rxq: queues[RxQueue].Ring, txq: queues[TxQueue].Ring, irq: irq}
	if err := d.configure(queues, 1, false); err != nil {
		tb.Fatal(err)
	}
	if err := d.engines.Bind(queues, irq, RxQueue, TxQueue); err != nil {
		tb.Fatal(err)
	}
	return s
}

// packets reads a published counter.
func (s *syncDev) packets(c counter) uint64 { return s.d.stats.Load(c) }

// rxRound is what the RX engine does between two waits (with the
// buffers it gives back before it waits for the backend).
func (s *syncDev) rxRound() virtio.Result {
	r := s.d.pairs[0].rx.eng.Step()
	if r.Do == virtio.WaitBackend {
		s.d.pairs[0].rx.win.giveBack(s.rxq)
	}
	return r
}

// txRound is what the TX engine does between two waits.
func (s *syncDev) txRound() virtio.Result { return s.d.pairs[0].tx.eng.Step() }

// recycle re-posts every used buffer of driver d unchanged (its
// descriptors, or its cached indirect table, still describe it) and
// returns how many it re-posted. It allocates nothing.
var recycle = virtiotest.Recycle

// memBackend is an allocation-free in-memory Backend for benchmarks: it
// hands out avail copies of one frame, and counts what is written.
type memBackend struct {
	frame []byte
	avail int
	sent  int
	bytes int
}

func (b *memBackend) TryReadv(iovs [][]byte) (int, error) {
	if b.avail == 0 {
		return 0, unix.EAGAIN
	}
	b.avail--
	n := 0
	for _, v := range iovs {
		if n == len(b.frame) {
			break
		}
		n += copy(v, b.frame[n:])
	}
	return n, nil
}

func (b *memBackend) Writev(iovs [][]byte) (int, error) {
	n := 0
	for _, v := range iovs {
		n += len(v)
	}
	b.sent++
	b.bytes += n
	return n, nil
}

func (b *memBackend) WaitReadable() error                { return nil }
func (b *memBackend) WaitWritable() error                { return nil }
func (b *memBackend) SetReadDeadline(t time.Time) error  { return nil }
func (b *memBackend) SetWriteDeadline(t time.Time) error { return nil }

// rxMode describes how the guest posts receive buffers.
type rxMode struct {
	name  string
	acked uint64
	post  func(tb testing.TB, d *qt.Driver) // fills the ring
}

func postUniform(size uint32) func(testing.TB, *qt.Driver) {
	return func(tb testing.TB, d *qt.Driver) {
		for d.FreeDescs() > 0 {
			if _, err := d.Add(qt.W(size)); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// postBig posts Linux "big packets" chains: a header descriptor, the rest
// of the first page, 16 more pages; indirect when negotiated.
func postBig(indirect bool) func(testing.TB, *qt.Driver) {
	return func(tb testing.TB, d *qt.Driver) {
		bufs := []qt.Buf{qt.W(HdrLen), qt.W(4096 - HdrLen)}
		for range 16 {
			bufs = append(bufs, qt.W(4096))
		}
		for i := 0; i < 64 && d.FreeDescs() >= len(bufs); i++ {
			var err error
			if indirect {
				_, err = d.AddIndirect(bufs...)
			} else {
				_, err = d.Add(bufs...)
			}
			if err != nil {
				tb.Fatal(err)
			}
		}
	}
}

var rxModes = []rxMode{
	{"mergeable-1536", fMrg | fGSO | fEvent, postUniform(1536)},
	{"mergeable-4096", fMrg | fGSO | fEvent, postUniform(4096)},
	{"mergeable-4096-indirect", fMrg | fGSO | fEvent | fIndir, postUniform(4096)},
	{"big", fGSO | fEvent, postBig(false)},
	{"big-indirect", fGSO | fEvent | fIndir, postBig(true)},
	{"small", fEvent, postUniform(1530)},
	{"small-indirect", fEvent | fIndir, postUniform(1530)},
}

// rxDriver sets up mode m over be and returns the device and a function
// that moves up to batch frames from be to the guest and recycles the
// buffers; it returns the frames delivered.
func rxDriver(tb testing.TB, m rxMode, be *memBackend) (*syncDev, func(batch int) int) {
	s := newSync(tb, be, m.acked, 256, 24<<20)
	m.post(tb, s.rxd)
	s.rxd.Kick()
	step := func(batch int) int {
		be.avail = batch
		s.rxRound()
		recycle(s.rxd)
		got := batch - be.avail
		be.avail = 0
		return got
	}
	return s, step
}

// txDriver posts size chains carrying frame split as layout says and
// returns a function that sends them all and re-posts them.
func txDriver(tb testing.TB, acked uint64, be Backend, f []byte, layout []int, indirect bool) (*syncDev, func() int) {
	s := newSync(tb, be, acked, 256, 8<<20)
	for {
		var bufs []qt.Buf
		rest := f
		for _, n := range layout {
			if n = min(n, len(rest)); n > 0 {
				bufs = append(bufs, qt.Buf{Data: rest[:n]})
				rest = rest[n:]
			}
		}
		if len(rest) > 0 {
			bufs = append(bufs, qt.Buf{Data: rest})
		}
		if (!indirect && s.txd.FreeDescs() < len(bufs)) || s.txd.FreeDescs() == 0 || s.txd.InFlight() >= 64 {
			break
		}
		var err error
		if indirect {
			_, err = s.txd.AddIndirect(bufs...)
		} else {
			_, err = s.txd.Add(bufs...)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	s.txd.Kick()
	step := func() int {
		before := s.packets(cTxPackets)
		s.txRound()
		recycle(s.txd)
		return int(s.packets(cTxPackets) - before)
	}
	return s, step
}

// TestNoAllocsPerPacket proves the steady state allocates nothing, for
// each receive mode and transmit layout, small and GSO-sized frames.
func TestNoAllocsPerPacket(t *testing.T) {
	for _, m := range rxModes {
		for _, size := range []int{64, 65550} {
			gso := byte(vnethdr.GSONone)
			if size > 1514 {
				if m.acked&fGSO == 0 {
					continue
				}
				gso = vnethdr.GSOTCPv4
			}
			be := &memBackend{frame: frame(0, size, 0, gso)}
			s, step := rxDriver(t, m, be)
			for range 100 { // warm up every head's cached chain and the slices
				step(8)
			}
			if a := testing.AllocsPerRun(50, func() {
				if step(8) == 0 {
					t.Fatal("nothing delivered")
				}
			}); a != 0 {
				t.Errorf("rx %s %d B: %v allocs per round", m.name, size, a)
			}
			if st := s.d.Stats(); st.RxDropOversize+st.RxDropHeader+st.RxDropShort != 0 {
				t.Fatalf("rx %s: drops %+v", m.name, st)
			}
		}
	}
	for _, indirect := range []bool{false, true} {
		for _, tc := range []struct {
			size       int
			flags, gso byte
		}{{64, 0, 0}, {65550, vnethdr.FNeedsCsum, vnethdr.GSOTCPv4}, {1500, vnethdr.FDataValid, 0}} { // the last one's header is cleaned in a copy
			size := tc.size
			be := &memBackend{}
			acked := fEvent | fHostGSO
			if indirect {
				acked |= fIndir
			}
			s, step := txDriver(t, acked, be, frame(0, size, tc.flags, tc.gso), []int{HdrLen, 20}, indirect)
			for range 10 {
				step()
			}
			if a := testing.AllocsPerRun(50, func() {
				if step() == 0 {
					t.Fatal("nothing sent")
				}
			}); a != 0 {
				t.Errorf("tx indirect=%v %d B flags %#x: %v allocs per round", indirect, size, tc.flags, a)
			}
			if st := s.d.Stats(); st.TxDropHeader != 0 || st.TxPackets == 0 {
				t.Fatalf("tx: %+v", st)
			}
		}
	}
}
