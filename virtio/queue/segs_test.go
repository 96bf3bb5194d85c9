package queue_test

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/queue"
)

// TestSegmentRanges: CopySegs and AppendIovecs see the same bytes for
// every offset and length across segment boundaries and empty segments,
// and AppendIovecs stops at its limit.
func TestSegmentRanges(t *testing.T) {
	data := []byte("abcdefghijklmnopqrstuvwxyz")
	segs := [][]byte{data[0:3], data[3:3], data[3:10], data[10:11], data[11:26]}
	for off := 0; off <= len(data)+1; off++ {
		for n := 0; n <= len(data)+1; n++ {
			want := data[min(off, len(data)):min(off+n, len(data))]
			p := make([]byte, n)
			if got := queue.CopySegs(p, segs, uint64(off), false); !bytes.Equal(p[:got], want) {
				t.Fatalf("CopySegs off %d n %d: %q, want %q", off, n, p[:got], want)
			}
			var joined []byte
			for _, v := range queue.AppendIovecs(nil, segs, uint64(off), uint64(n), 100) {
				if v.Len == 0 {
					t.Fatalf("off %d n %d: empty iovec", off, n)
				}
				joined = append(joined, at(t, data, v)...)
			}
			if !bytes.Equal(joined, want) {
				t.Fatalf("AppendIovecs off %d n %d: %q, want %q", off, n, joined, want)
			}
		}
	}
	if iov := queue.AppendIovecs(make([]unix.Iovec, 0, 4), segs, 0, 26, 2); len(iov) != 2 || iov[1].Len != 7 {
		t.Fatalf("limit 2: %d iovecs", len(iov))
	}
}

// at returns the bytes of data that v describes (v must point into it).
func at(t *testing.T, data []byte, v unix.Iovec) []byte {
	for k := range data {
		if &data[k] == v.Base && k+int(v.Len) <= len(data) {
			return data[k : k+int(v.Len)]
		}
	}
	t.Fatalf("iovec %p+%d is not inside the data", v.Base, v.Len)
	return nil
}
