//go:build !race

// The race detector would (rightly) report the hostile driver's plain
// writes racing the walk: that race is what this file tests.

package queue_test

import (
	"encoding/binary"
	"errors"
	"math/rand"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// hostileDesc is a random descriptor aimed at the data area most of the
// time (so chains are often well formed), else anywhere: outside RAM,
// wrapping 2^64, over the indirect tables, with any flags and next.
func hostileDesc(r *rand.Rand, size uint16, data, dataLen, tables uint64) qt.Desc {
	d := qt.Desc{Flags: uint16(r.Intn(8)), Next: uint16(r.Intn(int(size) + 2))}
	switch r.Intn(8) {
	case 0:
		d.Addr, d.Len = ^uint64(0)-uint64(r.Intn(64)), uint32(r.Intn(256))
	case 1:
		d.Addr, d.Len = data+dataLen-uint64(r.Intn(64)), uint32(r.Intn(256))
	case 2:
		d.Addr, d.Len = tables, 16*uint32(r.Intn(300)) // an indirect table, or too long
	case 3:
		d.Addr, d.Len = data+uint64(r.Intn(int(dataLen))), ^uint32(0)-uint32(r.Intn(4))
	default:
		d.Addr, d.Len = data+uint64(r.Intn(1024)), uint32(r.Intn(64)) // the same bytes, again and again
	}
	if r.Intn(4) == 0 {
		d.Flags &^= qt.DescIndirect
	}
	return d
}

// putDesc writes d at ram[off:] with plain stores, as a guest vCPU would.
func putDesc(ram []byte, off uint64, d qt.Desc) {
	b := ram[off : off+16]
	binary.LittleEndian.PutUint64(b[0:], d.Addr)
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
}

// checkIovecs asserts that an iovec array matches the chain's segments
// one for one: no stale entry from an earlier, longer chain.
func checkIovecs(t *testing.T, iov []unix.Iovec, segs [][]byte) {
	t.Helper()
	if len(iov) != len(segs) {
		t.Fatalf("%d iovecs for %d segments", len(iov), len(segs))
	}
	for i, v := range iov {
		if v.Base != unsafe.SliceData(segs[i]) || uint64(v.Len) != uint64(len(segs[i])) {
			t.Fatalf("iovec %d does not match its segment", i)
		}
	}
}

// TestHostileDriverRewritesRingsDuringWalk lets a driver goroutine
// rewrite descriptors, indirect tables, avail ring entries and avail.idx
// with plain stores, without pause, while the device pops (Pop and
// PopCached), gives chains back with Undo, pushes and publishes. Each
// value the walk checks must be the value it uses (read once): any
// chain it accepts must lie inside RAM, its lengths must add up, and it
// must have walked no more than its TTL, whatever the guest wrote
// between the reads. A broken queue is reset and re-enabled, as a
// transport would after DEVICE_NEEDS_RESET. Catching a double fetch is
// a matter of timing, so a failure here may not repeat: a walk made to
// read descriptor 0's length twice failed 4 runs in 6.
func TestHostileDriverRewritesRingsDuringWalk(t *testing.T) {
	const size = 16
	d := qt.MustNew(t, qt.Config{Size: size, Features: allRing, DataSize: 1 << 16})
	q := d.MustQueue(t)
	cfg := d.Config()
	base := cfg.MemBase
	tables := d.Alloc(4096)
	data := d.Alloc(1 << 15)
	ram := d.RAM

	r := rand.New(rand.NewSource(1))
	for i := range uint64(size) {
		putDesc(ram, cfg.DescAddr-base+16*i, hostileDesc(r, size, data, 1<<15, tables))
	}
	putDesc(ram, cfg.DescAddr-base, qt.Desc{Addr: tables, Len: 16, Flags: qt.DescIndirect})
	var stop atomic.Bool
	var next atomic.Uint32 // the device's next avail index, for the driver's avail.idx
	done := make(chan struct{})
	go func() { // the hostile driver
		defer close(done)
		r := rand.New(rand.NewSource(2))
		for !stop.Load() {
			// Descriptor 0 points at the indirect tables, its length
			// flipping between 1 and 256 entries all the time: a walk
			// that read it twice would index past the table it checked.
			binary.LittleEndian.PutUint32(ram[cfg.DescAddr-base+8:], 16<<(8*r.Intn(2)))
			switch k := r.Intn(16); {
			case k < 6:
				putDesc(ram, cfg.DescAddr-base+16*uint64(1+r.Intn(size-1)), hostileDesc(r, size, data, 1<<15, tables))
			case k < 10:
				putDesc(ram, tables-base+16*uint64(r.Intn(256)), hostileDesc(r, size, data, 1<<15, tables))
			case k < 12:
				slot := cfg.AvailAddr - base + 4 + 2*uint64(r.Intn(size))
				binary.LittleEndian.PutUint16(ram[slot:], uint16(r.Intn(size+2)*r.Intn(2))) // head 0 half the time
			default: // up to size past what the device popped; rarely more
				idx := uint16(next.Load()) + uint16(r.Intn(size+1))
				if r.Intn(1024) == 0 {
					idx += size
				}
				binary.LittleEndian.PutUint16(ram[cfg.AvailAddr-base+2:], idx)
			}
		}
	}()
	defer func() { stop.Store(true); <-done }()

	var own queue.Chain
	var got, bad, resets, empty int
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline) || got == 0 || bad == 0; {
		next.Store(uint32(q.NextAvail()))
		c := &own
		var err error
		if r.Intn(2) == 0 {
			c, err = q.PopCached()
		} else if ok, e := q.Pop(c); !ok {
			c, err = nil, e
		}
		switch {
		case errors.Is(err, queue.ErrMalformedChain):
			bad++
		case err == queue.ErrBroken:
			resets++
			q.Reset()
			if err := d.Configure(q); err != nil {
				t.Fatal(err)
			}
		case err != nil:
			t.Fatal(err)
		case c != nil:
			got++
			checkChain(t, c, size, queue.DefaultMaxSegments, ram)
			checkIovecs(t, c.ReadableIovecs(), c.Readable)
			checkIovecs(t, c.WritableIovecs(), c.Writable)
			if r.Intn(4) == 0 && q.Undo(1) == 1 {
				continue // not pushed: popped again, and walked again
			}
			c.WriteAt([]byte("hostile"), 0)
			q.Push(c.Head, c.WriteLen)
		default:
			empty++
			q.Publish()
			q.NeedsInterrupt()
			q.EnableNotifications()
		}
	}
	t.Logf("%d chains, %d malformed, %d resets, %d empty", got, bad, resets, empty)
}
