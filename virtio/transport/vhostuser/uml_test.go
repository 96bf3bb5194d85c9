package vhostuser_test

// An end-to-end test with the real Linux virtio_net driver: Debian's
// user-mode Linux (virtio_uml is a vhost-user frontend) boots a busybox
// initramfs that loads virtio_net, configures eth0 and pings a host that
// the test's in-memory backend plays (ARP and ICMP echo replies).

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/umlhost"
	"github.com/flintvm/flint/internal/umlhost/umltest"
	"github.com/flintvm/flint/virtio/netdev"
)

var (
	peerMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	peerIP  = [4]byte{10, 0, 0, 1}
)

// pingResponder wraps the fake backend: frames the guest sends are
// answered when they are ARP requests for peerIP or ICMP echo requests
// to it.
type pingResponder struct {
	*fakeBackend
	mu      sync.Mutex
	arps    int
	echoes  int
	guestHW [6]byte
}

func (p *pingResponder) Writev(iovs [][]byte) (int, error) {
	var f []byte
	for _, v := range iovs {
		f = append(f, v...)
	}
	if len(f) >= netdev.HdrLen+14 {
		if reply := p.answer(f[netdev.HdrLen:]); reply != nil {
			p.inject(append(make([]byte, netdev.HdrLen), reply...))
		}
	}
	return p.fakeBackend.Writev(iovs)
}

func (p *pingResponder) answer(e []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch binary.BigEndian.Uint16(e[12:]) {
	case 0x0806: // ARP
		a := e[14:]
		if len(a) < 28 || binary.BigEndian.Uint16(a[6:]) != 1 || !bytes.Equal(a[24:28], peerIP[:]) {
			return nil
		}
		p.arps++
		copy(p.guestHW[:], a[8:14])
		r := make([]byte, 42)
		copy(r[0:], a[8:14])
		copy(r[6:], peerMAC[:])
		binary.BigEndian.PutUint16(r[12:], 0x0806)
		copy(r[14:], []byte{0, 1, 8, 0, 6, 4, 0, 2})
		copy(r[22:], peerMAC[:])
		copy(r[28:], peerIP[:])
		copy(r[32:], a[8:14])
		copy(r[38:], a[14:18])
		return r
	case 0x0800: // IPv4
		ip := e[14:]
		if len(ip) < 20 {
			return nil
		}
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[9] != 1 || !bytes.Equal(ip[16:20], peerIP[:]) || total > len(ip) || ihl+8 > total || ip[ihl] != 8 {
			return nil
		}
		p.echoes++
		r := make([]byte, 14+total)
		copy(r[0:], e[6:12])
		copy(r[6:], peerMAC[:])
		binary.BigEndian.PutUint16(r[12:], 0x0800)
		rip := r[14:]
		copy(rip, ip[:total])
		copy(rip[12:16], ip[16:20])
		copy(rip[16:20], ip[12:16])
		rip[8] = 64
		binary.BigEndian.PutUint16(rip[10:], 0)
		binary.BigEndian.PutUint16(rip[10:], checksum(rip[:ihl]))
		icmp := rip[ihl:total]
		icmp[0] = 0 // echo reply
		binary.BigEndian.PutUint16(icmp[2:], 0)
		binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
		return r
	}
	return nil
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

const umlInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
insmod /lib/failover.ko
insmod /lib/net_failover.ko
insmod /lib/virtio_net.ko
sleep 1
echo "MAC=$(cat /sys/class/net/eth0/address) MTU=$(cat /sys/class/net/eth0/mtu)"
ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
if ping -c 3 -W 5 10.0.0.1; then echo PING-OK; else echo PING-FAIL; fi
poweroff -f
`

// TestMain lets runUML start user-mode Linux through umlhost (this binary,
// re-executed, installs umlhost's filter and executes UML).
func TestMain(m *testing.M) {
	umlhost.MaybeExec()
	os.Exit(m.Run())
}

// TestUML boots user-mode Linux against the server: virtio_net probes
// over vhost-user (UML's negotiation: features twice, no
// PROTOCOL_FEATURES, no SET_VRING_ENABLE, pipe call fds), reads MAC and
// MTU through GET_CONFIG, and pings a peer through both rings. It then
// boots a second UML on the same server (reconnect).
func TestUML(t *testing.T) {
	if testing.Short() {
		t.Skip("boots user-mode Linux")
	}
	dir := t.TempDir()
	// A missing harness skips, and fails under CI, whose .ci/run installs
	// user-mode-linux and busybox-static.
	initrd := umltest.Initramfs(t, dir, umlInit, "net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko")
	be := &pingResponder{fakeBackend: newFake()}
	dev, err := netdev.New(be, netdev.Options{MAC: testMAC, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	t.Cleanup(func() { // after the server's end (cleanups run last first)
		if t.Failed() || testing.Verbose() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	sock := filepath.Join(dir, "net.sock")
	srv := umltest.Serve(t, dev, sock, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for boot := range 2 {
		out := runUML(t, dir, initrd, sock)
		if testing.Verbose() {
			t.Logf("boot %d console:\n%s", boot, out)
		}
		if !strings.Contains(out, "PING-OK") {
			t.Fatalf("boot %d: ping failed; console:\n%s", boot, out)
		}
		if !strings.Contains(out, "MAC=52:54:00:12:34:56 MTU=1400") {
			t.Fatalf("boot %d: MAC/MTU not from the config space; console:\n%s", boot, out)
		}
		deadline := time.Now().Add(5 * time.Second)
		for srv.Connected() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.echoes < 6 || be.arps < 2 {
		t.Fatalf("responder saw %d ARP requests and %d echo requests", be.arps, be.echoes)
	}
	waitStats(t, dev, func(st netdev.Stats) bool { return st.RxPackets >= 6 && st.TxPackets >= 6 })
}

func runUML(t *testing.T, dir, initrd, sock string) string {
	return umltest.Run(t, dir, 60*time.Second, "mem=128M", "initrd="+initrd, "con=null", "con0=fd:0,fd:1",
		"virtio_uml.device="+sock+":1", "quiet")
}
