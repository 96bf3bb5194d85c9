package netdev

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// lateBackend is parkBackend whose frames stay hidden from the next hide
// reads, as a frame the host has not sent yet: a read then finds nothing
// and ReadvOrPark parks (counted).
type lateBackend struct {
	*parkBackend
	hide  atomic.Int32
	parks atomic.Int32
}

func (b *lateBackend) TryReadv(iovs [][]byte) (int, error) {
	if b.hide.Load() > 0 {
		b.hide.Add(-1)
		return 0, unix.EAGAIN
	}
	return b.parkBackend.TryReadv(iovs)
}

func (b *lateBackend) ReadvOrPark(iovs [][]byte, idle func()) (int, bool, error) {
	n, err := b.TryReadv(iovs)
	if err != unix.EAGAIN {
		return n, false, err
	}
	idle()
	b.parks.Add(1)
	return 0, true, b.WaitReadable()
}

// TestRxBusyPoll: with a busy-poll window, frames that show up a few
// reads after the backend ran dry are delivered by the poll, with no
// park and wake-up in between: one park follows them, when the backend
// stays dry past the window. Without a window (the control) each read
// that finds nothing parks.
func TestRxBusyPoll(t *testing.T) {
	for _, c := range []struct {
		name      string
		poll      time.Duration
		wantParks int32 // between the frames' arrival and the park after them
	}{{"poll", virtio.MaxPoll, 1}, {"off", 0, 3}} {
		t.Run(c.name, func(t *testing.T) {
			be := &lateBackend{parkBackend: &parkBackend{fakeBackend: newFake()}}
			d, err := New(be, Options{SetOffload: be.SetOffload, Poll: c.poll})
			if err != nil {
				t.Fatal(err)
			}
			h := activate(t, d, fMrg, virtiotest.Options{})
			postRx(t, h, 8, 2048)
			waitUntil(t, "the first park", func() bool { return be.parks.Load() == 1 })
			// The frames are hidden from the two reads after the wake:
			// the one that finds the backend dry, then the next (the
			// poll's first, or another park).
			be.hide.Store(2)
			be.Inject(frame(2, 300, 0, 0), frame(3, 400, 0, 0))
			got := receive(t, h, 2, true)
			checkPackets(t, got, [][]byte{frame(2, 300, 0, 0), frame(3, 400, 0, 0)}, 2048, true)
			waitUntil(t, "the park after the frames", func() bool { return be.parks.Load() >= 1+c.wantParks })
			settle()
			if n := be.parks.Load() - 1; n != c.wantParks {
				t.Errorf("%d parks for the frames, want %d", n, c.wantParks)
			}
			if e := engine(d, RxQueue); (e.PollHits > 0) != (c.poll > 0) {
				t.Errorf("poll hits %d with a window of %v", e.PollHits, c.poll)
			}
			d.Reset()
		})
	}
}

// TestIRQResendRange: an interval below 0 or above MaxIRQGap is refused.
func TestIRQResendRange(t *testing.T) {
	for _, d := range []time.Duration{-1, MaxIRQGap + 1} {
		if _, err := New(newFake(), Options{IRQResend: d}); err == nil || !strings.Contains(err.Error(), "resend") {
			t.Errorf("resend %v: %v", d, err)
		}
	}
}

// TestBusyPollRange: a window below 0 or above virtio.MaxPoll is refused.
func TestBusyPollRange(t *testing.T) {
	for _, p := range []time.Duration{-1, virtio.MaxPoll + 1} {
		if _, err := New(newFake(), Options{Poll: p}); err == nil || !strings.Contains(err.Error(), "busy-poll window") {
			t.Errorf("poll %v: %v", p, err)
		}
	}
	if _, err := New(newFake(), Options{Poll: virtio.MaxPoll}); err != nil {
		t.Errorf("poll %v: %v", virtio.MaxPoll, err)
	}
}
