package vhostuser

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/netdev"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// FuzzParse feeds arbitrary bytes to the header and payload decoders, as
// the connection would after reading them: nothing may panic, and what
// is accepted must be consistent.
func FuzzParse(f *testing.F) {
	f.Add(vut.Message(vut.GetFeatures, 0, nil), uint8(0))
	f.Add(vut.Message(vut.SetMemTable, 0, vut.MemTable(2, vut.Region{Size: 4096})), uint8(1))
	f.Add(vut.Message(vut.SetVringAddr, 0, vut.VringAddr(1, 0, 0x1000, 0x2000, 0x3000, ^uint64(0))), uint8(0))
	f.Add(vut.Message(vut.GetConfig, vut.FlagNeedReply, make([]byte, 12+12)), uint8(0))
	f.Add(vut.Message(vut.SetVringKick, 0, []byte{1, 1, 0, 0, 0, 0, 0, 0}), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8) {
		h, err := parseHeader(data)
		if err != nil {
			return
		}
		if err := checkSize(h); err != nil {
			return
		}
		if h.Size > MaxPayload {
			t.Fatalf("%v: size %d passed checkSize", h.Request, h.Size)
		}
		p := data[HeaderSize:]
		if uint64(len(p)) < uint64(h.Size) {
			return
		}
		p = p[:h.Size]
		m := &message{hdr: h, payload: p}
		want, err := wantFDs(m)
		if err == nil && (want < 0 || want > MaxFDs) {
			t.Fatalf("%v wants %d fds", h.Request, want)
		}
		switch h.Request {
		case ReqSetVringNum, ReqSetVringBase, ReqGetVringBase, ReqSetVringEnable:
			decodeState(p)
		case ReqSetVringAddr:
			decodeAddr(p)
		case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
			if v, err := decodeVringFD(h.Request, p); err == nil && v.Index > 0xff {
				t.Fatalf("index %d", v.Index)
			}
		case ReqSetMemTable:
			rs, err := decodeMemTable(p, int(nfds))
			if err != nil {
				return
			}
			if len(rs) != int(nfds) || len(rs) == 0 || len(rs) > MaxRegions {
				t.Fatalf("%d regions for %d fds", len(rs), nfds)
			}
			for i, r := range rs {
				if r.Size == 0 || r.GuestAddr+r.Size < r.GuestAddr || r.UserAddr+r.Size < r.UserAddr {
					t.Fatalf("region %d accepted: %+v", i, r)
				}
				for _, o := range rs[:i] {
					if overlap(r.GuestAddr, r.Size, o.GuestAddr, o.Size) || overlap(r.UserAddr, r.Size, o.UserAddr, o.Size) {
						t.Fatalf("overlapping regions accepted: %+v %+v", r, o)
					}
				}
			}
		case ReqGetConfig, ReqSetConfig:
			if c, err := decodeConfig(h.Request, p); err == nil && (int(c.Size) != len(c.Data) || c.Size > MaxConfigSize) {
				t.Fatalf("config access %+v", c)
			}
		}
	})
}

// idleBackend is a virtio-net backend with no traffic.
type idleBackend struct {
	mu    sync.Mutex
	cond  *sync.Cond
	rdead bool
}

func newIdle() *idleBackend {
	b := &idleBackend{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *idleBackend) TryReadv([][]byte) (int, error) { return 0, unix.EAGAIN }
func (b *idleBackend) WaitReadable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.rdead {
		b.cond.Wait()
	}
	return os.ErrDeadlineExceeded
}
func (b *idleBackend) Writev(iovs [][]byte) (int, error) { return 0, nil }
func (b *idleBackend) WaitWritable() error               { return nil }
func (b *idleBackend) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	b.rdead = !t.IsZero() && !t.After(time.Now())
	b.cond.Broadcast()
	b.mu.Unlock()
	return nil
}
func (b *idleBackend) SetWriteDeadline(time.Time) error { return nil }

var fuzzRAM = sync.OnceValues(func() (*vut.Memory, error) { return vut.NewMemory(256<<10, 0, 0) })

// fuzzFDs makes n fds of the kind request r takes: dups of a shared memfd
// for SET_MEM_TABLE, eventfds otherwise.
func fuzzFDs(t *testing.T, r Request, n int) []int {
	fds := make([]int, 0, n)
	for range n {
		var fd int
		var err error
		if r == ReqSetMemTable {
			var ram *vut.Memory
			if ram, err = fuzzRAM(); err == nil {
				fd, err = unix.Dup(ram.FD)
			}
		} else {
			fd, err = unix.Eventfd(0, unix.EFD_CLOEXEC)
		}
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	return fds
}

// FuzzSession runs arbitrary request sequences through a session serving
// a real virtio-net device: each message is [request, flags, nfds,
// size_lo, size_hi, payload...]. Nothing may panic, a failing request
// ends the sequence (the connection would close), and the teardown must
// leave the device reset with nothing mapped.
func FuzzSession(f *testing.F) {
	seq := func(msgs ...[]byte) []byte {
		var out []byte
		for _, m := range msgs {
			out = append(out, m...)
		}
		return out
	}
	msg := func(r uint8, flags uint8, nfds uint8, p []byte) []byte {
		return append([]byte{r, flags, nfds, byte(len(p)), byte(len(p) >> 8)}, p...)
	}
	u := func(v uint64) []byte { b := make([]byte, 8); binary.LittleEndian.PutUint64(b, v); return b }
	st := func(i, n uint32) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, i)
		binary.LittleEndian.PutUint32(b[4:], n)
		return b
	}
	feat := uint64(1<<32 | 1<<28 | 1<<29 | 1<<15 | 1<<5)
	var rings [][]byte
	for i := range 2 {
		base := uint64(i) * 0x10000
		rings = append(rings,
			msg(vut.SetVringCall, 0, 1, u(uint64(i))),
			msg(vut.SetVringNum, 0, 0, st(uint32(i), 256)),
			msg(vut.SetVringBase, 0, 0, st(uint32(i), 0)),
			msg(vut.SetVringAddr, 0, 0, vut.VringAddr(uint32(i), 0, base, base+0x2000, base+0x1000, 0)),
			msg(vut.SetVringKick, 0, 1, u(uint64(i))))
	}
	uml := seq(append([][]byte{
		msg(vut.SetOwner, 0, 0, nil),
		msg(vut.SetProtocolFeatures, 0, 0, u(1<<3|1<<9)),
		msg(vut.GetConfig, 8, 0, append([]byte{0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 12)...)),
		msg(vut.SetFeatures, 8, 0, u(feat)),
		msg(vut.SetMemTable, 8, 1, vut.MemTable(2, vut.Region{Size: 256 << 10})),
	}, rings...)...)
	f.Add(uml)
	f.Add(seq(uml, msg(vut.GetVringBase, 0, 0, st(0, 0)), msg(vut.SetMemTable, 0, 1, vut.MemTable(1, vut.Region{Size: 128 << 10, GuestAddr: 1 << 20}))))
	f.Fuzz(func(t *testing.T, data []byte) {
		dev, err := netdev.New(newIdle(), netdev.Options{MAC: [6]byte{2, 0, 0, 0, 0, 1}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := newSession(dev, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; len(data) >= 5 && n < 64; n++ {
			r, flags, nfds := Request(data[0]), uint32(data[1]&0xf)|FlagVersion, int(data[2]%(MaxFDs+2))
			size := int(binary.LittleEndian.Uint16(data[3:]))
			data = data[5:]
			if size > len(data) {
				size = len(data)
			}
			m := &message{hdr: header{Request: r, Flags: flags &^ FlagReply, Size: uint32(size)}, payload: data[:size]}
			data = data[size:]
			if checkSize(m.hdr) != nil {
				break
			}
			m.fds = fuzzFDs(t, r, nfds)
			if err := s.handle(m); err != nil {
				var soft nack
				if errors.As(err, &soft) {
					t.Fatalf("handle returned a nack as fatal: %v", err)
				}
				if os.Getenv("VHOSTUSER_FUZZ_DEBUG") != "" {
					t.Logf("%v: %v", r, err)
				}
				break
			}
		}
		if os.Getenv("VHOSTUSER_FUZZ_DEBUG") != "" {
			t.Logf("activations %d", s.activations)
		}
		s.end()
		if s.mem != nil || s.act != nil || dev.Negotiated() != 0 {
			t.Fatal("session not torn down")
		}
		for i := range s.rings {
			if s.rings[i].kick != nil || s.rings[i].call.Load() >= 0 || s.rings[i].q.Ready() {
				t.Fatalf("ring %d not released", i)
			}
		}
	})
}
