package queue_test

import (
	"errors"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// malformedCase describes a hand-built malformed chain: raw descriptors in the
// table, optional raw indirect table at the driver's data area, and the
// head to post.
type malformedCase struct {
	name     string
	features uint64
	maxSegs  int
	descs    map[uint16]qt.Desc
	table    []qt.Desc // written at tableAddr; INDIRECT descs may use Addr tableAddr
	head     uint16
	want     queue.ChainError
}

func TestMalformedChains(t *testing.T) {
	const size = 8
	const base = 1 << 20
	data := uint64(base + 0x4000) // inside the fake RAM's data area
	tableAddr := uint64(base + 0x8000)
	in := func(off uint64) uint64 { return data + off }
	ind := func(n int) qt.Desc { return qt.Desc{Addr: tableAddr, Len: uint32(16 * n), Flags: qt.DescIndirect} }
	r := func(addr uint64, n uint32, next ...uint16) qt.Desc {
		d := qt.Desc{Addr: addr, Len: n}
		if len(next) > 0 {
			d.Flags, d.Next = qt.DescNext, next[0]
		}
		return d
	}
	w := func(addr uint64, n uint32, next ...uint16) qt.Desc {
		d := r(addr, n, next...)
		d.Flags |= qt.DescWrite
		return d
	}
	cases := []malformedCase{
		{name: "head out of range", head: size, want: queue.ErrHeadIndex},
		{name: "head way out of range", head: 0xffff, want: queue.ErrHeadIndex},
		{name: "next out of range", descs: map[uint16]qt.Desc{0: r(in(0), 4, size)}, want: queue.ErrDescIndex},
		{name: "self loop", descs: map[uint16]qt.Desc{0: r(in(0), 4, 0)}, want: queue.ErrChainLoop},
		{name: "two-descriptor loop", descs: map[uint16]qt.Desc{0: r(in(0), 4, 1), 1: r(in(0), 4, 0)}, want: queue.ErrChainLoop},
		{name: "loop of empty descriptors", descs: map[uint16]qt.Desc{3: r(in(0), 0, 4), 4: r(in(0), 0, 3)}, head: 3, want: queue.ErrChainLoop},
		{name: "address below RAM", descs: map[uint16]qt.Desc{0: r(0x1000, 4)}, want: queue.ErrBufferAddress},
		{name: "buffer runs past RAM end", descs: map[uint16]qt.Desc{0: r(base+0x10000-0x10, 0x20)}, features: 0, want: queue.ErrBufferAddress},
		{name: "address+len overflows", descs: map[uint16]qt.Desc{0: r(^uint64(0)-10, 100)}, want: queue.ErrBufferAddress},
		{name: "address at top", descs: map[uint16]qt.Desc{0: r(^uint64(0), 1)}, want: queue.ErrBufferAddress},
		{name: "huge length", descs: map[uint16]qt.Desc{0: r(in(0), 0xffffffff)}, want: queue.ErrBufferAddress},
		{name: "total length 2^32", descs: map[uint16]qt.Desc{0: r(in(0), 1, 1), 1: r(in(0), 0xffffffff)}, want: queue.ErrChainTooLong},
		{name: "readable after writable", descs: map[uint16]qt.Desc{0: w(in(0), 4, 1), 1: r(in(0), 4)}, want: queue.ErrReadAfterWrite},
		{name: "too many segments", maxSegs: 2, descs: map[uint16]qt.Desc{0: r(in(0), 1, 1), 1: r(in(0), 1, 2), 2: w(in(0), 1)}, want: queue.ErrTooManySegments},
		{name: "indirect not negotiated", features: qt.FeatureEventIdx, descs: map[uint16]qt.Desc{0: ind(1)}, table: []qt.Desc{r(in(0), 4)}, want: queue.ErrIndirectNotNegotiated},
		{name: "indirect with next", descs: map[uint16]qt.Desc{0: {Addr: tableAddr, Len: 16, Flags: qt.DescIndirect | qt.DescNext, Next: 1}, 1: r(in(0), 4)}, table: []qt.Desc{r(in(0), 4)}, want: queue.ErrIndirectNext},
		{name: "indirect len zero", descs: map[uint16]qt.Desc{0: {Addr: tableAddr, Flags: qt.DescIndirect}}, want: queue.ErrIndirectLen},
		{name: "indirect len 24", descs: map[uint16]qt.Desc{0: {Addr: tableAddr, Len: 24, Flags: qt.DescIndirect}}, want: queue.ErrIndirectLen},
		{name: "indirect len > 65536 entries", descs: map[uint16]qt.Desc{0: {Addr: tableAddr, Len: 16 * 65537, Flags: qt.DescIndirect}}, want: queue.ErrIndirectLen},
		{name: "indirect table outside RAM", descs: map[uint16]qt.Desc{0: {Addr: 0x1000, Len: 16, Flags: qt.DescIndirect}}, want: queue.ErrIndirectAddress},
		{name: "indirect table overflows", descs: map[uint16]qt.Desc{0: {Addr: ^uint64(0) - 15, Len: 32, Flags: qt.DescIndirect}}, want: queue.ErrIndirectAddress},
		{name: "nested indirect", descs: map[uint16]qt.Desc{0: ind(2)}, table: []qt.Desc{r(in(0), 4, 1), {Addr: tableAddr, Len: 32, Flags: qt.DescIndirect}}, want: queue.ErrIndirectNested},
		{name: "loop in indirect table", descs: map[uint16]qt.Desc{0: ind(2)}, table: []qt.Desc{r(in(0), 4, 1), r(in(0), 4, 0)}, want: queue.ErrChainLoop},
		{name: "indirect next out of table", descs: map[uint16]qt.Desc{0: ind(2)}, table: []qt.Desc{r(in(0), 4, 2), r(in(0), 4)}, want: queue.ErrDescIndex},
		{name: "indirect bad buffer", descs: map[uint16]qt.Desc{0: ind(1)}, table: []qt.Desc{r(0x10, 4)}, want: queue.ErrBufferAddress},
		{name: "indirect readable after writable", descs: map[uint16]qt.Desc{0: ind(2)}, table: []qt.Desc{w(in(0), 4, 1), r(in(0), 4)}, want: queue.ErrReadAfterWrite},
		{name: "writable direct then readable in table", descs: map[uint16]qt.Desc{0: w(in(0), 4, 1), 1: ind(1)}, table: []qt.Desc{r(in(0), 4)}, want: queue.ErrReadAfterWrite},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			feat := tc.features
			if feat == 0 {
				feat = allRing
			}
			d := qt.MustNew(t, qt.Config{Size: size, Features: feat, MemSize: 0x10000})
			q := d.MustQueue(t)
			if tc.maxSegs > 0 {
				q.SetMaxSegments(tc.maxSegs)
			}
			for i, desc := range tc.descs {
				d.SetDesc(i, desc)
			}
			d.WriteDescs(tableAddr, tc.table...)
			d.AddHead(tc.head)
			d.Kick()
			var c queue.Chain
			ok, err := q.Pop(&c)
			if ok || err != tc.want || !errors.Is(err, queue.ErrMalformedChain) || errors.Is(err, queue.ErrBroken) {
				t.Fatalf("Pop = %v, %v; want %v", ok, err, tc.want)
			}
			if c.Head != tc.head || len(c.Readable)+len(c.Writable) != 0 {
				t.Fatalf("rejected chain leaks segments: %+v", c)
			}
			if st := q.Stats(); st.Malformed != 1 || st.ByReason[tc.want] != 1 || st.Chains != 0 {
				t.Fatalf("stats %+v", st)
			}
			q.Publish()
			u, got := d.Used()
			if tc.want == queue.ErrHeadIndex {
				if got {
					t.Fatalf("out-of-range head completed: %+v", u)
				}
			} else if !got || u.ID != uint32(tc.head) || u.Len != 0 {
				t.Fatalf("malformed chain not completed with len 0: %+v %v", u, got)
			}
			// The queue keeps working.
			for i := range uint16(size) {
				d.SetDesc(i, qt.Desc{})
			}
			d.SetDesc(5, r(in(0), 8))
			d.AddHead(5)
			d.Kick()
			mustPop(t, q, &c)
			if c.Head != 5 || c.ReadLen != 8 {
				t.Fatalf("after malformed chain: %+v", c)
			}
		})
	}
}

func TestMalformedChainDoesNotAllocate(t *testing.T) {
	d := qt.MustNew(t, qt.Config{Size: 8, Features: allRing})
	q := d.MustQueue(t)
	d.SetDesc(0, qt.Desc{Addr: 16, Len: 4})
	var c queue.Chain
	allocs := testing.AllocsPerRun(200, func() {
		d.AddHead(0)
		d.Kick()
		if _, err := q.Pop(&c); err != queue.ErrBufferAddress {
			t.Fatal(err)
		}
		q.Publish()
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per malformed chain", allocs)
	}
}

func TestAvailIndexJumpBreaksQueue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start uint16
		idx   uint16
		ok    bool
	}{
		{"full ring is fine", 0, 8, true},
		{"one past full", 0, 9, false},
		{"backwards", 5, 3, false},
		{"far jump", 0, 0x8000, false},
		{"full across wrap", 0xfffc, 4, true},
		{"jump across wrap", 0xfffc, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := qt.MustNew(t, qt.Config{Size: 8})
			d.Resume(tc.start, tc.start)
			q, _ := queue.New(8)
			q.SetNextAvail(tc.start)
			q.SetNextUsed(tc.start)
			if err := d.Configure(q); err != nil {
				t.Fatal(err)
			}
			for i := range uint16(8) {
				d.SetDesc(i, qt.Desc{Addr: 1<<20 + 0x2000, Len: 1})
				d.AddHead(i)
			}
			d.SetAvailIdx(tc.idx)
			var c queue.Chain
			n := 0
			for range 20 {
				ok, err := q.Pop(&c)
				if errors.Is(err, queue.ErrBroken) {
					break
				}
				if err != nil || !ok {
					break
				}
				n++
			}
			if tc.ok != !q.Broken() {
				t.Fatalf("broken = %v", q.Broken())
			}
			if !tc.ok {
				if n != 0 {
					t.Fatalf("popped %d chains from a broken ring", n)
				}
				if _, err := q.Pop(&c); err != queue.ErrBroken {
					t.Fatalf("broken queue pops: %v", err)
				}
				if _, err := q.Available(); err != queue.ErrBroken {
					t.Fatalf("Available on broken queue: %v", err)
				}
				if q.Stats().Broken == 0 {
					t.Fatal("broken not counted")
				}
				q.Reset()
				if q.Broken() {
					t.Fatal("reset did not clear broken")
				}
			} else if n != int(tc.idx-tc.start) {
				t.Fatalf("popped %d", n)
			}
		})
	}
}
