package queue_test

// Packed-ring notification and interrupt suppression tests (virtio 1.2
// §2.8.10): the device's and the driver's event suppression structures.

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

func TestPackedDeviceEvent(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		t.Run(fmt.Sprint("event_idx=", eventIdx), func(t *testing.T) {
			var f uint64
			if eventIdx {
				f = qt.FeatureEventIdx
			}
			d, q := packedPair(t, qt.Config{Size: 4, Features: f})
			q.DisableNotifications()
			if fl, _ := d.DeviceEvent(); fl != qt.EventDisable {
				t.Fatalf("disabled: flags %d", fl)
			}
			d.Add(qt.R([]byte("x")))
			if d.Kick() {
				t.Fatal("driver kicks although the device disabled notifications")
			}
			if !q.EnableNotifications() {
				t.Fatal("EnableNotifications missed the buffer added while disabled")
			}
			fl, off := d.DeviceEvent()
			want := qt.EventEnable
			if eventIdx {
				want = qt.EventDesc
				if off != q.NextAvail() {
					t.Fatalf("off_wrap %#x, want next avail %#x", off, q.NextAvail())
				}
			}
			if fl != want {
				t.Fatalf("enabled: flags %d, want %d", fl, want)
			}
			var c queue.Chain
			mustPop(t, q, &c)
			if q.EnableNotifications() {
				t.Fatal("EnableNotifications reports work on an empty ring")
			}
			d.Add(qt.R([]byte("y")))
			if !d.Kick() {
				t.Fatal("no kick although the device asked for one")
			}
		})
	}
}

func TestPackedDriverEvent(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 5, Features: qt.FeatureEventIdx})
	var c queue.Chain
	cycle := func() bool {
		t.Helper()
		packedUseOne(t, d, q, &c)
		return q.NeedsInterrupt()
	}
	d.SetDriverEvent(qt.EventEnable, 0)
	if !cycle() {
		t.Fatal("ENABLE: no interrupt")
	}
	d.DisableInterrupts()
	if cycle() {
		t.Fatal("DISABLE: interrupt")
	}
	if q.NeedsInterrupt() {
		t.Fatal("interrupt with nothing published")
	}
	// DESC: interrupt when the used position passes off_wrap. The device
	// is at slot 2 (wrap 1); ask for slot 1 of the next lap (wrap 0),
	// the fifth used descriptor from here (2, 3, 4, 0', 1').
	d.SetDriverEvent(qt.EventDesc, 0x0001)
	for i := range 4 {
		if cycle() {
			t.Fatalf("DESC: interrupt after %d of 5", i+1)
		}
	}
	if !cycle() {
		t.Fatal("DESC: no interrupt when the used position passed off_wrap across the wrap")
	}
	if !d.EnableInterrupts() && !cycle() {
		t.Fatal("EnableInterrupts (DESC at next used): no interrupt")
	}
	// A batch that jumps over the event in one Publish still signals.
	d.SetDriverEvent(qt.EventDesc, advancePos(q.NextUsed(), 1, 5))
	var ids []uint16
	for range 3 {
		id, _ := d.Add(qt.W(4))
		ids = append(ids, id)
	}
	d.Kick()
	for range ids {
		mustPop(t, q, &c)
		q.Push(c.Head, 0)
	}
	q.Publish()
	if !q.NeedsInterrupt() {
		t.Fatal("batch over off_wrap: no interrupt")
	}
}

// packedUseOne has the driver add one buffer and kick, the device use
// and publish it, and the driver take it back (no decision).
func packedUseOne(t *testing.T, d *qt.PackedDriver, q *queue.Queue, c *queue.Chain) {
	t.Helper()
	if _, err := d.Add(qt.W(4)); err != nil {
		t.Fatal(err)
	}
	d.Kick()
	mustPop(t, q, c)
	q.Push(c.Head, 1)
	q.Publish()
	d.AllUsed()
}

func advancePos(p, n, size uint16) uint16 {
	for range n {
		i, w := p&0x7fff+1, p&0x8000
		if i == size {
			i, w = 0, w^0x8000
		}
		p = i | w
	}
	return p
}

func TestPackedRingState(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 5, Features: qt.FeatureEventIdx})
	d.SetDriverEvent(qt.EventDesc, 0x8003)
	q.EnableNotifications()
	s := q.RingState()
	if !s.Packed || s.AvailFlags != qt.EventDesc || s.UsedEvent != 0x8003 || s.UsedFlags != qt.EventDesc || s.AvailEvent != 0x8000 {
		t.Fatalf("ring state %+v", s)
	}
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("q", "ring", s)
	if got := b.String(); !strings.Contains(got, "ring.packed=true") || !strings.Contains(got, "ring.driver_off_wrap=3/w1") || strings.Contains(got, "avail_idx") {
		t.Fatalf("log line %q", got)
	}
}

func TestPackedDist(t *testing.T) {
	for _, tc := range []struct {
		from, to, size uint16
		want           uint32
	}{
		{0x8002, 0x8002, 5, 0},
		{0x8002, 0x8004, 5, 2},
		{0x8002, 0x0001, 5, 4}, // across the wrap: 2, 3, 4, 0', 1'
		{0x0001, 0x8000, 5, 4}, // and back to wrap counter 1
		{0x8002, 0x8001, 5, 9}, // just behind: a whole lap of both wrap values
		{0x8000, 0x7fff, 5, 2}, // off_wrap slot past the ring: 32767 mod 10 = 7, from 5
		{0x8000, 0x0000, 32768, 32768},
		{0xffff, 0x7fff, 32768, 32768},
	} {
		if got := queue.PackedDist(tc.from, tc.to, tc.size); got != tc.want {
			t.Errorf("packedDist(%#x, %#x, %d) = %d, want %d", tc.from, tc.to, tc.size, got, tc.want)
		}
	}
}

func TestPackedDelayedCallbacks(t *testing.T) {
	const size, segs = 256, 18
	d, q := packedPair(t, qt.Config{Size: size, Features: qt.FeatureEventIdx, DataSize: 16 << 20})
	rnd := uint32(1)
	next := func(n uint32) uint32 { rnd = rnd*1103515245 + 12345; return (rnd >> 16) % n }
	bufs := make([]qt.Buf, segs)
	for i := range bufs {
		bufs[i] = qt.Buf{Len: 64}
	}
	var c queue.Chain
	for round := range 300 {
		for d.FreeSlots() >= segs {
			if _, err := d.Add(bufs...); err != nil {
				t.Fatal(err)
			}
		}
		d.Kick()
		inflight := uint16(size - d.FreeSlots())
		ev := advancePos(d.UsedPos(), inflight*3/4, size)
		d.SetDriverEvent(qt.EventDesc, ev)
		pending := int(inflight / segs)
		evDone := int(inflight*3/4)/segs + 1 // the chain whose slots hold ev
		done, irqAt := 0, -1
		for done < pending {
			k := min(int(next(4))+1, pending-done)
			for range k {
				mustPop(t, q, &c)
				q.Push(c.Head, 0)
			}
			done += k
			q.Publish()
			if q.NeedsInterrupt() && irqAt < 0 {
				irqAt = done
			}
		}
		if irqAt < 0 {
			t.Fatalf("round %d: no interrupt for off_wrap %#x (%d chains in flight)", round, ev, pending)
		}
		if irqAt < evDone {
			t.Fatalf("round %d: interrupt after %d chains, off_wrap %#x is in chain %d", round, irqAt, ev, evDone)
		}
		if n := len(d.AllUsed()); n != pending {
			t.Fatalf("round %d: %d used, want %d", round, n, pending)
		}
		// The driver's next batch starts with interrupts off (its napi
		// poll disabled them): the device must not signal.
		d.DisableInterrupts()
	}
}

func TestPackedInterruptCountsPublishedOnly(t *testing.T) {
	d, q := packedPair(t, qt.Config{Size: 8, Features: qt.FeatureEventIdx})
	d.EnableInterrupts() // DESC at the next used position
	d.Add(qt.W(4))
	d.Kick()
	var c queue.Chain
	mustPop(t, q, &c)
	q.Push(c.Head, 1)
	if q.NeedsInterrupt() {
		t.Fatal("interrupt for an element not published")
	}
	q.Publish()
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt for the element the driver asked about")
	}
}
