package console

import (
	"encoding/binary"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// The fuzzer plays a hostile driver on one queue (receiveq or transmitq)
// of fzSize entries: raw descriptors (each 14 bytes: addr le64, len le32,
// flags and next as bytes), avail ring entries and avail.idx come from
// the input, then the engine runs a few steps. Addresses below fzData
// are offsets into the data area, so most buffers land in RAM; indirect
// tables placed there come from the input's tail. The device must not
// panic, must not report more used bytes than a chain can hold, and must
// move only bytes it was given.
const (
	fzSize   = 8
	fzData   = 1 << 14
	fzRecLen = 14
	fzHead   = fzRecLen*fzSize + 2*fzSize // descriptors, then avail entries
	fzInput  = 300                        // bytes pending for the receiveq
)

// fzRec encodes one descriptor record.
func fzRec(addr uint64, n uint32, flags uint16, next uint16) []byte {
	b := binary.LittleEndian.AppendUint64(nil, addr)
	b = binary.LittleEndian.AppendUint32(b, n)
	return append(b, byte(flags), byte(next))
}

// fzSeeds are a good chain of each direction, a chain through an
// indirect table (at data offset 1024, filled from the tail), a loop, a
// wrong-direction chain and a head outside the table.
func fzSeeds(base uint64) [][]byte {
	N, W, I := uint16(qt.DescNext), uint16(qt.DescWrite), uint16(qt.DescIndirect)
	table := make([]byte, 32)
	binary.LittleEndian.PutUint64(table, base+64)
	binary.LittleEndian.PutUint32(table[8:], 10)
	binary.LittleEndian.PutUint64(table[16:], base+128)
	binary.LittleEndian.PutUint32(table[24:], 20)
	binary.LittleEndian.PutUint16(table[12:], qt.DescNext)
	binary.LittleEndian.PutUint16(table[14:], 1)
	var seeds [][]byte
	for _, w := range []uint16{0, W} {
		var b []byte
		b = append(b, fzRec(0, 100, N|w, 1)...)
		b = append(b, fzRec(200, 50, w, 0)...)
		b = append(b, fzRec(1024, 32, I, 0)...)
		b = append(b, fzRec(300, 5, N, 3)...) // a loop
		b = append(b, fzRec(400, 5, W^w, 0)...)
		b = append(b, make([]byte, fzRecLen*(fzSize-5))...)
		for _, h := range []uint16{0, 2, 3, 4, 77} {
			b = binary.LittleEndian.AppendUint16(b, h)
		}
		b = append(b, make([]byte, fzHead-len(b))...)
		seeds = append(seeds, append(b, table...))
	}
	return seeds
}

func fzBase(tb testing.TB) uint64 {
	return qt.MustNewSet(tb, qt.Config{Size: fzSize, DataSize: fzData})[0].Config().DataAddr
}

func FuzzQueues(f *testing.F) {
	for i, s := range fzSeeds(fzBase(f)) {
		f.Add(s, uint16(5), i == 0)
	}
	f.Fuzz(func(t *testing.T, blob []byte, idx uint16, transmit bool) { fzRun(t, blob, idx, transmit) })
}

// fzRun applies one input to a fresh device and checks the invariants;
// it returns the device's counters.
func fzRun(t *testing.T, blob []byte, idx uint16, transmit bool) Stats {
	blob = append(blob, make([]byte, max(0, fzHead-len(blob)))...)
	out := &sink{}
	d, err := New(Options{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	index := ReceiveQueue
	if transmit {
		index = TransmitQueue
	}
	s := newSync(t, d, index, fzSize, fzData)
	s.fill(pattern(fzInput))
	c := s.drv.Config()
	for i := range fzSize {
		r := blob[fzRecLen*i:]
		addr := binary.LittleEndian.Uint64(r)
		if addr < fzData {
			addr += c.DataAddr
		}
		s.drv.SetDesc(uint16(i), qt.Desc{Addr: addr, Len: binary.LittleEndian.Uint32(r[8:]),
			Flags: uint16(r[12]) & 7, Next: uint16(r[13])})
	}
	copy(s.drv.Bytes(c.AvailAddr+4, 2*fzSize), blob[fzRecLen*fzSize:fzHead])
	copy(s.drv.Bytes(c.DataAddr+1024, 1024), blob[fzHead:])
	s.drv.SetAvailIdx(idx)
	for range 3 {
		if s.step().Broken() {
			break
		}
	}
	delivered := uint64(0)
	for {
		u, ok := s.drv.Used()
		if !ok {
			break
		}
		if u.Len > fzData {
			t.Fatalf("used length %d for head %d exceeds any chain", u.Len, u.ID)
		}
		if transmit && u.Len != 0 {
			t.Fatalf("transmit chain %d used with length %d", u.ID, u.Len)
		}
		delivered += uint64(u.Len)
	}
	st := d.Stats()
	if !transmit && (st.InBytes != delivered || st.InBytes > fzInput) {
		t.Fatalf("receiveq: %d bytes in used lengths, stats %+v", delivered, st)
	}
	if st.OutBytes != uint64(out.Len()) || (!transmit && out.Len() != 0) {
		t.Fatalf("writer got %d bytes, stats %+v", out.Len(), st)
	}
	return st
}

// TestFuzzSeeds checks that the seeds reach the data paths, the
// wrong-direction check and the queue's rejection of bad chains.
func TestFuzzSeeds(t *testing.T) {
	seeds := fzSeeds(fzBase(t))
	tx := fzRun(t, seeds[0], 5, true)
	if tx.OutBytes != 180 || tx.OutChains != 2 || tx.BadChains != 1 || tx.Malformed == 0 {
		t.Errorf("transmit seed: %+v", tx)
	}
	rx := fzRun(t, seeds[1], 5, false)
	if rx.InBytes != 150 || rx.InChains != 1 || rx.BadChains != 2 || rx.Malformed == 0 {
		t.Errorf("receive seed: %+v", rx)
	}
}
