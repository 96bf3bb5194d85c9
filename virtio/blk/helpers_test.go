package blk

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// Feature sets used by the tests.
var (
	fCommon = virtio.FeatureVersion1.Mask()
	fIndir  = virtio.FeatureRingIndirectDesc.Mask()
	fEvent  = virtio.FeatureRingEventIdx.Mask()
)

// pattern is the initial content of test images: every byte depends on
// its offset, so misplaced I/O shows.
func pattern(n int) []byte { return virtiotest.Pattern(n, 0) }

// image writes a test image of sectors sectors and returns its path.
func image(tb testing.TB, sectors int) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "disk.img")
	if err := os.WriteFile(p, pattern(sectors*SectorSize), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// readFile is virtiotest.ReadFile.
var readFile = virtiotest.ReadFile

// hdr is a request header.
func hdr(typ uint32, sector uint64) []byte {
	h := make([]byte, HeaderLen)
	binary.LittleEndian.PutUint32(h, typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

// rig is an active device over a test image, with its guest driver.
type rig struct {
	tb   testing.TB
	path string
	dev  *Device
	h    *virtiotest.Harness
	drv  *qt.Driver
}

func newRig(tb testing.TB, sectors int, opts Options, acked uint64) *rig {
	tb.Helper()
	r := openRig(tb, sectors, opts)
	r.activate(acked)
	return r
}

// openRig is newRig before the activation (the test sets the device up
// first, then calls activate).
func openRig(tb testing.TB, sectors int, opts Options) *rig {
	tb.Helper()
	p := image(tb, sectors)
	d, err := Open(p, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return &rig{tb: tb, path: p, dev: d}
}

func (r *rig) activate(acked uint64) {
	r.tb.Helper()
	r.h = virtiotest.MustActivate(r.tb, r.dev, acked|fCommon, virtiotest.Options{DataSize: 8 << 20})
	r.drv = r.h.Drivers[0]
}

// submit adds bufs as one chain (through an indirect table if indirect),
// kicks and waits for the device to return it.
func (r *rig) submit(indirect bool, bufs ...qt.Buf) qt.Used {
	r.tb.Helper()
	add := r.drv.Add
	if indirect {
		add = r.drv.AddIndirect
	}
	if _, err := add(bufs...); err != nil {
		r.tb.Fatal(err)
	}
	r.h.Kick(0)
	return r.waitUsed()
}

func (r *rig) waitUsed() qt.Used {
	r.tb.Helper()
	var u qt.Used
	waitUntil(r.tb, "a used element", func() bool {
		var ok bool
		u, ok = r.drv.Used()
		return ok
	})
	return u
}

// writable returns the whole writable part of a used chain (all its
// writable buffers joined): data first, the status last.
func (r *rig) writable(u qt.Used) []byte {
	var out []byte
	for _, b := range u.Bufs {
		if b.Write {
			out = append(out, r.drv.Bytes(b.Addr, uint64(b.Len))...)
		}
	}
	return out
}

// status is the status byte of a used chain.
func (r *rig) status(u qt.Used) byte {
	w := r.writable(u)
	if len(w) == 0 {
		r.tb.Fatal("chain has no writable byte")
	}
	return w[len(w)-1]
}

// waitUntil polls cond (virtiotest.WaitUntil).
var waitUntil = virtiotest.WaitUntil

// syncEngine drives the engine without its goroutine, for benchmarks,
// allocation tests and the fuzzer: the test plays the guest and calls
// round itself.
type syncEngine struct {
	d   *Device
	drv *qt.Driver
}

func newSync(tb testing.TB, d *Device, acked uint64, size uint16, dataSize uint64) *syncEngine {
	tb.Helper()
	drvs, queues, irq := virtiotest.SyncQueues(tb, d, acked|fCommon, qt.Config{Size: size, DataSize: dataSize})
	if err := d.engines.Bind(queues, irq); err != nil {
		tb.Fatal(err)
	}
	return &syncEngine{d: d, drv: drvs[0]}
}

// round is what the engine goroutine does between two waits.
func (s *syncEngine) round() virtio.Result { return s.d.eng.eng.Step() }
