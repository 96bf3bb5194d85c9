package blk

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// sparseImage makes an image of size bytes that takes no disk space.
func sparseImage(tb testing.TB, size int64) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "sparse.img")
	f, err := os.Create(p)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestHugeRequestYields: one read of almost 4 GiB into 1022 descriptors
// naming the same 4 MiB of guest memory (a hostile driver needs no more)
// is abandoned, IOERR, once a reset begins or ReplaceImage waits for it.
// Moved in one go it held the engine, and the Reset or ReplaceImage
// waiting for it, for 12 s.
func TestHugeRequestYields(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, d *Device, h *virtiotest.Harness)
	}{
		{"reset", func(t *testing.T, d *Device, h *virtiotest.Harness) { h.Close() }},
		{"replace", func(t *testing.T, d *Device, h *virtiotest.Harness) {
			if err := d.ReplaceImage(sparseImage(t, 4<<30)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open(sparseImage(t, 4<<30), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			h := virtiotest.MustActivate(t, d, fIndir|fCommon, virtiotest.Options{DataSize: 8 << 20})
			drv := h.Drivers[0]
			const seg = 4 << 20
			a := drv.Alloc(seg)
			bufs := []qt.Buf{qt.R(hdr(TypeIn, 0))}
			for range 1022 {
				bufs = append(bufs, qt.Buf{Addr: a, Len: seg, Write: true})
			}
			if _, err := drv.AddIndirect(append(bufs, qt.W(1))...); err != nil {
				t.Fatal(err)
			}
			h.Kick(0)
			waitUntil(t, "the engine serving the request", func() bool {
				return d.EngineStates()[0].Activity == virtio.ActivityRunning
			})
			time.Sleep(20 * time.Millisecond) // into the transfer
			start := time.Now()
			tc.cut(t, d, h)
			took := time.Since(start)
			waitUntil(t, "the request answered", func() bool { return d.Stats().IOErrors+d.Stats().ReadOps > 0 })
			s := d.Stats()
			if took > 2*time.Second || s.IOErrors != 1 || s.ReadOps != 0 || s.HostErrors != 0 {
				t.Fatalf("%s took %v; stats %+v (want the read abandoned: 1 IOERR, no read, no host error)", tc.name, took, s)
			}
		})
	}
}
