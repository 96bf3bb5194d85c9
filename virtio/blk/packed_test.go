package blk

import (
	"bytes"
	"os"
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestPackedRing: with Options.Packed the device offers RING_PACKED and
// serves writes and reads over a packed queue of a size that is not a
// power of two, direct and indirect, many times round the ring; without
// it RING_PACKED is not offered.
func TestPackedRing(t *testing.T) {
	p := image(t, testSectors)
	if d, err := Open(p, Options{}); err != nil || virtio.Has(d.Features(), virtio.FeatureRingPacked) {
		t.Fatalf("default offer %#x, %v", d.Features(), err)
	} else {
		d.Close()
	}
	d, err := Open(p, Options{Packed: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	neg := d.Features()
	if !virtio.Has(neg, virtio.FeatureRingPacked) {
		t.Fatalf("Packed: offer %#x", neg)
	}
	if err := d.AckFeatures(neg); err != nil {
		t.Fatal(err)
	}
	pd := qt.MustNewPacked(t, qt.Config{Size: 100, Features: neg, DataSize: 8 << 20})
	q := pd.MustQueue(t)
	kr, kw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	defer kw.Close()
	if err := d.Activate(pd.Mem, []virtio.Queue{{Ring: q, Kick: kr}}, virtiotest.NewInterrupt(1)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Reset)
	do := func(indirect bool, bufs ...qt.Buf) qt.Used {
		t.Helper()
		add := pd.Add
		if indirect {
			add = pd.AddIndirect
		}
		if _, err := add(bufs...); err != nil {
			t.Fatal(err)
		}
		if pd.Kick() {
			kw.Write([]byte{1})
		}
		var u qt.Used
		waitUntil(t, "a used descriptor", func() bool {
			var ok bool
			u, ok = pd.Used()
			return ok
		})
		return u
	}
	for i := range 60 { // 60 writes and reads of 3 slots (or 1): the ring wraps
		sector := uint64(i % testSectors)
		data := bytes.Repeat([]byte{byte(i), 0xa5}, SectorSize/2)
		indirect := i%3 == 0
		u := do(indirect, qt.R(hdr(TypeOut, sector)), qt.R(data), qt.W(1))
		if w := pd.Written(qt.Used{Len: 1, Bufs: u.Bufs}); u.Len != 1 || len(w) != 1 || w[0] != StatusOK {
			t.Fatalf("write %d: used %+v status %v", i, u, w)
		}
		u = do(indirect, qt.R(hdr(TypeIn, sector)), qt.W(SectorSize), qt.W(1))
		w := pd.Written(u)
		if u.Len != SectorSize+1 || !bytes.Equal(w[:SectorSize], data) || w[SectorSize] != StatusOK {
			t.Fatalf("read %d: used len %d, data equal %v", i, u.Len, bytes.Equal(w[:min(len(w), SectorSize)], data))
		}
	}
	if q.NextUsed()&0x7fff >= 100 || d.Stats().WriteOps != 60 || d.Stats().ReadOps != 60 {
		t.Fatalf("next used %#x, stats %+v", q.NextUsed(), d.Stats())
	}
}
