package tap

import (
	"net"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

// Benchmarks of the data path. The Tap* ones use real TAPs in a private
// network namespace (root only); the Socketpair ones run the same Queue
// code over an AF_UNIX datagram socketpair and need no privileges. All
// report 0 allocs/op with -benchmem.

var benchSizes = []struct {
	name string
	size int // payload bytes after the vnet header and frame headers
}{
	{"64B", 64 - ethLen - ipv4Len - udpLen},
	{"64KiB", 64*1024 - 100},
}

// BenchmarkTapWritev writes frames into a TAP: 64-byte UDP frames and
// 64 KiB TCP GSO frames. They are addressed to a MAC that is not the
// TAP's, so the kernel copies and parses each one and drops it in ip_rcv.
func BenchmarkTapWritev(b *testing.B) {
	ns := enterNetns(b)
	l := ns.openLink("flt-bw", 1, Options{})
	other := net.HardwareAddr{2, 0, 0, 0, 9, 9}
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			var fr []byte
			if sz.size < 1000 {
				fr = udpFrame(l.guestIP, l.hostIP, l.guestMAC, other, 1, 9, pattern(sz.size, 1))
			} else {
				fr = tcpGSOFrame(l.guestIP, l.hostIP, l.guestMAC, other, 1, 1448, pattern(sz.size, 1))
			}
			iovs := [][]byte{fr[:vnethdr.Len], fr[vnethdr.Len:]}
			q := l.tap.Queue(0)
			b.SetBytes(int64(len(fr)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := q.Writev(iovs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTapReadv reads frames the kernel sends into a TAP. 64B: a
// goroutine floods 64-byte UDP frames from a host socket to the pretend
// guest. 64KiB: a goroutine writes 64 KiB TCP GSO frames into a second TAP
// and the kernel forwards them, still unsegmented, to the measured TAP,
// which has TSO4 on. The feeders allocate nothing either, so allocs/op is
// the reader's.
func BenchmarkTapReadv(b *testing.B) {
	ns := enterNetns(b)
	ns.sysctl("net.ipv4.ip_forward", "1")
	a := ns.openLink("flt-br-a", 1, Options{})
	src := ns.openLink("flt-br-b", 2, Options{})
	if _, err := a.tap.SetOffload(OffloadCsum | OffloadTSO4); err != nil {
		b.Fatal(err)
	}
	// A connected UDP socket in the namespace (created on this thread).
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(sock)
	var dst unix.SockaddrInet4
	copy(dst.Addr[:], a.guestIP)
	dst.Port = 9
	if err := unix.Connect(sock, &dst); err != nil {
		b.Fatal(err)
	}
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			var feed func()
			if sz.size < 1000 {
				msg := pattern(sz.size, 2)
				feed = func() { unix.Write(sock, msg) }
			} else {
				fr := tcpGSOFrame(src.guestIP, a.guestIP, src.guestMAC, src.hostMAC, 1, 1448, pattern(sz.size, 2))
				iovs := [][]byte{fr}
				q := src.tap.Queue(0)
				feed = func() { q.Writev(iovs) }
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			repeatUntil(&wg, stop, feed)
			buf := make([]byte, vnethdr.Len+65536)
			iovs := [][]byte{buf[:vnethdr.Len], buf[vnethdr.Len:]}
			q := a.tap.Queue(0)
			b.ReportAllocs()
			var bytes int64
			for b.Loop() {
				n, err := q.Readv(iovs)
				if err != nil {
					b.Fatal(err)
				}
				bytes += int64(n)
			}
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(bytes)/float64(b.N), "B/frame")
			drain(q, iovs)
		})
	}
}

func drain(q *Queue, iovs [][]byte) {
	for {
		if _, err := q.TryReadv(iovs); err != nil {
			return
		}
	}
}

// BenchmarkSocketpair writes one message and reads it back per op, over
// the same Queue code as a TAP.
func BenchmarkSocketpair(b *testing.B) {
	for _, sz := range []struct {
		name string
		size int
	}{{"64B", 64}, {"64KiB", 64 * 1024}} {
		b.Run(sz.name, func(b *testing.B) {
			w, r := socketpairQueues(b)
			msg := pattern(sz.size, 3)
			wiovs := [][]byte{msg[:vnethdr.Len], msg[vnethdr.Len:]}
			buf := make([]byte, sz.size)
			riovs := [][]byte{buf[:vnethdr.Len], buf[vnethdr.Len:]}
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Writev(wiovs); err != nil {
					b.Fatal(err)
				}
				if _, err := r.Readv(riovs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
