package netdev

import (
	"encoding/binary"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// The fuzzer lays out an RX and a TX queue of fzSize entries with 4 KiB
// of buffer space each (queuetest.NewSet, so the layout is fixed), then
// overwrites each queue's descriptor table, available ring entries and
// the start of its data area with fuzzed bytes ("blob"), sets avail.idx
// to a fuzzed value, and runs the device's engines for a few rounds with
// frames waiting in the backend. The device must neither panic nor break
// its own invariants, whatever the rings say.
const (
	fzSize     = 8
	fzData     = 4096
	fzDescLen  = 16 * fzSize
	fzAvailLen = 2 * fzSize
	fzTableLen = 256 // start of the data area: room for indirect tables
	fzBlobLen  = fzDescLen + fzAvailLen + fzTableLen
)

// fzLayout returns the queue configs' addresses (identical for every
// syncDev built with fzSize and fzData).
func fzLayout(tb testing.TB) (rx, tx qt.Config) {
	ds := qt.MustNewSet(tb, qt.Config{Size: fzSize, DataSize: fzData}, qt.Config{Size: fzSize, DataSize: fzData})
	return ds[0].Config(), ds[1].Config()
}

func dsc(addr uint64, n uint32, flags, next uint16) qt.Desc {
	return qt.Desc{Addr: addr, Len: n, Flags: flags, Next: next}
}

// fzBlob encodes descriptors, avail entries and an indirect table.
func fzBlob(descs []qt.Desc, heads []uint16, table []qt.Desc) []byte {
	b := make([]byte, fzBlobLen)
	put := func(at int, ds []qt.Desc) {
		for i, d := range ds {
			e := b[at+16*i:]
			binary.LittleEndian.PutUint64(e, d.Addr)
			binary.LittleEndian.PutUint32(e[8:], d.Len)
			binary.LittleEndian.PutUint16(e[12:], d.Flags)
			binary.LittleEndian.PutUint16(e[14:], d.Next)
		}
	}
	put(0, descs)
	for i, h := range heads {
		binary.LittleEndian.PutUint16(b[fzDescLen+2*i:], h)
	}
	put(fzDescLen+fzAvailLen, table)
	return b
}

// fzApply writes blob into driver d's rings and sets avail.idx.
func fzApply(d *qt.Driver, blob []byte, idx uint16) {
	c := d.Config()
	copy(d.Bytes(c.DescAddr, fzDescLen), blob)
	if len(blob) > fzDescLen {
		copy(d.Bytes(c.AvailAddr+4, fzAvailLen), blob[fzDescLen:])
	}
	if len(blob) > fzDescLen+fzAvailLen {
		copy(d.Bytes(c.DataAddr, fzTableLen), blob[fzDescLen+fzAvailLen:])
	}
	d.SetAvailIdx(idx)
}

func FuzzDevice(f *testing.F) {
	rxc, txc := fzLayout(f)
	rd, td := rxc.DataAddr+fzTableLen, txc.DataAddr+fzTableLen
	w := qt.DescWrite
	// Mergeable buffers, a big-mode chain, an indirect chain, a header
	// split over descriptors; TX with header and data apart.
	f.Add(byte(0x0d), byte(1), uint16(4),
		fzBlob([]qt.Desc{dsc(rd, 1536, w, 0), dsc(rd+1536, 1536, w, 0), dsc(rd+3072, 512, w, 0), dsc(rd, 12, w|qt.DescNext, 4), dsc(rd+12, 2000, w, 0)},
			[]uint16{0, 1, 2, 3}, nil), uint16(2),
		fzBlob([]qt.Desc{dsc(td, 12, qt.DescNext, 1), dsc(td+12, 60, 0, 0), dsc(td, 72, 0, 0)}, []uint16{0, 2}, nil))
	f.Add(byte(0x06), byte(0), uint16(2),
		fzBlob([]qt.Desc{dsc(rxc.DataAddr, 48, qt.DescIndirect, 0), dsc(rd, 3000, w, 0)}, []uint16{0, 1},
			[]qt.Desc{dsc(rd, 12, w|qt.DescNext, 1), dsc(rd+12, 1000, w|qt.DescNext, 2), dsc(rd+1012, 2000, w, 0)}), uint16(1),
		fzBlob([]qt.Desc{dsc(txc.DataAddr, 32, qt.DescIndirect, 0)}, []uint16{0},
			[]qt.Desc{dsc(td, 12, qt.DescNext, 1), dsc(td+12, 500, 0, 0)}))
	// Loops, nested indirect, out-of-range, avail index jumps.
	f.Add(byte(0x05), byte(0), uint16(3),
		fzBlob([]qt.Desc{dsc(rd, 100, w|qt.DescNext, 1), dsc(rd, 100, w|qt.DescNext, 0), dsc(rxc.DataAddr, 16, qt.DescIndirect, 0)}, []uint16{0, 2, 9}, []qt.Desc{dsc(rxc.DataAddr, 16, qt.DescIndirect, 0)}),
		uint16(200), fzBlob([]qt.Desc{dsc(1<<50, 100, 0, 0)}, []uint16{0}, nil))
	f.Add(byte(0x01), byte(3), uint16(1),
		fzBlob([]qt.Desc{dsc(rd, 0xffffffff, w, 0), dsc(rd, 4, w, 0)}, []uint16{1}, nil), uint16(1),
		fzBlob([]qt.Desc{dsc(td, 4, 0, 0)}, []uint16{0}, nil))

	f.Fuzz(func(t *testing.T, feat, fsel byte, rxIdx uint16, rxBlob []byte, txIdx uint16, txBlob []byte) {
		var acked uint64
		for i, m := range []uint64{fMrg, fGSO, fIndir, fEvent, fCsum} {
			if feat&(1<<i) != 0 {
				acked |= m
			}
		}
		sizes := []int{60, 1514, 9000, 65550}
		gso := byte(vnethdr.GSONone)
		if fsel&3 >= 2 {
			gso = vnethdr.GSOTCPv4
		}
		be := &memBackend{frame: frame(0, sizes[fsel&3], fsel&^3&vnethdr.FDataValid, gso)}
		s := newSync(t, be, acked, fzSize, fzData)
		fzApply(s.rxd, rxBlob, rxIdx)
		fzApply(s.txd, txBlob, txIdx)
		r := &s.d.pairs[0].rx
		for round := 0; round < 4; round++ {
			be.avail = 3
			st := s.rxRound()
			if st.Broken() != s.rxq.Broken() {
				t.Fatalf("rx state %v, queue broken %v", st, s.rxq.Broken())
			}
			// A broken queue is abandoned as it is, completions and all.
			checkRxInvariants(t, r)
			if st := s.txRound(); st.Broken() != s.txq.Broken() {
				t.Fatalf("tx state %v, queue broken %v", st, s.txq.Broken())
			}
			// Read the completions back as the driver would. (Their ids
			// are not checked: a fuzzed buffer may overlap the used ring,
			// and then the frame the device wrote there is what the
			// driver reads.)
			s.rxd.AllUsed()
			s.txd.AllUsed()
		}
		st := s.d.Stats()
		if testing.Verbose() {
			t.Logf("%+v", st)
		}
		if st.RxPackets > 12 || st.RxBuffers > 12*fzSize || st.TxPackets > uint64(txIdx)+4*fzSize {
			t.Fatalf("impossible stats %+v", st)
		}
	})
}

// checkRxInvariants: the receive window's invariants hold (window.check),
// whatever the driver did. (Used chains are pushed as frames use them:
// nothing waits for a flush.)
func checkRxInvariants(t *testing.T, r *rx) {
	t.Helper()
	if err := r.win.check(); err != nil {
		t.Fatal(err)
	}
}

var _ = queue.MaxSize
