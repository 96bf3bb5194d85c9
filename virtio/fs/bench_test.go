package fs

import (
	"testing"

	"golang.org/x/sys/unix"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// Benchmarks measure the device's work per READ or WRITE request (ns/op,
// B/op and allocs/op are per request): the request engine is driven
// synchronously (newSyncGuest), the guest only re-posts the same chains
// (header buffer, then page-sized data buffers, as Linux lays them out),
// and the file is a page-cached temp file, so the numbers are the device
// plus one preadv/pwritev.

const benchBatch = 32

type benchCase struct {
	name  string
	write bool
	size  int
}

var benchCases = []benchCase{
	{"read-4KiB", false, 4 << 10},
	{"read-128KiB", false, 128 << 10},
	{"write-4KiB", true, 4 << 10},
	{"write-128KiB", true, 128 << 10},
}

// benchRig posts benchBatch requests of bc against one open file and
// returns the guest and a step that serves them all and re-posts them.
func benchRig(tb testing.TB, bc benchCase) (*guest, func() int) {
	tb.Helper()
	g := newSyncGuest(tb, Config{})
	writeFile(tb, g.path("f"), pattern(benchBatch*bc.size))
	fh, e := g.open(g.mustLookup(rootID, "f"), unix.O_RDWR, false)
	if e != 0 {
		tb.Fatalf("OPEN: errno %d", e)
	}
	drv := g.drv[RequestQueue]
	data := pattern(bc.size)
	for i := range benchBatch {
		off := uint64(i * bc.size)
		in := le(fh, off, uint32(bc.size), uint32(0), uint64(0), uint32(0), uint32(0))
		var bufs []qt.Buf
		if bc.write {
			hdr := request(opWrite, 0, uint64(i+1), in)
			put32(hdr, 0, uint32(len(hdr)+bc.size))
			bufs = []qt.Buf{qt.R(hdr)}
			for p := 0; p < bc.size; p += 4096 {
				bufs = append(bufs, qt.R(data[p:p+4096]))
			}
			bufs = append(bufs, qt.W(outHeaderLen), qt.W(writeOutLen))
		} else {
			bufs = append([]qt.Buf{qt.R(request(opRead, 0, uint64(i+1), in)), qt.W(outHeaderLen)}, pages(uint32(bc.size))...)
		}
		if _, err := drv.AddIndirect(bufs...); err != nil { // as Linux does with INDIRECT_DESC
			tb.Fatal(err)
		}
	}
	drv.Kick()
	want := uint32(outHeaderLen + bc.size)
	if bc.write {
		want = outHeaderLen + writeOutLen
	}
	step := func() int {
		g.dev.req.eng.Step()
		n := 0
		for {
			u, ok := drv.Used()
			if !ok {
				break
			}
			if u.Len != want {
				tb.Fatalf("used length %d, want %d", u.Len, want)
			}
			drv.AddHead(uint16(u.ID))
			n++
		}
		drv.Kick()
		return n
	}
	return g, step
}

func BenchmarkRequest(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			g, step := benchRig(b, bc)
			virtiotest.RunBatches(b, int64(bc.size), 3, func(int) int { return step() })
			if s := g.dev.Stats(); s.Errors != 0 || s.BadRequests != 0 {
				b.Fatalf("errors: %+v", s)
			}
		})
	}
}

// TestReadWriteAllocs: after warm-up, serving READ and WRITE requests
// allocates nothing.
func TestReadWriteAllocs(t *testing.T) {
	for _, bc := range benchCases {
		g, step := benchRig(t, bc)
		virtiotest.NoAllocs(t, bc.name, benchBatch, step)
		if s := g.dev.Stats(); s.Errors != 0 || s.BadRequests != 0 {
			t.Errorf("%s: errors %+v", bc.name, s)
		}
	}
}
