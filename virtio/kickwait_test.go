package virtio_test

import (
	"encoding/binary"
	"fmt"
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

// spinFor is waitFor with a shorter sleep, for tests of many rounds. (A
// sleep, not runtime.Gosched: with one P and this goroutine always
// runnable, the scheduler would poll the network only when sysmon does,
// every 10 ms.)
func spinFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// TestEngineEventfdNeverRead: an engine bound to an eventfd never reads
// it (the kicks stay in its counter) and still wakes on every later
// kick: the kernel raises an edge per write whatever the counter holds.
// Rounds alternate between a kick while the engine is parked and one
// while it may still be running (found by its ring check), with one P
// and with two. An engine that read the counter leaves it below the
// kicks made; a wait that did not wake for a kick times out.
func TestEngineEventfdNeverRead(t *testing.T) {
	for _, procs := range []int{1, 2} {
		for _, ft := range []struct {
			name     string
			features uint64
		}{{"flags", 0}, {"event-idx", qt.FeatureEventIdx}} {
			t.Run(fmt.Sprintf("procs=%d/%s", procs, ft.name), func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				const rounds = 400
				h := &kickHook{}
				r, kick := newKickRig(t, h, ft.features, "eventfd", false)
				efd := int(r.kr.Fd())
				r.start()
				kicks := 0
				for i := 1; i <= rounds; i++ {
					if i%2 == 0 {
						spinFor(t, func() bool { return r.eng.Status.Load().Activity == virtio.ActivityWaitKick })
					}
					if r.add(t) {
						kick()
						kicks++
					}
					spinFor(t, func() bool { return r.drv.UsedIdx() == uint16(i) })
				}
				spinFor(t, func() bool { return r.eng.Status.Load().Activity == virtio.ActivityWaitKick })
				var buf [8]byte
				n, err := unix.Read(efd, buf[:])
				if err != nil || n != 8 || binary.LittleEndian.Uint64(buf[:]) != uint64(kicks) {
					t.Errorf("eventfd counter %d (%d, %v) after %d kicks: the engine read it", binary.LittleEndian.Uint64(buf[:]), n, err, kicks)
				}
				if kicks < rounds/2 {
					t.Errorf("only %d kicks in %d rounds", kicks, rounds)
				}
				r.close(t)
			})
		}
	}
}

// TestEnginePipeKicksDrained: a pipe's kicks (8 bytes each) are still
// read: over many rounds the pipe never holds more than a few (an
// engine that treated it as an eventfd would let it fill and block the
// driver's kicks).
func TestEnginePipeKicksDrained(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rounds = 1000
	h := &kickHook{}
	r, kick := newKickRig(t, h, 0, "pipe", false)
	r.start()
	most := 0
	for i := 1; i <= rounds; i++ {
		waiting := i%2 == 0
		if waiting {
			spinFor(t, func() bool { return r.eng.Status.Load().Activity == virtio.ActivityWaitKick })
		}
		// In the other rounds the engine may not have enabled
		// notifications yet (it was preempted after publishing): the
		// driver need not kick, and the engine's re-check finds the
		// buffer.
		if r.add(t) {
			kick()
		} else if waiting {
			t.Fatal("the driver would not kick an engine waiting for its kick")
		}
		spinFor(t, func() bool { return r.drv.UsedIdx() == uint16(i) })
		rc, err := r.kr.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var queued int
		var qerr error
		if err := rc.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || qerr != nil {
			t.Fatal(err, qerr)
		}
		most = max(most, queued)
	}
	r.close(t)
	if most > 64*8 {
		t.Errorf("the kick pipe held up to %d bytes (%d kicks) over %d rounds: not drained", most, most/8, rounds)
	}
}
