package blk

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// filled writes an image of sectors sectors of byte b.
func filled(tb testing.TB, name string, sectors int, b byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, bytes.Repeat([]byte{b}, sectors*SectorSize), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// read reads n bytes at sector through the ring and returns them with
// the status.
func (r *rig) read(sector uint64, n int) ([]byte, byte) {
	r.tb.Helper()
	w := r.writable(r.submit(false, qt.R(hdr(TypeIn, sector)), qt.W(uint32(n+1))))
	return w[:len(w)-1], w[len(w)-1]
}

// TestReplaceImage: a running drive reads and writes the new image after
// ReplaceImage, the old image keeps what it had, and a file that cannot
// serve (another size, missing, a FIFO) leaves the drive on its image.
func TestReplaceImage(t *testing.T) {
	r := newRig(t, 8, Options{Writeback: true}, 0)
	if got, st := r.read(0, SectorSize); st != StatusOK || !bytes.Equal(got, pattern(SectorSize)) {
		t.Fatalf("before: status %d", st)
	}
	next := filled(t, "next.img", 8, 0xbb)
	if err := r.dev.ReplaceImage(next); err != nil {
		t.Fatal(err)
	}
	if got, st := r.read(0, SectorSize); st != StatusOK || !bytes.Equal(got, bytes.Repeat([]byte{0xbb}, SectorSize)) {
		t.Fatalf("after: status %d, % x...", st, got[:8])
	}
	r.submit(false, qt.R(append(hdr(TypeOut, 1), bytes.Repeat([]byte{0xcc}, SectorSize)...)), qt.W(1))
	if b := readFile(t, next); b[SectorSize] != 0xcc {
		t.Fatal("the write did not reach the new image")
	}
	if b := readFile(t, r.path); !bytes.Equal(b, pattern(8*SectorSize)) {
		t.Fatal("the old image changed")
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{filled(t, "small.img", 4, 0xdd), "a new image of another size is not supported by flint yet"},
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
		{fifo, "FIFO"},
	} {
		if err := r.dev.ReplaceImage(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
	if got, _ := r.read(0, SectorSize); got[0] != 0xbb {
		t.Fatal("a refused image replaced the drive's")
	}
	r.dev.Close()
	if err := r.dev.ReplaceImage(next); err == nil {
		t.Fatal("ReplaceImage on a closed device succeeded")
	}
}

// TestReplaceImageUnderLoad swaps the image back and forth while the
// guest reads: every read completes OK with data wholly from one image
// (run it with -race: the swap shares nothing unsynchronised with the
// request goroutine).
func TestReplaceImageUnderLoad(t *testing.T) {
	r := newRig(t, 8, Options{ReadOnly: true}, 0)
	a, b := filled(t, "a.img", 8, 0xaa), filled(t, "b.img", 8, 0xbb)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := r.dev.ReplaceImage([]string{a, b}[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 500 {
		got, st := r.read(0, 8*SectorSize)
		if st != StatusOK || !(bytes.Count(got, []byte{0xaa}) == len(got) || bytes.Count(got, []byte{0xbb}) == len(got) ||
			bytes.Equal(got, pattern(len(got)))) {
			t.Fatalf("status %d, mixed data", st)
		}
	}
	close(done)
	wg.Wait()
}

// failFirst fails a syncRig's first sync with EIO.
func failFirst(call int32) error {
	if call == 1 {
		return unix.EIO
	}
	return nil
}

// TestReplaceImageSyncsFirst: ReplaceImage syncs a Writeback drive's image
// before the swap, with requests held off, so that a write the guest
// completed on the old image is durable before any request uses the new
// one. A FLUSH the guest sends during that sync waits for it: it is not
// answered OK from the new image while the old one's sync may still fail.
// When that sync fails ReplaceImage fails and nothing changed: the drive
// keeps its image, whose failure sticks (the FLUSH and later ones IOERR).
func TestReplaceImageSyncsFirst(t *testing.T) {
	entered, release := make(chan struct{}), make(chan error, 1)
	r := newSyncRig(t, Options{Writeback: true}, FeatureFlush.Mask(), func(call int32) error {
		if call == 1 {
			close(entered)
			return <-release
		}
		return nil
	})
	t.Cleanup(func() { // before the rig's Close, which waits for ReplaceImage
		select {
		case release <- nil:
		default:
		}
	})
	if st := r.writeSector(2, 0x5a); st != StatusOK {
		t.Fatalf("write status %d", st)
	}
	swapped := make(chan error, 1)
	go func() { swapped <- r.dev.ReplaceImage(filled(t, "next.img", testSectors, 0xbb)) }()
	select {
	case <-entered:
	case err := <-swapped:
		t.Fatalf("ReplaceImage returned (%v) without syncing the old image", err)
	}
	if _, err := r.drv.Add(qt.R(hdr(TypeFlush, 0)), qt.W(1)); err != nil {
		t.Fatal(err)
	}
	r.h.Kick(0)
	time.Sleep(50 * time.Millisecond) // time for the engine to (wrongly) answer it
	if u, ok := r.drv.Used(); ok {
		t.Fatalf("a FLUSH was answered (status %d, %d syncs) while the old image's sync was pending", r.status(u), r.calls.Load())
	}
	release <- unix.EIO
	if err := <-swapped; err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("ReplaceImage whose sync failed: %v, want the EIO", err)
	}
	if st := r.status(r.waitUsed()); st != StatusIOErr {
		t.Fatalf("the FLUSH sent during the failed sync: status %d, want IOERR", st)
	}
	if got, st := r.read(2, SectorSize); st != StatusOK || got[0] != 0x5a {
		t.Fatalf("after the failed swap: status %d, data % x..., want the old image's", st, got[:4])
	}
	if st := r.flush(); st != StatusIOErr || r.calls.Load() != 1 {
		t.Fatalf("a later flush: status %d after %d syncs, want IOERR without a sync", st, r.calls.Load())
	}
	if s := r.dev.Stats(); s.HostErrors != 3 {
		t.Fatalf("stats %+v, want 3 host errors (the swap's sync, 2 flushes refused)", s)
	}
}

// TestReplaceImageOwesTheLoss: writes the guest completed on an image whose
// sync failed may be lost. When the guest was not answered IOERR after
// them (ReplaceImage's own sync failed, or it wrote again after a failed
// flush), the first flush on the next image is IOERR, once; later flushes
// sync the new image. A swap after a failure does not sync the failed
// image again (a new fdatasync would report success for lost pages).
func TestReplaceImageOwesTheLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, r *syncRig)
	}{
		{"the swap's own sync failed", func(t *testing.T, r *syncRig) {
			if err := r.dev.ReplaceImage(filled(t, "other.img", testSectors, 0xaa)); err == nil {
				t.Fatal("ReplaceImage whose sync failed succeeded")
			}
		}},
		{"a write after a failed flush", func(t *testing.T, r *syncRig) {
			if st := r.flush(); st != StatusIOErr {
				t.Fatalf("flush status %d, want IOERR", st)
			}
			if st := r.writeSector(4, 0x44); st != StatusOK {
				t.Fatalf("write status %d", st)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSyncRig(t, Options{Writeback: true}, FeatureFlush.Mask(), failFirst)
			r.writeSector(1, 0x11)
			tc.before(t, r)
			if err := r.dev.ReplaceImage(filled(t, "next.img", testSectors, 0xbb)); err != nil {
				t.Fatal(err)
			}
			if n := r.calls.Load(); n != 1 {
				t.Fatalf("%d syncs: the failed image was synced again", n)
			}
			if got, st := r.read(0, SectorSize); st != StatusOK || got[0] != 0xbb {
				t.Fatalf("after the swap: status %d, data % x...", st, got[:4])
			}
			for i, want := range []byte{StatusIOErr, StatusOK, StatusOK} {
				if st := r.flush(); st != want {
					t.Fatalf("flush %d on the new image: status %d, want %d", i, st, want)
				}
			}
			if n := r.calls.Load(); n != 3 {
				t.Fatalf("%d syncs, want 3 (the failed one, 2 flushes of the new image)", n)
			}
		})
	}
}
