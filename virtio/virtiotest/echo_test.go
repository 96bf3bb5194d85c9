package virtiotest_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// echo is a minimal device written against the virtio API the way a real
// one should be: queue 0 carries buffers from the driver, queue 1 receives
// them back. It shows the notification loop, Undo when the receive side is
// short of buffers, interrupt decisions, ErrBroken handling, and a Reset
// that wakes goroutines blocked on kick files without closing them.
type echo struct {
	mu      sync.Mutex
	acked   uint64
	queues  []virtio.Queue
	irq     virtio.Interrupt
	stop    chan struct{}
	wg      sync.WaitGroup
	config  [8]byte
	running bool
}

func (e *echo) Type() virtio.DeviceID      { return virtio.DeviceID(0xec) }
func (e *echo) Features() uint64           { return virtio.CommonFeatures }
func (e *echo) AckFeatures(f uint64) error { e.acked = f; return nil }
func (e *echo) QueueMaxSizes() []uint16    { return []uint16{64, 64} }
func (e *echo) ConfigSize() int            { return len(e.config) }
func (e *echo) WriteConfig(uint64, []byte) {}
func (e *echo) ReadConfig(off uint64, p []byte) {
	clear(p)
	if off < uint64(len(e.config)) {
		copy(p, e.config[off:])
	}
}

func (e *echo) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if queues[0].Ring == nil || queues[1].Ring == nil {
		return errors.New("echo needs both queues")
	}
	e.queues, e.irq, e.stop, e.running = queues, irq, make(chan struct{}), true
	wake := make(chan struct{}, 1)
	for _, q := range queues {
		q.Kick.SetReadDeadline(time.Time{}) // a previous Reset may have set one
		e.wg.Add(1)
		go func() { // drain this queue's kicks into one wake-up channel
			defer e.wg.Done()
			var b [8]byte
			for {
				if _, err := q.Kick.Read(b[:]); err != nil {
					return // deadline set by Reset, or closed
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	e.wg.Add(1)
	go e.run(wake)
	return nil
}

func (e *echo) run(wake chan struct{}) {
	defer e.wg.Done()
	tx, rx := e.queues[0].Ring, e.queues[1].Ring
	var in queue.Chain
	for {
		tx.DisableNotifications()
		starved, err := e.pump(tx, rx, &in)
		if err != nil {
			e.irq.NeedsReset()
			<-e.stop
			return
		}
		// Re-arm and re-check. Short of receive buffers, wait for the
		// driver to add some (tx work is pending anyway); otherwise wait
		// for tx work.
		if starved {
			if rx.EnableNotifications() {
				continue
			}
		} else if tx.EnableNotifications() {
			continue
		}
		select {
		case <-wake:
		case <-e.stop:
			return
		}
	}
}

// pump moves every pending tx chain into an rx chain. It reports whether
// it stopped for lack of receive buffers.
func (e *echo) pump(tx, rx *queue.Queue, in *queue.Chain) (starved bool, err error) {
	defer func() {
		for i, q := range []*queue.Queue{tx, rx} {
			if q.Publish() && q.NeedsInterrupt() {
				e.irq.Signal(i)
			}
		}
	}()
	for {
		ok, err := tx.Pop(in)
		if errors.Is(err, queue.ErrMalformedChain) {
			continue // already completed with len 0
		}
		if err != nil {
			return false, err
		}
		if !ok {
			return false, nil
		}
		var out *queue.Chain
		for {
			out, err = rx.PopCached()
			if !errors.Is(err, queue.ErrMalformedChain) {
				break
			}
		}
		if err != nil {
			return false, err
		}
		if out == nil {
			tx.Undo(1) // no receive buffer: retry when the driver adds one
			return true, nil
		}
		n := 0
		for _, seg := range in.Readable {
			n += out.WriteAt(seg, uint64(n))
		}
		tx.Push(in.Head, 0)
		rx.Push(out.Head, uint32(n))
	}
}

func (e *echo) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return
	}
	close(e.stop)
	for _, q := range e.queues {
		q.Kick.SetReadDeadline(time.Now()) // wake the readers; the transport owns the file
	}
	e.wg.Wait()
	e.queues, e.irq, e.acked, e.running = nil, nil, 0, false
}

func TestEchoDeviceThroughHarness(t *testing.T) {
	for _, acked := range []uint64{
		virtio.FeatureVersion1.Mask(),
		virtio.CommonFeatures,
	} {
		t.Run(fmt.Sprintf("features-%#x", acked), func(t *testing.T) {
			dev := &echo{}
			h := virtiotest.MustActivate(t, dev, acked, virtiotest.Options{})
			txd, rxd := h.Drivers[0], h.Drivers[1]
			const total = 300
			got := 0
			for i := range total {
				msg := []byte(fmt.Sprintf("message %d", i))
				if i%2 == 0 || !virtio.Has(h.Negotiated, virtio.FeatureRingIndirectDesc) {
					rxd.Add(qt.W(64))
				} else {
					rxd.AddIndirect(qt.W(32), qt.W(32))
				}
				h.Kick(1)
				if _, err := txd.Add(qt.R(msg[:4]), qt.R(msg[4:])); err != nil {
					t.Fatal(err)
				}
				h.Kick(0)
				rxd.EnableInterrupts()
				if !h.IRQ.Wait(5*time.Second, func() bool { return rxd.PendingUsed() > 0 }) {
					t.Fatalf("no echo for %q", msg)
				}
				for _, u := range rxd.AllUsed() {
					if w := rxd.Written(u); !bytes.Equal(w, []byte(fmt.Sprintf("message %d", got))) {
						t.Fatalf("echo %d = %q", got, w)
					}
					got++
				}
				txd.AllUsed()
			}
			if h.IRQ.Count(1) == 0 {
				t.Fatal("no rx interrupt recorded")
			}
			if got != total {
				t.Fatalf("%d echoes", got)
			}
		})
	}
}

func TestHarnessReportsBrokenQueue(t *testing.T) {
	h := virtiotest.MustActivate(t, &echo{}, virtio.CommonFeatures, virtiotest.Options{})
	h.Drivers[0].SetAvailIdx(1000) // more than the queue size ahead
	h.ForceKick(0)
	if !h.IRQ.Wait(5*time.Second, h.IRQ.NeedsResetRequested) {
		t.Fatal("device did not ask for a reset")
	}
	h.Close()
	h.Close()
}

func TestHarnessRejects(t *testing.T) {
	if _, err := virtiotest.Activate(&echo{}, 0, virtiotest.Options{}); err == nil {
		t.Fatal("accepted a driver without VERSION_1")
	}
	if _, err := virtiotest.Activate(&echo{}, virtio.FeatureVersion1.Mask()|1<<3, virtiotest.Options{}); err == nil {
		t.Fatal("accepted a feature the device did not offer")
	}
	if _, err := virtiotest.Activate(&echo{}, virtio.FeatureVersion1.Mask(), virtiotest.Options{Enabled: []bool{true}}); err == nil {
		t.Fatal("Activate error not reported")
	}
}
