package tap

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

// TestMultiQueueSteering pins what virtio/netdev's multiqueue relies on:
// the kernel spreads frames for the guest only over attached queues, a
// queue attached again gets its share, and detaching a queue drops what
// was still queued on it (Linux's tun_queue_purge), which is why the
// device reads every queue whenever the guest has buffers and waits for
// Pending to clear before it detaches one.
func TestMultiQueueSteering(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-steer", 3, Options{Queues: 2})
	qs := l.tap.Queues()
	c := udpSocket(t, l.hostIP, 0)
	send := func(flows int) {
		t.Helper()
		for i := range flows {
			if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: l.guestIP, Port: 6000 + i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// count reads queue q until it is empty and returns the UDP frames.
	count := func(q *Queue) int {
		buf := make([]byte, 2048)
		n := 0
		for {
			m, err := q.TryReadv([][]byte{buf})
			if err == unix.EAGAIN {
				return n
			}
			if err != nil {
				t.Fatal(err)
			}
			e := buf[vnethdr.Len:m]
			if len(e) > 34 && binary.BigEndian.Uint16(e[12:]) == 0x0800 && e[23] == unix.IPPROTO_UDP {
				n++
			}
		}
	}
	settle := func() { time.Sleep(50 * time.Millisecond) }

	if err := qs[1].SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	send(32)
	settle()
	if n0, n1 := count(qs[0]), count(qs[1]); n0 != 32 || n1 != 0 {
		t.Fatalf("queue 1 detached: %d frames on queue 0, %d on queue 1; want 32, 0", n0, n1)
	}
	if err := qs[1].SetEnabled(true); err != nil {
		t.Fatal(err)
	}
	send(64)
	settle()
	if !qs[0].Pending() || !qs[1].Pending() {
		t.Fatalf("frames on both queues: Pending %v and %v", qs[0].Pending(), qs[1].Pending())
	}
	n0, n1 := count(qs[0]), count(qs[1])
	if qs[0].Pending() || qs[1].Pending() {
		t.Fatalf("queues read dry: Pending %v and %v", qs[0].Pending(), qs[1].Pending())
	}
	if n0+n1 != 64 || n1 == 0 || n0 == 0 {
		t.Fatalf("both attached: %d and %d frames of 64 flows", n0, n1)
	}
	// Frames waiting on a queue when it is detached are gone.
	send(64)
	settle()
	if err := qs[1].SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if n0, n1 := count(qs[0]), count(qs[1]); n1 != 0 || n0 == 64 {
		t.Fatalf("after detaching with frames queued: %d on queue 0, %d on queue 1", n0, n1)
	}
}
