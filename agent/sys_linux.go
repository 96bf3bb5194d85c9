package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// Linux is the System of a real guest: the agent running as PID 1.
type Linux struct{}

// EarlyMounts mounts what every later step and the command need
// (earlyMounts), makes /dev's links and names the guest (nameGuest). /dev is devtmpfs, so the device
// nodes of the modules loaded next appear on their own.
func (Linux) EarlyMounts() error {
	exists := func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}
	if err := setupEarly(Linux{}.Mount, exists, "/dev", os.Stderr); err != nil {
		return err
	}
	read := func() (string, error) {
		b, err := os.ReadFile("/proc/sys/kernel/hostname")
		return string(b), err
	}
	set := func(name string) error { return unix.Sethostname([]byte(name)) }
	if err := nameGuest(read, set); err != nil {
		logf(os.Stderr, "host name: %v", err) // a name is not worth failing the run
	}
	return nil
}

// LoadModule loads one module file with finit_module(2). EEXIST (already
// loaded, or built into this kernel) is success.
func (Linux) LoadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// Mount creates m.Target and mounts m there.
func (Linux) Mount(m Mount) error {
	flags, data, err := MountFlags(m.Options)
	if err != nil {
		return err
	}
	if m.InRoot != "" {
		target, err := mkdirInRoot(m.InRoot, strings.TrimPrefix(m.Target, m.InRoot))
		if err != nil {
			return err
		}
		m.Target = target
	} else if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return err
	}
	if m.FSType == "overlay" {
		if err := prepareOverlay(m); err != nil {
			return err
		}
	}
	if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
		// A bind mount ignores MS_RDONLY: bind first, then remount it read-only.
		if err := unix.Mount(m.Source, m.Target, m.FSType, flags&^unix.MS_RDONLY, data); err != nil {
			return err
		}
		return unix.Mount("", m.Target, "", flags|unix.MS_REMOUNT, "")
	}
	return unix.Mount(m.Source, m.Target, m.FSType, flags, data)
}

// Progress writes s to the exit device.
func (Linux) Progress(s exitdev.Stage) { ReportProgress(s) }

// prepareOverlay creates an overlay's upperdir and workdir, and its
// Opaque directories in the upperdir, marked opaque (the
// trusted.overlay.opaque attribute) so lookups stop there.
func prepareOverlay(m Mount) error {
	var upper string
	for _, o := range m.Options {
		for _, key := range []string{"upperdir=", "workdir="} {
			if dir, ok := strings.CutPrefix(o, key); ok {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				if key == "upperdir=" {
					upper = dir
				}
			}
		}
	}
	if upper == "" && len(m.Opaque) > 0 {
		return errors.New("opaque directories need an upperdir")
	}
	for _, name := range m.Opaque {
		dir := filepath.Join(upper, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Setxattr(dir, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("marking %s opaque: %w", dir, err)
		}
	}
	return nil
}

// WaitDevice polls for path every 10 ms until it exists or d passes.
func (Linux) WaitDevice(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := os.Stat(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v: %w", path, d, unix.ENODEV)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LoopbackUp brings lo up.
func (Linux) LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return ifUp(fd, "lo")
}

// ConfigureInterface finds the interface by MAC in /sys/class/net, gives it
// addr with SIOCSIFADDR/SIOCSIFNETMASK and brings it and lo up.
func (Linux) ConfigureInterface(mac string, addr netip.Prefix) error {
	name, err := interfaceByMAC(mac, 5*time.Second)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := ifUp(fd, "lo"); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	a := addr.Addr().As4()
	if err := ifr.SetInet4Addr(a[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("%s: SIOCSIFADDR: %w", name, err)
	}
	mask := net.CIDRMask(addr.Bits(), 32)
	if err := ifr.SetInet4Addr(mask); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("%s: SIOCSIFNETMASK: %w", name, err)
	}
	return ifUp(fd, name)
}

func ifUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// interfaceByMAC waits up to d for an interface whose address is mac.
func interfaceByMAC(mac string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		dirs, _ := filepath.Glob("/sys/class/net/*")
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, "address"))
			if err == nil && strings.TrimSpace(string(b)) == mac {
				return filepath.Base(dir), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no interface with MAC %s within %v", mac, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
