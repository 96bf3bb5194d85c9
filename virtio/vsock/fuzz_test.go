package vsock

import (
	"bytes"
	"net"
	"testing"

	"github.com/flintvm/flint/virtio/queue"
)

// goodHeader is a well-formed guest packet header of op with n payload
// bytes.
func goodHeader(op Op, n uint32) []byte {
	h := Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 1000, DstPort: 80, Type: TypeStream, Op: op, Len: n,
		BufAlloc: 65536}
	if op == OpShutdown {
		h.Flags = ShutdownSend
	}
	b := make([]byte, HeaderLen)
	h.Put(b)
	return b
}

// FuzzParseHeader: any bytes and chain length decode without a panic;
// an accepted header satisfies every rule and round-trips through Put.
func FuzzParseHeader(f *testing.F) {
	for op := OpInvalid; op <= OpCreditRequest+1; op++ {
		f.Add(goodHeader(op, 0), uint32(HeaderLen))
	}
	f.Add(goodHeader(OpRW, 100), uint32(HeaderLen+100))
	f.Add(goodHeader(OpRW, 100), uint32(HeaderLen+99))
	f.Add(goodHeader(OpRW, MaxPayload+1), uint32(1<<20))
	f.Add([]byte{1, 2, 3}, uint32(3))
	f.Fuzz(func(t *testing.T, b []byte, avail uint32) {
		h, err := ParseHeader(b, avail, testCID)
		if err != nil {
			return
		}
		if h.Len > MaxPayload || uint64(h.Len)+HeaderLen > uint64(avail) || h.Type != TypeStream ||
			h.SrcCID != testCID || h.DstCID != HostCID || h.Op == OpInvalid || h.Op > OpCreditRequest ||
			(h.Op != OpRW && h.Len != 0) || (h.Op != OpShutdown && h.Flags != 0) || h.Flags&^3 != 0 ||
			h.SrcPort == 0 || h.DstPort == 0 {
			t.Fatalf("accepted %+v (avail %d)", h, avail)
		}
		var out [HeaderLen]byte
		h.Put(out[:])
		if !bytes.Equal(out[:], b[:HeaderLen]) {
			t.Fatalf("Put(%+v) = %x, want %x", h, out, b[:HeaderLen])
		}
	})
}

// FuzzTxPackets: a hostile guest's transmit packets (any bytes, split
// into buffers anywhere) go straight to the tx handler of an active
// device whose host side is a pipe; the device must not panic, every
// connection stays within its buffers and the cap, and every packet
// completes with used length 0.
func FuzzTxPackets(f *testing.F) {
	join := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	f.Add(join(goodHeader(OpRequest, 0), goodHeader(OpRW, 3), []byte("abc"), goodHeader(OpShutdown, 0)), uint8(44), uint8(5))
	f.Add(join(goodHeader(OpRequest, 0), goodHeader(OpRequest, 0), goodHeader(OpRST, 0)), uint8(44), uint8(20))
	f.Add(join(goodHeader(OpRW, 10), []byte("0123456789")), uint8(50), uint8(2))
	f.Add(join(goodHeader(OpRequest, 0), goodHeader(OpCreditRequest, 0), goodHeader(OpCreditUpdate, 0)), uint8(44), uint8(44))
	f.Fuzz(func(t *testing.T, data []byte, pktLen, split uint8) {
		ends := make(chan net.Conn, 64)
		d, err := New(Options{GuestCID: testCID, Dial: pipeDial(ends), MaxConns: 4, BufSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			d.Close()
			close(ends)
			for c := range ends {
				c.Close()
			}
		}()
		d.mu.Lock()
		d.active = true
		d.mu.Unlock()
		var ch queue.Chain
		for len(data) > 0 {
			// Packets of HeaderLen+pktLen bytes (the header's len may lie).
			n := min(len(data), HeaderLen+int(pktLen))
			p := data[:n]
			data = data[n:]
			k := min(int(split), len(p))
			ch.Reset()
			if k > 0 {
				ch.Readable = append(ch.Readable, p[:k])
			}
			if k < len(p) {
				ch.Readable = append(ch.Readable, p[k:])
			}
			ch.ReadLen = uint32(len(p))
			if r := d.tx.Chain(&ch); r.Used != 0 {
				t.Fatalf("transmit chain used with %d bytes", r.Used)
			}
			d.mu.Lock()
			if len(d.conns)+d.orphans > 4 || d.rsts.n > len(d.rsts.q) {
				t.Fatalf("%d connections and %d orphaned dials, %d RSTs queued", len(d.conns), d.orphans, d.rsts.n)
			}
			for _, c := range d.conns {
				if c.toHost.n > c.toHost.size() || c.toGuest.n > c.toGuest.size() {
					t.Fatalf("buffers overfilled: %d, %d", c.toHost.n, c.toGuest.n)
				}
			}
			d.mu.Unlock()
		}
	})
}
