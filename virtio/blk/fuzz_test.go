package blk

import (
	"encoding/binary"
	"os"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// The fuzzer lays out one request queue of fzSize entries with fzData
// bytes of buffer space, overwrites its descriptor table, available ring
// entries and the start of the data area (headers, indirect tables) with
// fuzzed bytes, sets avail.idx to a fuzzed value and runs the engine for a
// few rounds over a small image. Descriptor addresses below fzData are
// taken as offsets into the data area, so most chains point into RAM.
// The device must not panic, must not change the image's size, and must
// never report more used bytes than the chain could hold.
const (
	fzSize     = 8
	fzData     = 8192
	fzSectors  = 16
	fzDescLen  = 16 * fzSize
	fzAvailLen = 2 * fzSize
	fzAreaLen  = 512
	fzBlobLen  = fzDescLen + fzAvailLen + fzAreaLen
)

type fzDesc struct {
	addr  uint64
	n     uint32
	flags uint16
	next  uint16
}

// fzBlob encodes descriptors (addresses as data-area offsets), avail
// entries and the start of the data area.
func fzBlob(descs []fzDesc, heads []uint16, area []byte) []byte {
	b := make([]byte, fzBlobLen)
	for i, d := range descs {
		e := b[16*i:]
		binary.LittleEndian.PutUint64(e, d.addr)
		binary.LittleEndian.PutUint32(e[8:], d.n)
		binary.LittleEndian.PutUint16(e[12:], d.flags)
		binary.LittleEndian.PutUint16(e[14:], d.next)
	}
	for i, h := range heads {
		binary.LittleEndian.PutUint16(b[fzDescLen+2*i:], h)
	}
	copy(b[fzDescLen+fzAvailLen:], area)
	return b
}

// fzSeed is a starting input: its blob and avail.idx.
type fzSeed struct {
	blob []byte
	idx  uint16
}

// fzSeeds builds the seeds; base is the data area's guest address (the
// layout is fixed, see fzBase), which indirect table entries need.
func fzSeeds(base uint64) []fzSeed {
	N, W := qt.DescNext, qt.DescWrite
	table := fzBlob([]fzDesc{{base, 16, N, 1}, {base + 1024, 20, N | W, 2}, {base + 2048, 1, W, 0}}, nil, nil)[:48]
	return []fzSeed{
		// A good read and a good write.
		{fzBlob([]fzDesc{{0, 16, N, 1}, {1024, 512, N | W, 2}, {2048, 1, W, 0}, {16, 16, N, 4}, {1024, 512, N, 5}, {3000, 1, W, 0}},
			[]uint16{0, 3}, append(hdr(TypeIn, 3), hdr(TypeOut, 15)...)), 2},
		// GET_ID through an indirect table at offset 64 of the data area.
		{fzBlob([]fzDesc{{64, 48, qt.DescIndirect, 0}}, []uint16{0},
			append(append(hdr(TypeGetID, 0), make([]byte, 48)...), table...)), 1},
		// An out-of-range sector, a chain without a status byte, a loop
		// and a head outside the table.
		{fzBlob([]fzDesc{{0, 16, N, 1}, {1024, 513, W, 0}, {16, 16, 0, 0}, {3000, 4, N, 3}},
			[]uint16{0, 2, 3, 9}, hdr(TypeIn, 1<<40)), 4},
	}
}

// fzBase is the data area's guest address in the fuzzer's layout.
func fzBase(tb testing.TB) uint64 {
	return qt.MustNewSet(tb, qt.Config{Size: fzSize, DataSize: fzData})[0].Config().DataAddr
}

// fzApply writes blob into the driver's rings.
func fzApply(d *qt.Driver, blob []byte, idx uint16) {
	c := d.Config()
	for i := range fzSize {
		e := blob[16*i:]
		addr := binary.LittleEndian.Uint64(e)
		if addr < fzData {
			addr += c.DataAddr
		}
		d.SetDesc(uint16(i), qt.Desc{Addr: addr, Len: binary.LittleEndian.Uint32(e[8:]),
			Flags: binary.LittleEndian.Uint16(e[12:]), Next: binary.LittleEndian.Uint16(e[14:])})
	}
	copy(d.Bytes(c.AvailAddr+4, fzAvailLen), blob[fzDescLen:])
	copy(d.Bytes(c.DataAddr, fzAreaLen), blob[fzDescLen+fzAvailLen:])
	d.SetAvailIdx(idx)
}

func FuzzDevice(f *testing.F) {
	for _, s := range fzSeeds(fzBase(f)) {
		f.Add(s.blob, s.idx, true, false)
	}
	f.Fuzz(func(t *testing.T, blob []byte, idx uint16, indirect, readOnly bool) {
		if len(blob) < fzBlobLen {
			blob = append(blob, make([]byte, fzBlobLen-len(blob))...)
		}
		p := image(t, fzSectors)
		d, err := Open(p, Options{ReadOnly: readOnly, ID: "fuzz", Writeback: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		acked := fEvent
		if indirect {
			acked |= fIndir
		}
		s := newSync(t, d, acked, fzSize, fzData)
		fzApply(s.drv, blob, idx)
		for range 3 {
			if s.round().Broken() {
				break
			}
		}
		for {
			u, ok := s.drv.Used()
			if !ok {
				break
			}
			if u.Len > fzData+1 {
				t.Fatalf("used length %d for head %d exceeds any chain", u.Len, u.ID)
			}
		}
		st, err := os.Stat(p)
		if err != nil || st.Size() != fzSectors*SectorSize {
			t.Fatalf("image size changed: %v %v", st.Size(), err)
		}
		if readOnly && d.Stats().WriteOps != 0 {
			t.Fatal("wrote to a read-only drive")
		}
	})
}

// TestFuzzSeeds checks that the seeds do what they say, so the fuzzer
// starts from chains that reach the I/O paths.
func TestFuzzSeeds(t *testing.T) {
	seeds := fzSeeds(fzBase(t))
	for i, want := range []Stats{{ReadOps: 1, ReadBytes: 512, WriteOps: 1, WriteBytes: 512}, {IDs: 1}, {IOErrors: 1, BadChains: 1, Malformed: 2}} {
		d, err := Open(image(t, fzSectors), Options{ID: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		s := newSync(t, d, fIndir|fEvent, fzSize, fzData)
		fzApply(s.drv, seeds[i].blob, seeds[i].idx)
		s.round()
		got := d.Stats()
		got.Interrupts = 0
		if got != want {
			t.Errorf("seed %d: %+v, want %+v", i, got, want)
		}
		d.Close()
	}
}
