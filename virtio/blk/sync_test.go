package blk

import (
	"bytes"
	"sync/atomic"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// syncRig is a rig whose image syncs go through fail: each call is
// counted, and fail(call) (1 for the first) is what the sync returns
// (nil: the real fdatasync runs).
type syncRig struct {
	*rig
	calls atomic.Int32
}

func newSyncRig(t *testing.T, opts Options, acked uint64, fail func(call int32) error) *syncRig {
	t.Helper()
	s := &syncRig{rig: openRig(t, testSectors, opts)}
	// Set before the engine's goroutine starts (activate).
	s.dev.eng.syncData = func(fd int) error {
		if err := fail(s.calls.Add(1)); err != nil {
			return err
		}
		return fdatasync(fd)
	}
	s.activate(acked)
	return s
}

func noFailure(int32) error { return nil }

// write writes one sector of b at sector and returns the status.
func (r *rig) writeSector(sector uint64, b byte) byte {
	r.tb.Helper()
	return r.status(r.submit(false, qt.R(hdr(TypeOut, sector)), qt.R(bytes.Repeat([]byte{b}, SectorSize)), qt.W(1)))
}

func (r *rig) flush() byte {
	r.tb.Helper()
	return r.status(r.submit(false, qt.R(hdr(TypeFlush, 0)), qt.W(1)))
}

// TestWriteThroughWithoutFlush: a Writeback drive offers FLUSH; a driver
// that does not negotiate it was told there is no write cache, and virtio
// 1.2 §5.2.6.2 makes each completed write stable then: the device syncs
// before it completes the write. A driver that negotiates FLUSH gets the
// cache (no sync per write, one per flush), and an Unsafe drive never
// syncs.
func TestWriteThroughWithoutFlush(t *testing.T) {
	for _, tc := range []struct {
		name      string
		writeback bool
		acked     uint64
		perWrite  int32 // syncs per write
		perFlush  int32
	}{
		{"writeback, FLUSH not negotiated", true, 0, 1, 1},
		{"writeback, FLUSH negotiated", true, FeatureFlush.Mask(), 0, 1},
		{"unsafe", false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSyncRig(t, Options{Writeback: tc.writeback}, tc.acked, noFailure)
			if st := r.writeSector(3, 0x77); st != StatusOK {
				t.Fatalf("write status %d", st)
			}
			if got := r.calls.Load(); got != tc.perWrite {
				t.Fatalf("%d syncs after a write, want %d", got, tc.perWrite)
			}
			if st := r.flush(); st != StatusOK {
				t.Fatalf("flush status %d", st)
			}
			if got := r.calls.Load(); got != tc.perWrite+tc.perFlush {
				t.Fatalf("%d syncs after a write and a flush, want %d", got, tc.perWrite+tc.perFlush)
			}
			if s := r.dev.Stats(); s.WriteOps != 1 || s.HostErrors != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestSyncErrorSticks: once a sync of the image failed (EIO), the host may
// have dropped the written pages and a later fdatasync reports success for
// data that is lost, so every later flush, and every write-through
// write, is IOERR without syncing again; a new image (ReplaceImage) is
// synced again.
func TestSyncErrorSticks(t *testing.T) {
	t.Run("flush", func(t *testing.T) {
		r := newSyncRig(t, Options{Writeback: true}, FeatureFlush.Mask(), failFirst)
		r.writeSector(1, 0x11)
		for i := range 3 {
			if st := r.flush(); st != StatusIOErr {
				t.Fatalf("flush %d after a failed sync: status %d, want IOERR", i, st)
			}
		}
		if s := r.dev.Stats(); r.calls.Load() != 1 || s.HostErrors != 3 || s.IOErrors != 3 || s.Flushes != 0 {
			t.Fatalf("%d syncs, stats %+v", r.calls.Load(), s)
		}
		if err := r.dev.ReplaceImage(filled(t, "next.img", testSectors, 0)); err != nil {
			t.Fatal(err)
		}
		if st := r.flush(); st != StatusOK || r.calls.Load() != 2 {
			t.Fatalf("flush on a new image: status %d, %d syncs", st, r.calls.Load())
		}
	})
	t.Run("write-through", func(t *testing.T) {
		r := newSyncRig(t, Options{Writeback: true}, 0, failFirst)
		for i := range 2 {
			if st := r.writeSector(uint64(i), 0x22); st != StatusIOErr {
				t.Fatalf("write-through write %d: status %d, want IOERR", i, st)
			}
		}
		if st := r.flush(); st != StatusIOErr || r.calls.Load() != 1 {
			t.Fatalf("flush: status %d, %d syncs", st, r.calls.Load())
		}
	})
}
