package tap

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/testenv"

	"github.com/flintvm/flint/internal/vnethdr"
)

// Test environment: every TAP test runs inside a network namespace it
// creates (flint-tap-test-<random>) and deletes at the end. The test
// goroutine locks its OS thread and setns(2)s that thread into the
// namespace; it never unlocks, so the runtime retires the thread when the
// test goroutine exits and no other goroutine ever runs in the namespace.
// Traffic only flows between TAPs and sockets inside the namespace.

// requireTAP skips the test when TAPs cannot be created here (not root, no
// /dev/net/tun, no iproute2), unless CI is set, in which case it fails.
func requireTAP(tb testing.TB) {
	tb.Helper()
	var reason string
	switch {
	case os.Geteuid() != 0:
		reason = "not running as root"
	case !exists(DevicePath):
		reason = DevicePath + " does not exist"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			reason = "ip (iproute2) is not installed"
		}
	}
	if reason == "" {
		return
	}
	testenv.SkipOrFail(tb, fmt.Sprintf("TAP test: %s (needs root, %s and iproute2)", reason, DevicePath))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// netns is a network namespace owned by one test.
type netns struct {
	tb   testing.TB
	name string
}

// enterNetns creates a namespace, moves the calling goroutine's thread
// into it for good and registers its deletion.
func enterNetns(tb testing.TB) *netns {
	tb.Helper()
	requireTAP(tb)
	ns := &netns{tb: tb, name: fmt.Sprintf("flint-tap-test-%08x", rand.Uint32())}
	runtime.LockOSThread() // deliberately never unlocked, see above
	ns.run("ip", "netns", "add", ns.name)
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", ns.name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + ns.name)
	if err != nil {
		tb.Fatal(err)
	}
	err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
	f.Close()
	if err != nil {
		tb.Fatalf("setns %s: %v", ns.name, err)
	}
	// No IPv6 chatter (router solicitations, MLD) on the test TAPs.
	ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
	ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
	ns.ip("link", "set", "lo", "up")
	return ns
}

func (ns *netns) run(name string, args ...string) {
	ns.tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		ns.tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// ip runs `ip -n <ns> args...`.
func (ns *netns) ip(args ...string) {
	ns.tb.Helper()
	ns.run("ip", append([]string{"-n", ns.name}, args...)...)
}

func (ns *netns) sysctl(key, val string) {
	ns.tb.Helper()
	ns.run("ip", "netns", "exec", ns.name, "sysctl", "-q", "-w", key+"="+val)
}

// link is one TAP in the test namespace with a /24 on it and a static
// neighbour entry for a pretend guest at .2 of the subnet.
type link struct {
	tap       *Tap
	hostIP    net.IP
	guestIP   net.IP
	hostMAC   net.HardwareAddr
	guestMAC  net.HardwareAddr
	subnetIdx byte
}

// openLink opens a TAP named name in ns (which the calling thread is in),
// addresses it as 10.77.<subnet>.1/24, adds a neighbour 10.77.<subnet>.2 at
// 02:00:00:00:<subnet>:02, and brings it up.
func (ns *netns) openLink(name string, subnet byte, opts Options) *link {
	ns.tb.Helper()
	opts.Name = name
	if opts.Mode == OpenExisting {
		opts.Mode = CreateNew
	}
	t, err := Open(opts)
	if err != nil {
		ns.tb.Fatalf("Open(%+v): %v", opts, err)
	}
	ns.tb.Cleanup(func() { t.Close() })
	l := &link{
		tap:       t,
		hostIP:    net.IPv4(10, 77, subnet, 1).To4(),
		guestIP:   net.IPv4(10, 77, subnet, 2).To4(),
		guestMAC:  net.HardwareAddr{2, 0, 0, 0, subnet, 2},
		subnetIdx: subnet,
	}
	ns.ip("addr", "add", l.hostIP.String()+"/24", "dev", t.Name())
	ns.ip("link", "set", "dev", t.Name(), "up")
	ns.ip("neigh", "replace", l.guestIP.String(), "lladdr", l.guestMAC.String(), "dev", t.Name(), "nud", "permanent")
	if l.hostMAC, err = t.HardwareAddr(); err != nil {
		ns.tb.Fatal(err)
	}
	return l
}

// udpSocket opens a UDP socket in the calling thread's namespace, bound to
// ip:port (0 picks a port).
func udpSocket(tb testing.TB, ip net.IP, port int) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// readMatching reads frames from q until match accepts one or the timeout
// passes; it returns the whole buffer slice read (vnet header + frame).
func readMatching(tb testing.TB, q *Queue, buf []byte, timeout time.Duration, match func(frame []byte) bool) []byte {
	tb.Helper()
	if err := q.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		tb.Fatal(err)
	}
	defer q.SetReadDeadline(time.Time{})
	for {
		n, err := q.Readv([][]byte{buf})
		if err != nil {
			tb.Fatalf("Readv: %v", err)
		}
		if n >= vnethdr.Len && match(buf[vnethdr.Len:n]) {
			return buf[:n]
		}
	}
}

// Frame building and parsing (Ethernet II / IPv4 / UDP or TCP).

const (
	ethLen  = 14
	ipv4Len = 20
	udpLen  = 8
	tcpLen  = 20
)

func isIPv4Proto(frame []byte, proto byte) bool {
	return len(frame) >= ethLen+ipv4Len && binary.BigEndian.Uint16(frame[12:]) == 0x0800 && frame[ethLen+9] == proto
}

func putEth(b []byte, dst, src net.HardwareAddr) {
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
}

// putIPv4 writes an IPv4 header (DF, TTL 64) with a valid checksum.
func putIPv4(b []byte, src, dst net.IP, proto byte, payloadLen int, id uint16) {
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(ipv4Len+payloadLen))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 0x4000)
	b[8] = 64
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src.To4())
	copy(b[16:20], dst.To4())
	binary.BigEndian.PutUint16(b[10:], ^csumFold(csumAdd(0, b[:ipv4Len])))
}

// csumAdd adds b to a ones'-complement running sum (unfolded).
func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// pseudoSum is the unfolded IPv4 pseudo-header sum for an L4 segment.
func pseudoSum(src, dst net.IP, proto byte, l4len int) uint32 {
	var p [12]byte
	copy(p[0:4], src.To4())
	copy(p[4:8], dst.To4())
	p[9] = proto
	binary.BigEndian.PutUint16(p[10:], uint16(l4len))
	return csumAdd(0, p[:])
}

// l4ChecksumOK verifies the TCP/UDP checksum of an IPv4 frame.
func l4ChecksumOK(frame []byte) bool {
	ip := frame[ethLen:]
	ihl := int(ip[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	l4 := ip[ihl:tot]
	sum := pseudoSum(ip[12:16], ip[16:20], ip[9], len(l4))
	return csumFold(csumAdd(sum, l4)) == 0xffff
}

// udpFrame builds vnet header + Ethernet/IPv4/UDP with payload and a full
// UDP checksum (vnet flags 0, gso_type NONE).
func udpFrame(src, dst net.IP, smac, dmac net.HardwareAddr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, vnethdr.Len+ethLen+ipv4Len+udpLen+len(payload))
	(&vnethdr.Header{}).Put(b)
	f := b[vnethdr.Len:]
	putEth(f, dmac, smac)
	putIPv4(f[ethLen:], src, dst, unix.IPPROTO_UDP, udpLen+len(payload), 1)
	u := f[ethLen+ipv4Len:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen+len(payload)))
	copy(u[udpLen:], payload)
	c := ^csumFold(csumAdd(pseudoSum(src, dst, unix.IPPROTO_UDP, udpLen+len(payload)), u))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return b
}

// tcpGSOFrame builds vnet header + Ethernet/IPv4/TCP carrying payload as
// one GSO frame (gso_type TCPV4, NEEDS_CSUM with the pseudo-header sum in
// the checksum field, as a guest's TCP stack hands it to virtio-net).
func tcpGSOFrame(src, dst net.IP, smac, dmac net.HardwareAddr, seq uint32, mss int, payload []byte) []byte {
	const hdrs = ethLen + ipv4Len + tcpLen
	b := make([]byte, vnethdr.Len+hdrs+len(payload))
	h := vnethdr.Header{
		Flags:      vnethdr.FNeedsCsum,
		GSOType:    vnethdr.GSOTCPv4,
		HdrLen:     hdrs,
		GSOSize:    uint16(mss),
		CsumStart:  ethLen + ipv4Len,
		CsumOffset: 16,
	}
	h.Put(b)
	f := b[vnethdr.Len:]
	putEth(f, dmac, smac)
	putIPv4(f[ethLen:], src, dst, unix.IPPROTO_TCP, tcpLen+len(payload), 7)
	t := f[ethLen+ipv4Len:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 5001)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], 1)
	t[12] = tcpLen / 4 << 4
	t[13] = 0x18 // PSH|ACK
	binary.BigEndian.PutUint16(t[14:], 0xffff)
	copy(t[tcpLen:], payload)
	// Partial checksum: the folded pseudo-header sum, not complemented.
	binary.BigEndian.PutUint16(t[16:], csumFold(pseudoSum(src, dst, unix.IPPROTO_TCP, tcpLen+len(payload))))
	return b
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}
