package virtio_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// kitDev is a whole device written against the kit only: two queues, a
// lane on each (queue 1 optional), counters named once. Each chain is
// completed with used length = its writable length.
type kitDev struct {
	virtio.FeatureSet
	engines virtio.Engines
	eng     [2]virtio.Engine
	h       [2]kitHandler
	stats   virtio.Tally[kitStats, int]
	woken   atomic.Int32 // Stop's wake calls
}

type kitStats struct{ Chains, Malformed, Interrupts uint64 }

const (
	cChains = iota
	cMalformed
	cInterrupts
)

var kitNames = []virtio.Named[kitStats]{
	cChains:     virtio.Name("chains", "chains", func(s *kitStats) *uint64 { return &s.Chains }),
	cMalformed:  virtio.Name("malformed", "malformed", func(s *kitStats) *uint64 { return &s.Malformed }),
	cInterrupts: virtio.Name("interrupts", "interrupts", func(s *kitStats) *uint64 { return &s.Interrupts }),
}

type kitHandler struct {
	virtio.ChainsOnly
	d *kitDev
}

func (h *kitHandler) Chain(c *queue.Chain) virtio.Result {
	h.d.stats.Inc(cChains)
	return virtio.Result{Do: virtio.Done, Used: c.WriteLen}
}

func (h *kitHandler) Event(e virtio.Event) { h.d.stats.Event(e) }

func newKitDev() *kitDev {
	d := &kitDev{}
	d.OfferFeatures("virtio-kit", virtio.CommonFeatures)
	for i := range d.h {
		d.h[i].d = d
	}
	d.engines.Init("virtio-kit", 2, &d.FeatureSet,
		virtio.Lane{Engine: &d.eng[0], Handler: &d.h[0], Queue: 0, Name: "first", Batch: 4},
		virtio.Lane{Engine: &d.eng[1], Handler: &d.h[1], Queue: 1, Name: "second"})
	d.stats.Init(kitNames, map[virtio.Event]int{virtio.EventMalformed: cMalformed, virtio.EventInterrupt: cInterrupts})
	return d
}

func (d *kitDev) Type() virtio.DeviceID              { return 0x7f }
func (d *kitDev) QueueMaxSizes() []uint16            { return []uint16{8, 8} }
func (d *kitDev) ConfigSize() int                    { return 4 }
func (d *kitDev) ReadConfig(off uint64, p []byte)    { virtio.CopyConfig(p, off, []byte{1, 2, 3, 4}) }
func (d *kitDev) WriteConfig(off uint64, p []byte)   {}
func (d *kitDev) EngineStates() []virtio.EngineState { return d.engines.States() }

func (d *kitDev) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	if queues[1].Ring == nil {
		return d.engines.Start(queues, irq, 0)
	}
	return d.engines.Start(queues, irq)
}

func (d *kitDev) Reset() { d.engines.Reset(func(time.Time) { d.woken.Add(1) }) }

var _ virtio.Device = (*kitDev)(nil)

// TestKitDevice activates the kit device through virtiotest, serves
// chains on both lanes' goroutines, and resets it: features, counters,
// dump states and the wake callback behave as documented.
func TestKitDevice(t *testing.T) {
	d := newKitDev()
	h := virtiotest.MustActivate(t, d, virtio.CommonFeatures, virtiotest.Options{})
	if d.Negotiated() != virtio.CommonFeatures || !d.engines.Running() {
		t.Fatalf("negotiated %#x running %v", d.Negotiated(), d.engines.Running())
	}
	for q := range 2 {
		for range 5 {
			if _, err := h.Drivers[q].Add(qt.W(16)); err != nil {
				t.Fatal(err)
			}
		}
		h.Kick(q)
	}
	virtiotest.WaitUntil(t, "ten chains", func() bool { return d.stats.Load(cChains) == 10 })
	for q := range 2 {
		virtiotest.WaitUntil(t, "used chains", func() bool { return len(h.Drivers[q].AllUsed()) > 0 || h.Drivers[q].InFlight() == 0 })
	}
	st := d.EngineStates()
	if len(st) != 2 || st[0].Name != "first" || st[1].Name != "second" || st[1].Queue != 1 {
		t.Fatalf("states %+v", st)
	}
	h.Close()
	if d.Negotiated() != 0 || d.engines.Running() || d.woken.Load() != 2 {
		t.Fatalf("after Reset: negotiated %#x running %v woken %d", d.Negotiated(), d.engines.Running(), d.woken.Load())
	}
	for _, s := range d.EngineStates() {
		if s.Activity != virtio.ActivityStopped {
			t.Fatalf("after Reset: %+v", s)
		}
	}
	if s := d.stats.Stats(); s.Chains != 10 || s.Interrupts == 0 || s.Malformed != 0 {
		t.Fatalf("stats %+v", s)
	}
	if d.engines.Stop(nil) {
		t.Fatal("Stop on a stopped device reported running")
	}
}

// TestKitStartRefuses: Start's checks name the device, and a refused
// Start leaves nothing running.
func TestKitStartRefuses(t *testing.T) {
	d := newKitDev()
	irq := virtiotest.NewInterrupt(2)
	if err := d.engines.Start(make([]virtio.Queue, 1), irq); err == nil || err.Error() != "virtio-kit: activated with 1 queues, want 2" {
		t.Fatalf("one queue: %v", err)
	}
	if err := d.engines.Start(make([]virtio.Queue, 2), nil); err == nil {
		t.Fatal("started without an Interrupt")
	}
	if err := d.engines.Start(make([]virtio.Queue, 2), irq); err == nil || err.Error() != "virtio-kit: queue 0 is not enabled" {
		t.Fatalf("disabled queue: %v", err)
	}
	// Queue 1 disabled, lane 1 not started: accepted.
	h := virtiotest.MustActivate(t, d, virtio.CommonFeatures, virtiotest.Options{Enabled: []bool{true, false}})
	if err := d.Activate(nil, make([]virtio.Queue, 2), irq); err == nil || !strings.Contains(err.Error(), "already active") {
		t.Fatalf("second Activate: %v", err)
	}
	h.Close()
	if !d.engines.Close() || d.engines.Close() || !d.engines.Closed() {
		t.Fatal("Close did not report the first close only")
	}
	if err := d.engines.Check(make([]virtio.Queue, 2), irq); err == nil || err.Error() != "virtio-kit: device closed" {
		t.Fatalf("after Close: %v", err)
	}
}

// TestKitBind drives a lane with Engine.Step on the test's goroutine;
// Stop ends the binding like an activation.
func TestKitBind(t *testing.T) {
	d := newKitDev()
	drvs, queues, irq := virtiotest.SyncQueues(t, d, virtio.CommonFeatures, qt.Config{Size: 8}, qt.Config{})
	if err := d.engines.Bind(queues, irq); err == nil {
		t.Fatal("bound a lane to a queue without a ring")
	}
	if err := d.engines.Bind(queues, irq, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		drvs[0].Add(qt.W(8))
	}
	drvs[0].Kick()
	virtiotest.NoAllocs(t, "kit lane", 3, func() int {
		d.eng[0].Step()
		return virtiotest.Recycle(drvs[0])
	})
	select {
	case <-d.engines.Done():
		t.Fatal("Done closed while bound")
	default:
	}
	if r := d.engines.Poll(false); r.Do != virtio.WaitBackend || r.Activity != virtio.ActivityWaitReadable {
		t.Fatalf("Poll(false) = %+v", r)
	}
	if r := d.engines.Poll(true); r.Do != virtio.Pop {
		t.Fatalf("Poll(true) = %+v", r)
	}
	token := make(chan struct{}, 1)
	token <- struct{}{}
	d.engines.Await(token) // returns on the token
	if !d.engines.Stop(nil) || !d.engines.Stopping() {
		t.Fatal("Stop after Bind")
	}
	<-d.engines.Done()
	if r := d.engines.Poll(true); r.Do != virtio.Stop {
		t.Fatalf("Poll after Stop = %+v", r)
	}
	d.engines.Await(token) // returns on Stop: the token is gone
}

func TestFeatureSet(t *testing.T) {
	var f virtio.FeatureSet
	f.OfferFeatures("virtio-x", virtio.CommonFeatures|1)
	if err := f.AckFeatures(virtio.CommonFeatures | 1); err != nil || f.Negotiated() != virtio.CommonFeatures|1 {
		t.Fatalf("accept: %v %#x", err, f.Negotiated())
	}
	err := f.AckFeatures(virtio.CommonFeatures | 6)
	if err == nil || err.Error() != "virtio-x: features 0x6 were not offered" || f.Negotiated() != virtio.CommonFeatures|1 {
		t.Fatalf("refuse: %v, negotiated %#x", err, f.Negotiated())
	}
	if f.Features() != virtio.CommonFeatures|1 {
		t.Fatal("Features")
	}
	f.ClearFeatures()
	if f.Negotiated() != 0 {
		t.Fatal("ClearFeatures")
	}
}

func TestQueueSize(t *testing.T) {
	for _, c := range []struct {
		qs, want uint16
		ok       bool
	}{{0, 256, true}, {4, 4, true}, {queue.MaxSize, queue.MaxSize, true}, {2, 0, false}, {6, 0, false}, {3, 0, false}} {
		got, err := virtio.QueueSize("virtio-x", c.qs, 256)
		if got != c.want || (err == nil) != c.ok || (err != nil && !strings.HasPrefix(err.Error(), "virtio-x: queue size")) {
			t.Errorf("QueueSize(%d) = %d, %v", c.qs, got, err)
		}
	}
}

func TestCopyConfig(t *testing.T) {
	p := []byte{9, 9, 9, 9}
	virtio.CopyConfig(p, 2, []byte{1, 2, 3, 4})
	if string(p) != "\x03\x04\x00\x00" {
		t.Fatalf("inside: %v", p)
	}
	virtio.CopyConfig(p, 1<<63, []byte{1, 2})
	if string(p) != "\x00\x00\x00\x00" {
		t.Fatalf("outside: %v", p)
	}
}

// TestTally: Init's event table counts only the mapped events, and a
// table that does not fit panics at Init.
func TestTally(t *testing.T) {
	var tl virtio.Tally[kitStats, int]
	tl.Init(kitNames, map[virtio.Event]int{virtio.EventInterrupt: cInterrupts})
	tl.Event(virtio.EventInterrupt)
	tl.Event(virtio.EventMalformed)
	tl.Event(virtio.Event(200))
	tl.Add(cChains, 5)
	if s := tl.Stats(); s != (kitStats{Chains: 5, Interrupts: 1}) {
		t.Fatalf("stats %+v", s)
	}
	if n := testing.AllocsPerRun(100, func() { tl.Inc(cChains); tl.Event(virtio.EventInterrupt) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	if k := virtio.Key("chains", func(s *kitStats) *uint64 { return &s.Chains }); k.Name != "chains" || k.Metric != "chains" {
		t.Fatalf("Key: %+v", k)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an event mapped outside the names did not panic")
		}
	}()
	var bad virtio.Tally[kitStats, int]
	bad.Init(kitNames, map[virtio.Event]int{virtio.EventBroken: 3})
}
