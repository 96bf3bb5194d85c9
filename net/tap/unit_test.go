package tap

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

// These tests need no privileges: they drive the same Queue code over an
// AF_UNIX datagram socketpair, which like a TAP returns one message per
// read and is pollable.

// socketpairQueues returns two connected Queues.
func socketpairQueues(tb testing.TB) (*Queue, *Queue) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	// Room for a few 64 KiB messages in flight.
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	a, err := newQueue(fds[0], "sp0", 0)
	if err != nil {
		unix.Close(fds[1])
		tb.Fatal(err)
	}
	b, err := newQueue(fds[1], "sp1", 1)
	if err != nil {
		a.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestQueueScatterGather(t *testing.T) {
	a, b := socketpairQueues(t)
	msg := pattern(5000, 5)
	// More buffers than the initial iovec capacity, some empty.
	var iovs [][]byte
	for i := 0; i < len(msg); i += 50 {
		iovs = append(iovs, msg[i:min(i+50, len(msg))], nil)
	}
	if n, err := a.Writev(iovs); err != nil || n != len(msg) {
		t.Fatalf("Writev = %d, %v", n, err)
	}
	out := make([]byte, len(msg)+10)
	var riovs [][]byte
	for i := 0; i < len(out); i += 7 {
		riovs = append(riovs, out[i:min(i+7, len(out))])
	}
	if n, err := b.Readv(riovs); err != nil || n != len(msg) {
		t.Fatalf("Readv = %d, %v", n, err)
	}
	if !bytes.Equal(out[:len(msg)], msg) {
		t.Fatal("payload mismatch")
	}
	if n, err := b.TryReadv([][]byte{out}); err != unix.EAGAIN || n != 0 {
		t.Fatalf("TryReadv on empty = %d, %v; want EAGAIN", n, err)
	}
	if _, err := b.Readv([][]byte{nil}); err != unix.EINVAL {
		t.Fatalf("Readv of no space = %v; want EINVAL", err)
	}
}

func TestQueueCloseAndDeadline(t *testing.T) {
	a, b := socketpairQueues(t)
	errs := make(chan error, 1)
	go func() {
		_, err := b.Readv([][]byte{make([]byte, 64)})
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.SetReadDeadline(time.Now())
	if err := <-errs; err != os.ErrDeadlineExceeded {
		t.Fatalf("Readv past deadline = %v", err)
	}
	b.SetReadDeadline(time.Time{})
	go func() { errs <- b.WaitReadable() }()
	time.Sleep(20 * time.Millisecond)
	if _, err := a.Writev([][]byte{[]byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("WaitReadable = %v", err)
	}
	buf := make([]byte, 8)
	if n, err := b.TryReadv([][]byte{buf}); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("TryReadv = %q, %v", buf[:n], err)
	}
	go func() {
		_, err := b.Readv([][]byte{buf})
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if err != os.ErrClosed {
			t.Fatalf("Readv across Close = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Readv")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.WaitReadable(); err != os.ErrClosed {
		t.Errorf("WaitReadable after Close = %v", err)
	}
}

// The data path allocates nothing, whatever the number of buffers (after
// the iovec array has grown once).
func TestQueueZeroAlloc(t *testing.T) {
	a, b := socketpairQueues(t)
	frame := pattern(1500, 1)
	wiovs := [][]byte{frame[:vnethdr.Len], frame[vnethdr.Len:]}
	rbuf := make([]byte, 2048)
	riovs := [][]byte{rbuf[:vnethdr.Len], rbuf[vnethdr.Len:]}
	many := make([][]byte, 100)
	for i := range many {
		many[i] = rbuf[i*10 : i*10+10]
	}
	for name, f := range map[string]func(){
		"Writev+Readv": func() {
			if _, err := a.Writev(wiovs); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Readv(riovs); err != nil {
				t.Fatal(err)
			}
		},
		"TryWritev+WaitReadable+TryReadv(100 iovecs)": func() {
			if _, err := a.TryWritev(wiovs); err != nil {
				t.Fatal(err)
			}
			if err := b.WaitReadable(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.TryReadv(many); err != nil {
				t.Fatal(err)
			}
		},
		"TryReadv EAGAIN": func() {
			if _, err := b.TryReadv(riovs); err != unix.EAGAIN {
				t.Fatal(err)
			}
		},
	} {
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func TestOffloadsForGuest(t *testing.T) {
	bit := func(b ...uint) (f uint64) {
		for _, x := range b {
			f |= 1 << x
		}
		return
	}
	for _, tc := range []struct {
		features uint64
		want     Offload
	}{
		{0, 0},
		{bit(0, 5, 32), 0}, // host CSUM, MAC, VERSION_1: nothing for RX
		{bit(virtioNetGuestCsum), OffloadCsum},
		{bit(virtioNetGuestTSO4, virtioNetGuestTSO6), 0}, // needs GUEST_CSUM
		{bit(virtioNetGuestCsum, virtioNetGuestTSO4), OffloadCsum | OffloadTSO4},
		{bit(virtioNetGuestCsum, virtioNetGuestECN), OffloadCsum},
		{bit(virtioNetGuestCsum, virtioNetGuestTSO4, virtioNetGuestTSO6, virtioNetGuestECN, virtioNetGuestUFO),
			OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN | OffloadUFO},
		{bit(virtioNetGuestCsum, virtioNetGuestUSO4), OffloadCsum},
		{bit(virtioNetGuestCsum, virtioNetGuestUSO4, virtioNetGuestUSO6), OffloadCsum | OffloadUSO4 | OffloadUSO6},
	} {
		if got := OffloadsForGuest(tc.features); got != tc.want {
			t.Errorf("OffloadsForGuest(%#x) = %v, want %v", tc.features, got, tc.want)
		}
	}
}

func TestOffloadString(t *testing.T) {
	for o, want := range map[Offload]string{
		0:                                 "none",
		OffloadCsum | OffloadTSO4:         "csum|tso4",
		offloadAll:                        "csum|tso4|tso6|tso_ecn|ufo|uso4|uso6",
		OffloadCsum | 1<<12:               "csum|0x1000",
		(OffloadTSO4 | 1<<12).Normalize(): "0x1000",
	} {
		if got := o.String(); got != want {
			t.Errorf("%#x.String() = %q, want %q", uint32(o), got, want)
		}
	}
	if s := Mode(7).String(); !strings.Contains(s, "7") || CreateNew.String() != "create-new" {
		t.Errorf("Mode strings: %q %q", s, CreateNew.String())
	}
}
