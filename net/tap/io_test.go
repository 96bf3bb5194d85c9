package tap

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

// TX: a frame written with a plain vnet header (flags 0, gso NONE) is
// delivered by the kernel to a UDP socket on the host side of the TAP.
func TestWriteReachesHost(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-tx", 1, Options{})
	c := udpSocket(t, l.hostIP, 0)
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	payload := pattern(300, 1)
	fr := udpFrame(l.guestIP, l.hostIP, l.guestMAC, l.hostMAC, 4000, port, payload)

	// Scatter the frame over several buffers, the header alone in the
	// first, as a descriptor chain would, with an empty one in between.
	iovs := [][]byte{fr[:vnethdr.Len], fr[vnethdr.Len:40], nil, fr[40:100], fr[100:]}
	n, err := l.tap.Queue(0).Writev(iovs)
	if err != nil || n != len(fr) {
		t.Fatalf("Writev = %d, %v; want %d", n, err, len(fr))
	}
	if got := recvUDP(t, c); !bytes.Equal(got, payload) {
		t.Fatalf("received %d bytes, want the %d-byte payload", len(got), len(payload))
	}

	// A partial checksum (NEEDS_CSUM) is accepted and delivered too.
	fr = udpFrame(l.guestIP, l.hostIP, l.guestMAC, l.hostMAC, 4000, port, payload)
	f := fr[vnethdr.Len:]
	binary.BigEndian.PutUint16(f[ethLen+ipv4Len+6:], csumFold(pseudoSum(l.guestIP, l.hostIP, unix.IPPROTO_UDP, udpLen+len(payload))))
	h := vnethdr.Header{Flags: vnethdr.FNeedsCsum, CsumStart: ethLen + ipv4Len, CsumOffset: 6}
	h.Put(fr)
	if _, err := l.tap.Queue(0).TryWritev([][]byte{fr}); err != nil {
		t.Fatalf("TryWritev NEEDS_CSUM frame: %v", err)
	}
	if got := recvUDP(t, c); !bytes.Equal(got, payload) {
		t.Fatal("NEEDS_CSUM frame payload mismatch")
	}

	// Malformed writes fail with a bare errno and drop only that frame.
	if _, err := l.tap.Queue(0).Writev([][]byte{fr[:5]}); err != unix.EINVAL {
		t.Errorf("Writev shorter than the vnet header: %v, want EINVAL", err)
	}
	if _, err := l.tap.Queue(0).Writev([][]byte{nil, {}}); err != unix.EINVAL {
		t.Errorf("Writev of nothing: %v, want EINVAL", err)
	}
}

// RX: a frame the kernel sends into the TAP arrives as the 12-byte vnet
// header followed by the Ethernet frame; with OffloadCsum on it arrives
// checksum-partial. The kernel does not fill in num_buffers.
func TestReadFromHost(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-rx", 1, Options{})
	q := l.tap.Queue(0)
	c := udpSocket(t, l.hostIP, 0)
	dst := &net.UDPAddr{IP: l.guestIP, Port: 5555}
	payload := pattern(200, 9)

	for _, off := range []Offload{0, OffloadCsum} {
		if _, err := l.tap.SetOffload(off); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUDP(payload, dst); err != nil {
			t.Fatal(err)
		}
		buf := bytes.Repeat([]byte{0xab}, 2048)
		got := readMatching(t, q, buf, 2*time.Second, func(f []byte) bool {
			return isIPv4Proto(f, unix.IPPROTO_UDP) && binary.BigEndian.Uint16(f[ethLen+ipv4Len+2:]) == 5555
		})
		if len(got) != vnethdr.Len+ethLen+ipv4Len+udpLen+len(payload) {
			t.Fatalf("offload %v: read %d bytes", off, len(got))
		}
		h, err := vnethdr.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if h.GSOType != vnethdr.GSONone || h.GSOSize != 0 {
			t.Errorf("offload %v: header %+v, want gso NONE", off, h)
		}
		// The kernel does not set num_buffers: older kernels skip the two
		// bytes, newer ones (tun_vnet_hdr_put) zero them. The device
		// writes them itself.
		if nb := binary.LittleEndian.Uint16(got[10:]); nb != 0xabab && nb != 0 {
			t.Errorf("offload %v: kernel wrote num_buffers %#x", off, nb)
		}
		f := got[vnethdr.Len:]
		if !bytes.Equal(f[0:6], l.guestMAC) || !bytes.Equal(f[6:12], l.hostMAC) {
			t.Errorf("offload %v: MACs %x -> %x", off, f[6:12], f[0:6])
		}
		if !bytes.Equal(f[ethLen+ipv4Len+udpLen:], payload) {
			t.Errorf("offload %v: payload mismatch", off)
		}
		switch off {
		case 0:
			if h.Flags&vnethdr.FNeedsCsum != 0 || !l4ChecksumOK(f) {
				t.Errorf("no offload: flags %#x, checksum ok %v; want a full checksum", h.Flags, l4ChecksumOK(f))
			}
		case OffloadCsum:
			if h.Flags&vnethdr.FNeedsCsum == 0 || h.CsumStart != ethLen+ipv4Len || h.CsumOffset != 6 {
				t.Errorf("csum offload: header %+v, want NEEDS_CSUM at 34+6", h)
			}
		}
	}

	// A buffer shorter than the vnet header makes the kernel drop the frame.
	if _, err := c.WriteToUDP(payload, dst); err != nil {
		t.Fatal(err)
	}
	if err := waitReadable(q, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := q.TryReadv([][]byte{make([]byte, vnethdr.Len-1)}); err != unix.EINVAL {
		t.Errorf("read into %d bytes: %v, want EINVAL", vnethdr.Len-1, err)
	}
}

func waitReadable(q *Queue, d time.Duration) error {
	q.SetReadDeadline(time.Now().Add(d))
	defer q.SetReadDeadline(time.Time{})
	return q.WaitReadable()
}

// TryReadv on an idle queue returns EAGAIN at once; WaitReadable parks
// until a frame arrives and does not consume it; a read deadline in the
// past interrupts a parked waiter without closing anything.
func TestTryAndWait(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-try", 1, Options{})
	q := l.tap.Queue(0)
	buf := make([]byte, 2048)

	// "At once": one of five calls returns within 100 ms (a goroutine
	// preempted that long in one call is not a TryReadv that waits).
	var took []time.Duration
	for len(took) < 5 {
		start := time.Now()
		n, err := q.TryReadv([][]byte{buf})
		if err != unix.EAGAIN || n != 0 {
			t.Fatalf("TryReadv on an idle TAP = %d, %v; want 0, EAGAIN", n, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			took = append(took, d)
			continue
		}
		break
	}
	if len(took) == 5 {
		t.Errorf("TryReadv took %v", took)
	}
	if _, err := q.TryReadv(nil); err != unix.EINVAL {
		t.Errorf("TryReadv(nil) = %v, want EINVAL", err)
	}

	// Deadline interruption of a parked WaitReadable, then re-arming.
	done := make(chan error, 1)
	go func() { done <- q.WaitReadable() }()
	time.Sleep(50 * time.Millisecond)
	q.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if err != os.ErrDeadlineExceeded {
			t.Fatalf("interrupted WaitReadable = %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("SetReadDeadline did not wake WaitReadable")
	}
	if _, err := q.Readv([][]byte{buf}); err != os.ErrDeadlineExceeded {
		t.Errorf("Readv with a past deadline = %v", err)
	}
	q.SetReadDeadline(time.Time{})

	// A frame wakes a parked WaitReadable; the frame is still there after.
	go func() { done <- q.WaitReadable() }()
	time.Sleep(50 * time.Millisecond)
	c := udpSocket(t, l.hostIP, 0)
	if _, err := c.WriteToUDP([]byte("wake"), &net.UDPAddr{IP: l.guestIP, Port: 7}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WaitReadable did not wake for a frame")
	}
	n, err := q.TryReadv([][]byte{buf[:vnethdr.Len], buf[vnethdr.Len:]})
	if err != nil || n <= vnethdr.Len {
		t.Fatalf("TryReadv after WaitReadable = %d, %v", n, err)
	}
	// WaitReadable returns at once while a frame is queued.
	if _, err := c.WriteToUDP([]byte("again"), &net.UDPAddr{IP: l.guestIP, Port: 7}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := waitReadable(q, time.Second); err != nil {
		t.Fatalf("WaitReadable with a queued frame: %v", err)
	}
	if err := q.WaitWritable(); err != nil {
		t.Errorf("WaitWritable: %v", err)
	}
}

// Close wakes goroutines parked in Readv and WaitReadable with os.ErrClosed,
// and later calls fail the same way.
func TestCloseUnblocks(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-close", 1, Options{Queues: 2})
	q0, q1 := l.tap.Queue(0), l.tap.Queue(1)
	errs := make(chan error, 2)
	go func() {
		_, err := q0.Readv([][]byte{make([]byte, 2048)})
		errs <- err
	}()
	go func() { errs <- q1.WaitReadable() }()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- l.tap.Close() }()
	for range 2 {
		select {
		case err := <-errs:
			if err != os.ErrClosed {
				t.Errorf("parked call returned %v, want os.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not unblock a parked call")
		}
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := q0.Readv([][]byte{make([]byte, 64)}); err != os.ErrClosed {
		t.Errorf("Readv after Close = %v", err)
	}
	if _, err := q0.TryWritev([][]byte{make([]byte, 64)}); err != os.ErrClosed {
		t.Errorf("TryWritev after Close = %v", err)
	}
	if err := q1.SetEnabled(true); err != os.ErrClosed {
		t.Errorf("SetEnabled after Close = %v", err)
	}
}

// GSO: a 64 KiB TCP/IPv4 frame written with gso_type TCPV4 is accepted;
// the kernel forwards it to a second TAP without TSO and segments it there
// into MSS-sized frames with valid checksums, and forwards one in the
// other direction to a TAP with TSO on, where it arrives as one GSO frame.
func TestGSO(t *testing.T) {
	ns := enterNetns(t)
	ns.sysctl("net.ipv4.ip_forward", "1")
	a := ns.openLink("flt-gso-a", 1, Options{})
	b := ns.openLink("flt-gso-b", 2, Options{})
	if _, err := a.tap.SetOffload(OffloadCsum | OffloadTSO4 | OffloadTSO6); err != nil {
		t.Fatal(err)
	}
	if _, err := b.tap.SetOffload(0); err != nil {
		t.Fatal(err)
	}
	const mss = 1448
	payload := pattern(64*1024-100, 3)
	buf := make([]byte, vnethdr.Len+65536)

	// a -> b: segmented on the way out of b.
	fr := tcpGSOFrame(a.guestIP, b.guestIP, a.guestMAC, a.hostMAC, 1000, mss, payload)
	if n, err := a.tap.Queue(0).Writev([][]byte{fr[:vnethdr.Len], fr[vnethdr.Len:]}); err != nil || n != len(fr) {
		t.Fatalf("GSO Writev = %d, %v; want %d", n, err, len(fr))
	}
	var got []byte
	seq := uint32(1000)
	segs := 0
	for len(got) < len(payload) {
		f := readMatching(t, b.tap.Queue(0), buf, 2*time.Second, func(f []byte) bool {
			return isIPv4Proto(f, unix.IPPROTO_TCP)
		})
		h, _ := vnethdr.Parse(f)
		f = f[vnethdr.Len:]
		if h.GSOType != vnethdr.GSONone || h.Flags&vnethdr.FNeedsCsum != 0 {
			t.Fatalf("segment %d: header %+v on a TAP without offloads", segs, h)
		}
		if !l4ChecksumOK(f) {
			t.Fatalf("segment %d: bad TCP checksum", segs)
		}
		if s := binary.BigEndian.Uint32(f[ethLen+ipv4Len+4:]); s != seq {
			t.Fatalf("segment %d: seq %d, want %d", segs, s, seq)
		}
		if f[ethLen+8] != 63 {
			t.Errorf("segment %d: TTL %d, want 63 (forwarded)", segs, f[ethLen+8])
		}
		data := f[ethLen+ipv4Len+tcpLen:]
		if len(data) > mss {
			t.Fatalf("segment %d: %d bytes > MSS", segs, len(data))
		}
		got = append(got, data...)
		seq += uint32(len(data))
		segs++
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("reassembled payload mismatch")
	}
	if want := (len(payload) + mss - 1) / mss; segs != want {
		t.Errorf("%d segments, want %d", segs, want)
	}

	// b -> a: a has TSO4, so the frame stays one GSO frame.
	fr = tcpGSOFrame(b.guestIP, a.guestIP, b.guestMAC, b.hostMAC, 5000, mss, payload)
	if _, err := b.tap.Queue(0).Writev([][]byte{fr}); err != nil {
		t.Fatalf("GSO Writev on b: %v", err)
	}
	f := readMatching(t, a.tap.Queue(0), buf, 2*time.Second, func(f []byte) bool {
		return isIPv4Proto(f, unix.IPPROTO_TCP)
	})
	h, _ := vnethdr.Parse(f)
	if h.GSOType&^vnethdr.GSOECN != vnethdr.GSOTCPv4 || h.GSOSize != mss || h.Flags&vnethdr.FNeedsCsum == 0 {
		t.Fatalf("GSO frame read with TSO4 on: header %+v", h)
	}
	if h.CsumStart != ethLen+ipv4Len || h.CsumOffset != 16 {
		t.Errorf("csum_start/offset %d/%d, want 34/16", h.CsumStart, h.CsumOffset)
	}
	if len(f) != len(fr) || !bytes.Equal(f[vnethdr.Len+ethLen+ipv4Len+tcpLen:], payload) {
		t.Fatalf("GSO frame: read %d bytes, wrote %d", len(f), len(fr))
	}
}

// Deleting the interface under a running Queue (an administrator's `ip
// link del`) wakes a parked reader with an errno instead of leaving it
// parked, and later reads fail at once rather than spin on EAGAIN.
func TestInterfaceDeleted(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-del", 1, Options{})
	q := l.tap.Queue(0)
	errs := make(chan error, 1)
	go func() {
		_, err := q.Readv([][]byte{make([]byte, 2048)})
		errs <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ns.ip("link", "del", "flt-del")
	select {
	case err := <-errs:
		if _, ok := err.(unix.Errno); !ok || err == unix.EAGAIN {
			t.Fatalf("parked Readv after link del = %v, want a bare errno", err)
		}
		t.Logf("parked Readv after link del: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("deleting the interface did not wake the parked Readv")
	}
	// Nothing parks or spins on a detached TAP: every call fails at once.
	if err := q.WaitReadable(); err != unix.EBADFD {
		t.Errorf("WaitReadable on a detached TAP = %v, want EBADFD", err)
	}
	if _, err := q.Readv([][]byte{make([]byte, 64)}); err != unix.EBADFD {
		t.Errorf("Readv on a detached TAP = %v, want EBADFD", err)
	}
	if _, err := q.Writev([][]byte{make([]byte, 64)}); err == nil {
		t.Error("Writev on a detached TAP succeeded")
	} else if _, ok := err.(unix.Errno); !ok {
		t.Errorf("Writev on a detached TAP = %v, want a bare errno", err)
	}
	if err := l.tap.Close(); err != nil {
		t.Errorf("Close of a detached TAP: %v", err)
	}
	if _, err := q.Readv([][]byte{make([]byte, 64)}); err != os.ErrClosed {
		t.Errorf("Readv after Close = %v, want os.ErrClosed", err)
	}
}

// The data path allocates nothing on a real TAP either.
func TestTapZeroAlloc(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-alloc", 1, Options{})
	q := l.tap.Queue(0)
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	dst := &unix.SockaddrInet4{Port: 9}
	copy(dst.Addr[:], l.guestIP)
	if err := unix.Connect(sock, dst); err != nil {
		t.Fatal(err)
	}
	msg := pattern(64, 1)
	// Addressed to another MAC: the kernel drops it after parsing.
	fr := udpFrame(l.guestIP, l.hostIP, l.guestMAC, net.HardwareAddr{2, 0, 0, 0, 9, 9}, 1, 9, msg)
	wiovs := [][]byte{fr[:vnethdr.Len], fr[vnethdr.Len:]}
	buf := make([]byte, 2048)
	riovs := [][]byte{buf[:vnethdr.Len], buf[vnethdr.Len:]}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := q.Writev(wiovs); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryReadv(riovs); err != unix.EAGAIN {
			t.Fatalf("TryReadv = %v", err)
		}
		if _, err := unix.Write(sock, msg); err != nil {
			t.Fatal(err)
		}
		if err := q.WaitReadable(); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Readv(riovs); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocs per Writev+TryReadv+WaitReadable+Readv, want 0", n)
	}
}
