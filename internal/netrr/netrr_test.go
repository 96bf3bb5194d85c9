package main

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestQuantileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	for _, c := range []struct {
		p    int
		want time.Duration
	}{{50, 100 * time.Microsecond}, {90, 180 * time.Microsecond}, {99, 198 * time.Microsecond}, {100, 200 * time.Microsecond}, {0, time.Microsecond}} {
		if got := quantile(d, c.p); got != c.want {
			t.Errorf("p%d: %v, want %v", c.p, got, c.want)
		}
	}
	if got := quantile(d[:1], 99); got != time.Microsecond {
		t.Errorf("one sample: %v", got)
	}
}

func TestSummary(t *testing.T) {
	got := summary([]time.Duration{30 * time.Microsecond, 10 * time.Microsecond, 20 * time.Microsecond}, 1, time.Second)
	want := "rr=3 lost=1 min_us=10.0 p50_us=20.0 p90_us=30.0 p99_us=30.0 max_us=30.0 mean_us=20.0 rate=3"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := summary(nil, 5, time.Second); got != "rr=0 lost=5" {
		t.Errorf("no trips: %s", got)
	}
}

// TestTripsAgainstEcho: against a loopback echo that drops the first
// request of every ten, trip reports each lost request as lost (after
// the timeout) and measures the others. An echo goroutine starved over
// the 50 ms timeout makes a third loss that is right, so a round with
// more than 2 runs again with twice the timeout, up to 800 ms; fewer
// than 2 fails at once.
func TestTripsAgainstEcho(t *testing.T) {
	var got []int
	for wait := 50 * time.Millisecond; wait <= 800*time.Millisecond; wait *= 2 {
		lost := echoTrips(t, wait)
		if lost == 2 {
			return
		}
		if lost < 2 {
			t.Fatalf("%d lost, want 2", lost)
		}
		got = append(got, lost)
		t.Logf("%d lost with a %v timeout, want 2; again with twice the timeout", lost, wait)
	}
	t.Errorf("%v lost in the rounds of 50 to 800 ms timeouts, want 2", got)
}

// echoTrips makes 20 trips with timeout wait against a new loopback
// echo that drops requests 0 and 10, and returns how many were lost.
func echoTrips(t *testing.T, wait time.Duration) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for i := 0; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if i%10 != 0 {
				pc.WriteTo(buf[:n], from)
			}
		}
	}()
	c, err := dial("udp", netip.MustParseAddrPort(pc.LocalAddr().String()), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c.fd)
	c.req, c.resp = make([]byte, 64), make([]byte, 65)
	lost := 0
	for i := range 20 {
		d, ok, err := c.trip(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			lost++
		} else if d <= 0 {
			t.Errorf("trip %d: %v", i, d)
		}
	}
	return lost
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		proto, addr string
		n, w, size  int
		wait        time.Duration
		want        string
	}{
		{"tcp", "", 1, 0, 64, time.Second, "-addr"},
		{"tcp", "[::1]:7", 1, 0, 64, time.Second, "-addr"},
		{"sctp", "10.0.0.1:7", 1, 0, 64, time.Second, "-proto"},
		{"udp", "10.0.0.1:7", 0, 0, 64, time.Second, "-n"},
		{"tcp", "10.0.0.1:7", 1, 0, 4, time.Second, "-size"},
		{"tcp", "10.0.0.1:7", 1, 0, 64, 0, "-timeout"},
	} {
		if err := run(c.proto, c.addr, c.n, c.w, c.size, c.wait); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestTripsOverTCP: against a loopback echo that writes each echo back
// in two pieces, every trip is measured and matched.
func TestTripsOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				return
			}
			s.Write(buf[:10])
			time.Sleep(time.Millisecond)
			s.Write(buf[10:])
		}
	}()
	c, err := dial("tcp", netip.MustParseAddrPort(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.req, c.resp = make([]byte, 64), make([]byte, 65)
	for i := range 20 {
		if d, ok, err := c.trip(uint64(i)); err != nil || !ok || d < time.Millisecond {
			t.Fatalf("trip %d: %v %v %v (want the second piece's millisecond in it)", i, d, ok, err)
		}
	}
}
