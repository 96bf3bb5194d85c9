package virtio_test

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// The engine's kick wait makes no system call before it parks (see
// kickReader.read): these tests make sure no kick is lost for it, on the
// two kinds of kick file the transports hand an engine.

// kickHook is echo with a hook at EventKickWait: called after the engine
// enabled notifications and found the ring empty, just before it waits.
type kickHook struct {
	echo
	hook func()
}

func (h *kickHook) Event(e virtio.Event) {
	h.echo.Event(e)
	if e == virtio.EventKickWait && h.hook != nil {
		h.hook()
	}
}

// newKickRig is newRig with a kick file of the given kind ("pipe": 8
// bytes per kick, or "eventfd", kicked before the engine binds it when
// early is set) and a function that writes one kick.
func newKickRig(t *testing.T, h virtio.Handler, features uint64, kind string, early bool) (*rig, func()) {
	t.Helper()
	r := newRig(t, h, features, 1<<20)
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	var kick func()
	switch kind {
	case "pipe":
		kick = func() { r.kw.Write(one) }
	case "eventfd":
		r.kr.Close()
		r.kw.Close()
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		kick = func() { unix.Write(efd, one) }
		if early {
			kick() // readable when os.NewFile registers it: the poller reports it once
		}
		r.kr = os.NewFile(uintptr(efd), "kick-eventfd")
		r.kw = r.kr // close closes it twice: the second is a no-op
		r.eng.Bind(virtio.EngineConfig{Handler: h, Queue: virtio.Queue{Ring: r.q, Kick: r.kr}, IRQ: r.irq,
			Stopping: &r.stopping, Stop: r.stop, Batch: 1 << 20})
	}
	return r, kick
}

// add reclaims used buffers and makes one writable buffer available;
// it reports whether the driver would notify. Any goroutine may call it.
func (r *rig) add(t *testing.T) bool {
	for {
		if _, ok := r.drv.Used(); !ok {
			break
		}
	}
	if _, err := r.drv.Add(qt.W(8)); err != nil {
		t.Error(err)
		return false
	}
	return r.drv.Kick()
}

// TestEngineKickEdgeTakenBeforeWait: the driver adds a buffer and kicks
// just before the engine waits (after its ring re-check), and the
// runtime's poller takes the kick's epoll edge before the wait begins
// (the hook sleeps, so the scheduler polls). RawConn.Read forgets that
// edge, so an engine that parked without checking again (the ring, or
// the kick file) would sleep with the buffer available. Then a reset
// must end an engine parked in the wait.
func TestEngineKickEdgeTakenBeforeWait(t *testing.T) {
	for _, kind := range []string{"eventfd", "pipe"} {
		for _, ft := range []struct {
			name     string
			features uint64
		}{{"flags", 0}, {"event-idx", qt.FeatureEventIdx}} {
			t.Run(kind+"/"+ft.name, func(t *testing.T) {
				const rounds = 20
				var left atomic.Int32
				left.Store(rounds)
				h := &kickHook{}
				r, kick := newKickRig(t, h, ft.features, kind, false)
				h.hook = func() {
					if left.Add(-1) < 0 {
						return
					}
					if !r.add(t) {
						t.Error("the driver would not kick after the engine enabled notifications")
					}
					kick()
					time.Sleep(2 * time.Millisecond)
				}
				r.start()
				waitFor(t, func() bool { return r.drv.UsedIdx() == rounds })
				waitFor(t, func() bool { return r.eng.Status.Load().Activity == virtio.ActivityWaitKick })
				r.close(t)
			})
		}
	}
}

// TestEngineKickFreshFile: an eventfd kicked before the engine bound it
// (its epoll registration reports it readable: one wake with nothing
// new) and then kicked once per buffer, one P: every buffer is served,
// and the engine still parks between them.
func TestEngineKickFreshFile(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	h := &kickHook{}
	r, kick := newKickRig(t, h, qt.FeatureEventIdx, "eventfd", true)
	r.add(t) // before Run: its first Step finds it
	r.start()
	waitFor(t, func() bool { return r.drv.UsedIdx() == 1 })
	for i := uint16(2); i < 50; i++ {
		waitFor(t, func() bool { return r.eng.Status.Load().Activity == virtio.ActivityWaitKick })
		if r.add(t) {
			kick()
		}
		waitFor(t, func() bool { return r.drv.UsedIdx() == i })
	}
	r.close(t)
	if h.kickWaits < 49 {
		t.Errorf("%d kick waits for 49 buffers kicked one at a time", h.kickWaits)
	}
}
