package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/devices/pci"
	"github.com/flintvm/flint/vmm/vmmtest"

	"github.com/flintvm/flint/internal/testenv"
)

// inNetns runs fn on an OS thread inside a network namespace the test
// creates (and deletes), so the TAPs Flint creates never touch the host's.
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	needKVM(t)
	inNetnsNoKVM(t, fn)
}

// inNetnsNoKVM is inNetns for a test that builds devices without a VM.
func inNetnsNoKVM(t *testing.T, fn func()) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil || os.Geteuid() != 0 {
		testenv.SkipOrFail(t, fmt.Sprintf("TAP tests need root and iproute2 (ip: %v, euid %d)", err, os.Geteuid()))
	}
	ns := fmt.Sprintf("flint-vmm-test-%d", rand.Int63())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	nsf, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread never leaves the namespace: it is not unlocked, so the
		// runtime discards it when this goroutine ends.
		runtime.LockOSThread()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns: %v", err)
			return
		}
		fn()
	}()
	<-done
}

// TestNetDeviceDropsControlSocket: once the TAP is set up the device
// keeps no AF_INET control socket (a sandboxed VMM could send UDP to
// the host's network through it): the TAP's SIOC* calls fail after.
func TestNetDeviceDropsControlSocket(t *testing.T) {
	inNetnsNoKVM(t, func() {
		n := configs.DefaultNetInterface("fltctl0")
		n.MTU = 9000
		nd, err := openNetDeviceWith(n, false)
		if err != nil {
			t.Error(err)
			return
		}
		defer nd.tap.Close()
		if _, err := nd.tap.MTU(); err != os.ErrClosed {
			t.Errorf("the TAP's control socket is open: MTU() = %v", err)
		}
		out, err := exec.Command("ip", "-o", "link", "show", "fltctl0").Output()
		if err != nil || !strings.Contains(string(out), " mtu 9000 ") {
			t.Errorf("MTU not set before the socket closed: %q (%v)", out, err)
		}
	})
}

func TestNetDevicesOnPCIAndMMIO(t *testing.T) {
	inNetns(t, func() {
		pciNet := configs.DefaultNetInterface("fltpci0")
		mmioNet := configs.DefaultNetInterface("fltmmio0")
		mmioNet.Transport = configs.TransportMMIO
		mmioNet.MTU = 9000
		m, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64, Console: "none",
			Net: []configs.NetInterface{pciNet, mmioNet}})
		if err != nil {
			t.Error(err)
			return
		}
		defer m.Close()
		// The PCI function answers config reads through 0xCF8/0xCFC as the
		// guest would issue them: vendor 0x1af4, device 0x1041 (net).
		found := false
		for dev := uint8(1); dev < 32; dev++ {
			addr := make([]byte, 4)
			binary.LittleEndian.PutUint32(addr, pci.ConfigAddress(0, dev, 0, 0))
			m.pio.Write(0xcf8, addr)
			id := make([]byte, 4)
			m.pio.Read(0xcfc, id)
			if binary.LittleEndian.Uint32(id) == 0x1041_1af4 {
				found = true
			}
		}
		if !found {
			t.Error("no virtio-net PCI function on bus 0")
		}
		// The MMIO window: magic "virt", version 2, device id 1.
		regs := make([]byte, 4)
		base := platformMMIOWindow.Start
		for off, want := range map[uint64]uint32{0: 0x74726976, 4: 2, 8: 1} {
			m.mmio.Read(base+off, regs)
			if got := binary.LittleEndian.Uint32(regs); got != want {
				t.Errorf("virtio-mmio register %#x = %#x, want %#x", off, got, want)
			}
		}
		if len(m.acpiDevices) != 1 || m.acpiDevices[0].HID != "LNRO0005" || m.acpiDevices[0].MMIOBase != base {
			t.Errorf("ACPI devices %+v", m.acpiDevices)
		}
		if len(m.pciINTx) != 1 {
			t.Errorf("PCI INTx routes %+v", m.pciINTx)
		}
		// The TAPs exist, with the MTU the guest is told.
		for name, mtu := range map[string]int{"fltpci0": 1500, "fltmmio0": 9000} {
			// A child forked from this thread shares its namespace (sysfs
			// would show the host's).
			out, err := exec.Command("ip", "-o", "link", "show", name).Output()
			if err != nil || !strings.Contains(string(out), fmt.Sprintf(" mtu %d ", mtu)) {
				t.Errorf("%s MTU %q (%v), want %d", name, out, err, mtu)
			}
		}
	})
}

// TestTAPOfWrongKindIsUsageError: an interface name that exists and is
// not a TAP (loopback here), or a TAP whose multi_queue setting does not
// fit queues=, is the user's input: ServeNetBackend and the VM's devices
// answer a ConfigError (exit code 2) naming the flag and saying why.
func TestTAPOfWrongKindIsUsageError(t *testing.T) {
	inNetnsNoKVM(t, func() {
		if out, err := exec.Command("ip", "tuntap", "add", "flt-sq", "mode", "tap").CombinedOutput(); err != nil {
			t.Errorf("ip tuntap add: %v: %s", err, out)
			return
		}
		sq := configs.DefaultNetInterface("flt-sq")
		sq.Queues = 2
		for _, c := range []struct {
			n    configs.NetInterface
			want string
		}{
			{configs.DefaultNetInterface("lo"), "--tap lo: "},
			{sq, "made without multi_queue"},
		} {
			err := ServeNetBackend(t.Context(), filepath.Join(t.TempDir(), "s"), c.n, nil, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ServeNetBackend(tap %s): %v, want a ConfigError saying %q", c.n.TAP, err, c.want)
			}
		}
		if err := tapError("--net tap=x", os.ErrNotExist); errors.As(err, new(*ConfigError)) {
			t.Errorf("tapError made %v a usage error", err)
		}
	})
}
