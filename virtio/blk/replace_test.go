package blk

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

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
