package tap

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

func TestOpenModes(t *testing.T) {
	ns := enterNetns(t)

	if _, err := Open(Options{Name: "flt-missing"}); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("OpenExisting of a missing interface: got %v, want ENODEV", err)
	}
	if _, err := net.InterfaceByName("flt-missing"); err == nil {
		t.Fatal("OpenExisting created the interface")
	}
	if _, err := Open(Options{Mode: OpenExisting}); err == nil {
		t.Fatal("OpenExisting without a name succeeded")
	}
	if _, err := Open(Options{Name: "a-name-that-is-too-long", Mode: OpenOrCreate}); err == nil {
		t.Fatal("16-byte name accepted")
	}
	if _, err := Open(Options{Name: "x", Mode: OpenOrCreate, Queues: MaxQueues + 1}); err == nil {
		t.Fatal("too many queues accepted")
	}

	// The kernel picks the name from a pattern.
	tp, err := Open(Options{Name: "flt%d", Mode: CreateNew})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if tp.Name() != "flt0" {
		t.Errorf("Name = %q, want flt0", tp.Name())
	}
	flags, err := tp.IfFlags()
	if err != nil {
		t.Fatal(err)
	}
	want := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if flags&want != want || flags&unix.IFF_MULTI_QUEUE != 0 {
		t.Errorf("TUNGETIFF flags %#x, want %#x without IFF_MULTI_QUEUE", flags, want)
	}
	if sz, err := tp.VnetHdrLen(); err != nil || sz != vnethdr.Len {
		t.Errorf("VnetHdrLen = %d, %v; want %d", sz, err, vnethdr.Len)
	}
	if tp.NumQueues() != 1 || tp.Queue(0).Index() != 0 || tp.Queue(0).Name() != "flt0" {
		t.Errorf("queues: %d, index %d, name %q", tp.NumQueues(), tp.Queue(0).Index(), tp.Queue(0).Name())
	}
	if got := tp.Offload(); got != 0 {
		t.Errorf("offloads after Open = %v, want none", got)
	}

	// CreateNew on a taken name fails; a single-queue TAP takes one file.
	if _, err := Open(Options{Name: "flt0", Mode: CreateNew}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("CreateNew on existing: %v, want EBUSY", err)
	}
	if _, err := Open(Options{Name: "flt0", Mode: OpenExisting}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second file on a single-queue TAP: %v, want EBUSY", err)
	}
	// Names used by something that is not a TAP.
	if _, err := Open(Options{Name: "lo", Mode: OpenOrCreate}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("TAP on lo: %v, want EINVAL", err)
	}
	ns.ip("tuntap", "add", "dev", "flt-tun", "mode", "tun")
	if _, err := Open(Options{Name: "flt-tun"}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("TAP on a TUN interface: %v, want EINVAL", err)
	}

	// Not persistent: Close deletes the interface; Close is idempotent.
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.InterfaceByName("flt0"); err == nil {
		t.Error("non-persistent TAP survived Close")
	}
	if _, err := tp.MTU(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("MTU after Close: %v, want os.ErrClosed", err)
	}

	// OpenOrCreate creates, and attaches to an existing (persistent) one.
	ns.ip("tuntap", "add", "dev", "flt-admin", "mode", "tap", "vnet_hdr")
	t2, err := Open(Options{Name: "flt-admin", Mode: OpenOrCreate})
	if err != nil {
		t.Fatal(err)
	}
	t2.Close()
	if _, err := net.InterfaceByName("flt-admin"); err != nil {
		t.Errorf("admin-created persistent TAP vanished after Close: %v", err)
	}
	t3, err := Open(Options{Name: "flt-admin"}) // OpenExisting
	if err != nil {
		t.Fatal(err)
	}
	t3.Close()
}

func TestPersist(t *testing.T) {
	enterNetns(t)
	tp, err := Open(Options{Name: "flt-p", Mode: CreateNew, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	if fl, _ := tp.IfFlags(); fl&unix.IFF_PERSIST == 0 {
		t.Errorf("IFF_PERSIST not set: %#x", fl)
	}
	tp.Close()
	if _, err := net.InterfaceByName("flt-p"); err != nil {
		t.Fatalf("persistent TAP gone after Close: %v", err)
	}
	tp, err = Open(Options{Name: "flt-p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.SetPersist(false); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	if _, err := net.InterfaceByName("flt-p"); err == nil {
		t.Fatal("TAP survived SetPersist(false) and Close")
	}
}

func TestMultiQueue(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-mq", 1, Options{Queues: 4})
	tp := l.tap
	if tp.NumQueues() != 4 || len(tp.Queues()) != 4 {
		t.Fatalf("NumQueues = %d", tp.NumQueues())
	}
	for i, q := range tp.Queues() {
		if q.Index() != i {
			t.Errorf("queue %d has index %d", i, q.Index())
		}
	}
	if fl, _ := tp.IfFlags(); fl&unix.IFF_MULTI_QUEUE == 0 {
		t.Errorf("IFF_MULTI_QUEUE missing: %#x", fl)
	}
	// Every queue shares the interface's vnet header size.
	if _, err := tp.Queue(3).TryReadv([][]byte{make([]byte, 64)}); err != unix.EAGAIN {
		t.Errorf("TryReadv on idle queue 3: %v", err)
	}
	if err := tp.Queue(3).SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if err := tp.Queue(3).SetEnabled(false); err == nil {
		t.Error("detaching a detached queue succeeded")
	}
	if err := tp.Queue(3).SetEnabled(true); err != nil {
		t.Fatal(err)
	}
	// A single-queue open of a multiqueue TAP is refused.
	if _, err := Open(Options{Name: "flt-mq"}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("single-queue open of multiqueue TAP: %v, want EINVAL", err)
	}
	// Another multiqueue opener can add queues.
	more, err := Open(Options{Name: "flt-mq", Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	more.Close()

	// Frames written on any queue reach the host stack.
	c := udpSocket(t, l.hostIP, 0)
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	for i, q := range tp.Queues() {
		payload := []byte{'q', byte('0' + i)}
		fr := udpFrame(l.guestIP, l.hostIP, l.guestMAC, l.hostMAC, 4000, port, payload)
		if _, err := q.Writev([][]byte{fr}); err != nil {
			t.Fatalf("queue %d Writev: %v", i, err)
		}
		got := recvUDP(t, c)
		if string(got) != string(payload) {
			t.Errorf("queue %d: received %q", i, got)
		}
	}
}

func TestInterfaceInfo(t *testing.T) {
	ns := enterNetns(t)
	l := ns.openLink("flt-info", 1, Options{})
	tp := l.tap
	ifi, err := net.InterfaceByName("flt-info")
	if err != nil {
		t.Fatal(err)
	}
	if idx, err := tp.Index(); err != nil || idx != ifi.Index {
		t.Errorf("Index = %d, %v; want %d", idx, err, ifi.Index)
	}
	if l.hostMAC.String() != ifi.HardwareAddr.String() {
		t.Errorf("HardwareAddr = %v, want %v", l.hostMAC, ifi.HardwareAddr)
	}
	if mtu, err := tp.MTU(); err != nil || mtu != 1500 {
		t.Errorf("MTU = %d, %v", mtu, err)
	}
	if err := tp.SetMTU(9000); err != nil {
		t.Fatal(err)
	}
	if mtu, _ := tp.MTU(); mtu != 9000 {
		t.Errorf("MTU after SetMTU(9000) = %d", mtu)
	}
	if err := tp.SetMTU(0); err == nil {
		t.Error("SetMTU(0) accepted")
	}
	if fl, err := tp.Flags(); err != nil || fl&unix.IFF_UP == 0 {
		t.Errorf("Flags = %#x, %v; want IFF_UP", fl, err)
	}
	if err := tp.SetUp(false); err != nil {
		t.Fatal(err)
	}
	if fl, _ := tp.Flags(); fl&unix.IFF_UP != 0 {
		t.Errorf("still up: %#x", fl)
	}
	// The kernel refuses writes while the TAP is down.
	fr := udpFrame(l.guestIP, l.hostIP, l.guestMAC, l.hostMAC, 1, 9, []byte("x"))
	if _, err := tp.Queue(0).Writev([][]byte{fr}); err != unix.EIO {
		t.Errorf("Writev while down: %v, want EIO", err)
	}
	if err := tp.SetUp(true); err != nil {
		t.Fatal(err)
	}
	// Without the control socket the SIOC* calls fail; the queues work.
	if err := tp.CloseControl(); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.MTU(); err != os.ErrClosed {
		t.Errorf("MTU after CloseControl: %v, want os.ErrClosed", err)
	}
	if err := tp.SetUp(true); err != os.ErrClosed {
		t.Errorf("SetUp after CloseControl: %v, want os.ErrClosed", err)
	}
	if err := tp.CloseControl(); err != nil {
		t.Errorf("second CloseControl: %v", err)
	}
	if _, err := tp.Queue(0).Writev([][]byte{fr}); err != nil {
		t.Errorf("Writev after CloseControl: %v", err)
	}
}

func TestOffload(t *testing.T) {
	ns := enterNetns(t)
	tp := ns.openLink("flt-off", 1, Options{}).tap
	sup := tp.SupportedOffloads()
	base := OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN
	if sup&base != base {
		t.Fatalf("SupportedOffloads = %v, want at least %v", sup, base)
	}
	t.Logf("supported offloads: %v", sup)

	for _, tc := range []struct {
		want, got Offload
	}{
		{0, 0},
		{OffloadCsum, OffloadCsum},
		{OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN, OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN},
		{OffloadTSO4, 0}, // no CSUM: nothing
		{OffloadCsum | OffloadTSOECN, OffloadCsum}, // ECN without TSO
		{OffloadCsum | OffloadUSO4, OffloadCsum},   // USO4 alone
		{OffloadCsum | OffloadUFO, OffloadCsum | OffloadUFO},
		{OffloadCsum | offloadUSO, (OffloadCsum | offloadUSO) & sup},
		{offloadAll, offloadAll & sup},
	} {
		got, err := tp.SetOffload(tc.want)
		if err != nil || got != tc.got {
			t.Errorf("SetOffload(%v) = %v, %v; want %v", tc.want, got, err, tc.got)
		}
		if tp.Offload() != got {
			t.Errorf("Offload() = %v after SetOffload returned %v", tp.Offload(), got)
		}
	}
	prev := tp.Offload()
	if _, err := tp.SetOffload(1 << 20); !errors.Is(err, unix.EINVAL) {
		t.Errorf("unknown bit: %v, want EINVAL", err)
	}
	if tp.Offload() != prev {
		t.Error("a failed SetOffload changed Offload()")
	}
	// The guest feature mapping feeds SetOffload directly.
	acked := uint64(1)<<virtioNetGuestCsum | 1<<virtioNetGuestTSO4 | 1<<virtioNetGuestTSO6
	if got, err := tp.SetOffload(OffloadsForGuest(acked)); err != nil || got != OffloadCsum|OffloadTSO4|OffloadTSO6 {
		t.Errorf("SetOffload(OffloadsForGuest) = %v, %v", got, err)
	}
}

// recvUDP reads one datagram with a timeout.
func recvUDP(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("UDP receive: %v", err)
	}
	return buf[:n]
}
