package console

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// fAll is every feature the device offers.
const fAll = Features

// pattern is n bytes whose values depend on their offset, so reordered or
// lost bytes show.
func pattern(n int) []byte { return virtiotest.Pattern(n, 0) }

// sink is a writer tests can read while the device writes to it.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	delay  time.Duration // per Write
	failAt int           // the failAt-th Write (1-based) fails; 0: never
	writes int
}

var errSink = errors.New("sink: write failed")

func (s *sink) Write(p []byte) (int, error) {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.writes == s.failAt {
		return 0, errSink
	}
	return s.buf.Write(p)
}

func (s *sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

func (s *sink) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

// rig is an active device with its guest drivers.
type rig struct {
	tb  testing.TB
	dev *Device
	h   *virtiotest.Harness
	rx  *qt.Driver
	tx  *qt.Driver
}

func newRig(tb testing.TB, opts Options) *rig {
	tb.Helper()
	d, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	r := &rig{tb: tb, dev: d}
	r.activate()
	return r
}

func (r *rig) activate() {
	r.tb.Helper()
	r.h = virtiotest.MustActivate(r.tb, r.dev, fAll, virtiotest.Options{DataSize: 4 << 20})
	r.rx, r.tx = r.h.Drivers[ReceiveQueue], r.h.Drivers[TransmitQueue]
}

// reactivate resets the device and activates it again on fresh rings, as
// a driver that resets does.
func (r *rig) reactivate() {
	r.tb.Helper()
	r.h.Close()
	r.activate()
}

// send writes data through the transmitq in chains of at most chunk bytes
// (each of up to three buffers), re-using descriptors as the device
// returns them, and waits until every chain is used.
func (r *rig) send(data []byte, chunk int) {
	r.tb.Helper()
	for len(data) > 0 {
		if r.tx.FreeDescs() < 3 {
			r.tx.AllUsed()
			if r.tx.FreeDescs() < 3 {
				r.h.Kick(TransmitQueue)
				waitUntil(r.tb, "transmit descriptors", func() bool { return r.tx.PendingUsed() > 0 })
				continue
			}
		}
		n := min(chunk, len(data))
		c := data[:n]
		var bufs []qt.Buf
		for _, k := range []int{n / 3, n / 3} { // up to three buffers
			if k > 0 {
				bufs = append(bufs, qt.R(c[:k]))
				c = c[k:]
			}
		}
		bufs = append(bufs, qt.R(c))
		if _, err := r.tx.Add(bufs...); err != nil {
			r.tb.Fatal(err)
		}
		data = data[n:]
	}
	r.h.Kick(TransmitQueue)
	waitUntil(r.tb, "transmit chains used", func() bool {
		r.tx.AllUsed()
		return r.tx.InFlight() == 0
	})
}

// post makes n receive chains of size bytes available.
func (r *rig) post(n int, size uint32) {
	r.tb.Helper()
	for range n {
		if _, err := r.rx.Add(qt.W(size)); err != nil {
			r.tb.Fatal(err)
		}
	}
	r.h.Kick(ReceiveQueue)
}

// recv collects what the device wrote into receive chains until want
// bytes arrived, keeping 16 chains of size bytes posted.
func (r *rig) recv(want int, size uint32) []byte {
	r.tb.Helper()
	var got []byte
	r.post(16-r.rx.InFlight(), size)
	waitUntil(r.tb, "input", func() bool {
		us := r.rx.AllUsed() // read all before re-posting: buffers are reused
		for _, u := range us {
			got = append(got, r.rx.Written(u)...)
		}
		r.post(len(us), size)
		return len(got) >= want
	})
	return got
}

// waitUntil polls cond (virtiotest.WaitUntil).
var waitUntil = virtiotest.WaitUntil

// syncQueue drives one queue's engine without its goroutine, for the
// allocation test, the benchmark and the fuzzer: the test plays the guest
// and calls step itself. The receive side gets its input by fill, not
// from a reader goroutine.
type syncQueue struct {
	d   *Device
	drv *qt.Driver
	eng *virtio.Engine
}

func newSync(tb testing.TB, d *Device, index int, size uint16, dataSize uint64) *syncQueue {
	tb.Helper()
	cfgs := make([]qt.Config, 2)
	cfgs[index] = qt.Config{Size: size, DataSize: dataSize}
	drvs, queues, irq := virtiotest.SyncQueues(tb, d, fAll, cfgs...)
	if err := d.engines.Bind(queues, irq, index); err != nil { // lane i serves queue i
		tb.Fatal(err)
	}
	s := &syncQueue{d: d, drv: drvs[index], eng: &d.rx.eng}
	if index == TransmitQueue {
		s.eng = &d.tx.eng
	}
	return s
}

// fill makes the whole input buffer pending, as the reader would.
func (s *syncQueue) fill(b []byte) {
	in := &s.d.in
	in.mu.Lock()
	in.off, in.n = 0, copy(in.buf, b)
	in.mu.Unlock()
}

// step is what the engine goroutine does between two waits.
func (s *syncQueue) step() virtio.Result { return s.eng.Step() }
