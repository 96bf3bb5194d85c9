package netdev

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// Benchmarks measure the device's work per packet (ns/op, B/op and
// allocs/op are per packet): the engines are driven synchronously (see
// syncDev), the guest side only re-posts buffers, and the backend is
// either in memory (it copies the frame into the iovecs, as a TAP's
// readv would) or a real AF_UNIX SOCK_SEQPACKET socketpair, which adds
// the system calls.

const benchBatch = 32

var benchSizes = []struct {
	name string
	size int // Ethernet frame bytes after the header
	gso  byte
}{{"64B", 64, vnethdr.GSONone}, {"64KiB", 65550, vnethdr.GSOTCPv4}}

func BenchmarkRx(b *testing.B) {
	for _, m := range rxModes {
		for _, sz := range benchSizes {
			if sz.gso != vnethdr.GSONone && m.acked&fGSO == 0 {
				continue
			}
			b.Run(m.name+"/"+sz.name, func(b *testing.B) {
				be := &memBackend{frame: frame(0, sz.size, 0, sz.gso)}
				s, step := rxDriver(b, m, be)
				virtiotest.RunBatches(b, int64(sz.size), 100, func(left int) int { return step(min(benchBatch, left)) })
				reportDrops(b, s)
			})
		}
	}
}

func BenchmarkTx(b *testing.B) {
	for _, l := range []struct {
		name     string
		acked    uint64
		layout   []int
		indirect bool
	}{
		{"one-descriptor", fEvent, nil, false},
		{"header+data", fEvent, []int{HdrLen}, false},
		{"indirect-4seg", fEvent | fIndir, []int{HdrLen, 54, 512}, true},
	} {
		for _, sz := range benchSizes {
			b.Run(l.name+"/"+sz.name, func(b *testing.B) {
				be := &memBackend{}
				s, step := txDriver(b, l.acked|fHostGSO, be, frame(0, sz.size, 0, sz.gso), l.layout, l.indirect)
				virtiotest.RunBatches(b, int64(sz.size), 10, func(int) int { return step() })
				if st := s.d.Stats(); st.TxDropHeader != 0 {
					b.Fatalf("drops: %+v", st)
				}
			})
		}
	}
}

func reportDrops(b *testing.B, s *syncDev) {
	if st := s.d.Stats(); st.RxDropOversize+st.RxDropHeader+st.RxDropShort != 0 {
		b.Fatalf("drops: %+v", st)
	}
}

// sockBackend is a Backend over one end of a socketpair, with the
// allocation-free readv/writev a TAP backend has.
type sockBackend struct {
	fd  int
	iov []unix.Iovec
}

func (s *sockBackend) load(iovs [][]byte) {
	s.iov = s.iov[:0]
	for _, b := range iovs {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			s.iov = append(s.iov, v)
		}
	}
}

func (s *sockBackend) TryReadv(iovs [][]byte) (int, error) {
	s.load(iovs)
	n, _, e := unix.Syscall(unix.SYS_READV, uintptr(s.fd), uintptr(unsafe.Pointer(&s.iov[0])), uintptr(len(s.iov)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func (s *sockBackend) Writev(iovs [][]byte) (int, error) {
	s.load(iovs)
	n, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(s.fd), uintptr(unsafe.Pointer(&s.iov[0])), uintptr(len(s.iov)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func (s *sockBackend) WaitReadable() error                { return nil }
func (s *sockBackend) WaitWritable() error                { return nil }
func (s *sockBackend) SetReadDeadline(t time.Time) error  { return nil }
func (s *sockBackend) SetWriteDeadline(t time.Time) error { return nil }

// socketpair returns the device's end (non-blocking) and the peer.
func socketpair(tb testing.TB) (*sockBackend, int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Skip("socketpair:", err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	}
	tb.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return &sockBackend{fd: fds[0], iov: make([]unix.Iovec, 0, maxIovecs)}, fds[1]
}

// BenchmarkRxSocketpair: the peer writes each frame (one syscall), the
// device readv's it into guest buffers (one more, plus the EAGAIN that
// ends each batch).
func BenchmarkRxSocketpair(b *testing.B) {
	for _, m := range rxModes {
		if m.name != "mergeable-1536" && m.name != "mergeable-4096" && m.name != "big-indirect" && m.name != "small" {
			continue
		}
		for _, sz := range benchSizes {
			if sz.gso != vnethdr.GSONone && m.acked&fGSO == 0 {
				continue
			}
			b.Run(m.name+"/"+sz.name, func(b *testing.B) {
				sb, peer := socketpair(b)
				s := newSync(b, sb, m.acked, 256, 24<<20)
				m.post(b, s.rxd)
				s.rxd.Kick()
				f := frame(0, sz.size, 0, sz.gso)
				round := func(n int) int {
					sent := 0
					for ; sent < n; sent++ {
						if _, err := unix.Write(peer, f); err != nil {
							break
						}
					}
					for want := s.packets(cRxPackets) + uint64(sent); s.packets(cRxPackets) < want; {
						s.rxRound()
						recycle(s.rxd)
					}
					return sent
				}
				virtiotest.RunBatches(b, int64(sz.size), 20, func(left int) int { return round(min(benchBatch, left)) })
				reportDrops(b, s)
			})
		}
	}
}

// BenchmarkTxSocketpair: the device writev's each frame, the peer reads
// it.
func BenchmarkTxSocketpair(b *testing.B) {
	for _, sz := range benchSizes {
		for _, indirect := range []bool{false, true} {
			b.Run(fmt.Sprintf("indirect=%v/%s", indirect, sz.name), func(b *testing.B) {
				sb, peer := socketpair(b)
				acked := fEvent | fHostGSO
				if indirect {
					acked |= fIndir
				}
				_, step := txDriver(b, acked, sb, frame(0, sz.size, 0, sz.gso), []int{HdrLen}, indirect)
				buf := make([]byte, 70000)
				drain := func() {
					for {
						if _, err := unix.Read(peer, buf); err != nil {
							return
						}
					}
				}
				virtiotest.RunBatches(b, int64(sz.size), 5, func(int) int {
					n := step()
					drain()
					return n
				})
			})
		}
	}
}
