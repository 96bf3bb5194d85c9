package vhostuser_test

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// stallDev is a one-queue device whose engine completes a chain, then
// (before publishing it: its batch is large) waits in Next for the
// reset and stops: the completion is left to Engine.exit to publish.
type stallDev struct {
	virtio.FeatureSet
	engines virtio.Engines
	eng     virtio.Engine
	h       stallHandler
}

type stallHandler struct {
	virtio.ChainsOnly
	d      *stallDev
	pushed atomic.Bool
	held   chan struct{} // Next waits for the reset, with a completion unpublished
}

func (h *stallHandler) Chain(c *queue.Chain) virtio.Result {
	h.pushed.Store(true)
	return virtio.Result{Do: virtio.Done}
}

func (h *stallHandler) Next() virtio.Result {
	if !h.pushed.Load() {
		return virtio.Result{}
	}
	select {
	case h.held <- struct{}{}:
	default:
	}
	for !h.d.engines.Stopping() {
		time.Sleep(time.Millisecond)
	}
	return virtio.Result{Do: virtio.Stop}
}

func (h *stallHandler) Event(virtio.Event) {}

func newStallDev() *stallDev {
	d := &stallDev{}
	d.h = stallHandler{d: d, held: make(chan struct{}, 1)}
	d.OfferFeatures("stall", virtio.CommonFeatures)
	d.engines.Init("stall", 1, &d.FeatureSet, virtio.Lane{Engine: &d.eng, Handler: &d.h, Name: "q", Batch: 64})
	return d
}

func (d *stallDev) Type() virtio.DeviceID      { return virtio.DeviceEntropy }
func (d *stallDev) QueueMaxSizes() []uint16    { return []uint16{8} }
func (d *stallDev) ConfigSize() int            { return 0 }
func (d *stallDev) ReadConfig(uint64, []byte)  {}
func (d *stallDev) WriteConfig(uint64, []byte) {}
func (d *stallDev) Reset()                     { d.engines.Reset(func(time.Time) {}) }
func (d *stallDev) Activate(m *mem.Memory, qs []virtio.Queue, irq virtio.Interrupt) error {
	return d.engines.Start(qs, irq)
}

// TestTruncatedMemoryAtStop: a frontend truncates its memory file while
// the device holds a completion it has not published yet, then stops
// the ring. The engine publishes that completion as it exits: the fault
// there must end only the device's service, not the backend (SIGBUS).
func TestTruncatedMemoryAtStop(t *testing.T) {
	d := newStallDev()
	srv, err := vhostuser.New(vhostuser.Config{Device: d, Log: slog.New(slog.DiscardHandler)})
	noErr(t, err)
	f, err := vut.Dial(serveOn(t, srv))
	noErr(t, err)
	defer f.Close()
	noErr(t, f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck))
	f.ReplyAck = true
	noErr(t, f.SetU64(vut.SetFeatures, virtio.CommonFeatures))
	m, err := vut.NewMemory(1<<20, 0, 0x7f0000000000)
	noErr(t, err)
	defer m.Close()
	noErr(t, f.SetMemTable(m.Region()))
	r, err := vut.NewRing(m, 8, false, false)
	noErr(t, err)
	defer r.Close()
	noErr(t, f.SetVringFD(vut.SetVringCall, 0, int(r.CallW.Fd())))
	noErr(t, f.SetState(vut.SetVringNum, 0, 8))
	desc, used, avail := r.UserAddrs()
	noErr(t, f.Do(vut.SetVringAddr, vut.VringAddr(0, 0, desc, used, avail, 0)))
	noErr(t, f.SetVringFD(vut.SetVringKick, 0, int(r.Kick.Fd())))
	_, err = r.Add(vut.Buf{Addr: m.Alloc(64, 8), Len: 64, Write: true})
	noErr(t, err)
	noErr(t, r.PublishAndNotify())
	select {
	case <-d.h.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the engine took no chain")
	}
	noErr(t, unix.Ftruncate(m.FD, 0))
	f.GetVringBase(0) // the reset: the engine exits and publishes
	if _, err := f.GetU64(vut.GetFeatures); err != nil {
		t.Logf("GET_FEATURES after the stop: %v", err)
	}
}
