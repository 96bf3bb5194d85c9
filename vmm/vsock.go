package vmm

// The virtio-vsock device: its configuration, the listener on uds_path
// and the device on its transport.

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
	"github.com/flintvm/flint/virtio/vsock"
)

// vsockDialTimeout bounds the dial of "<uds_path>_<port>" for a guest
// connection.
const vsockDialTimeout = 2 * time.Second

// VsockConfig is the VM's virtio-vsock device (Firecracker's "vsock").
type VsockConfig struct {
	GuestCID uint64 // at least 3
	// UDSPath is the unix socket host processes connect to ("CONNECT
	// <port>\n"); guest connections to host port P go to UDSPath_P.
	// Flint creates it (mode 0600; a stale socket is replaced) and
	// removes it when the VM ends.
	UDSPath   string
	Transport string // "pci" (default) or "mmio"
}

// Validate checks c without touching the host; errors name the config
// file's keys.
func (c *VsockConfig) Validate() error {
	if c.GuestCID < configs.MinGuestCID || c.GuestCID > configs.MaxGuestCID {
		return fmt.Errorf("vsock: guest_cid %d is out of range [%d, %d]", c.GuestCID, configs.MinGuestCID, uint64(configs.MaxGuestCID))
	}
	if c.UDSPath == "" || len(c.UDSPath) > configs.MaxUDSPath {
		return fmt.Errorf("vsock: uds_path %q: want 1 to %d bytes", c.UDSPath, configs.MaxUDSPath)
	}
	return checkTransport("vsock", c.Transport)
}

// checkTransport checks a device's transport name.
func checkTransport(what, t string) error {
	switch configs.Transport(t) {
	case "", configs.TransportPCI, configs.TransportMMIO:
		return nil
	}
	return fmt.Errorf("%s: transport %q: must be %q or %q", what, t, configs.TransportPCI, configs.TransportMMIO)
}

// addVsock creates Config.Vsock's listener and device, if any. The
// listener is the VM's from here on: closeVsock closes it, which removes
// the socket.
func (m *Machine) addVsock() error {
	c := m.cfg.Vsock
	if c == nil {
		return nil
	}
	ln, err := hostfile.Listen(c.UDSPath, 0o600)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("vsock: uds_path: %w", err)}
	}
	dev, err := vsock.New(vsock.Options{GuestCID: c.GuestCID, Listener: ln,
		Dial: vsock.UnixDialer(c.UDSPath, vsockDialTimeout)})
	if err != nil {
		ln.Close()
		return &ConfigError{Err: err}
	}
	m.vsock = dev
	// Guest connections dial <uds_path>_<port> after the filter is in:
	// Config.SeccompOptions allows connect for a VM with this device.
	tr, err := m.attachVirtio(dev, configs.Transport(c.Transport), "uds_path", c.UDSPath)
	if err != nil {
		return fmt.Errorf("vsock: %w", err)
	}
	m.vsockTr = tr
	m.log.Info("virtio-vsock device", "guest_cid", c.GuestCID, "uds_path", c.UDSPath, "transport", c.Transport)
	return nil
}

// closeVsock resets the device, closes every connection and the
// listener (removing uds_path), and logs the counters.
func (m *Machine) closeVsock() {
	if m.vsockTr != nil {
		m.vsockTr.Close()
		m.vsockTr = nil
	}
	if m.vsock == nil {
		return
	}
	s := m.vsock.Stats()
	logCounters(m.log, slog.LevelInfo, "virtio-vsock counters", s.Counters(), "when", "exit")
	if err := m.vsock.Close(); err != nil {
		m.log.Warn("vsock: closing the listener", "err", err)
	}
	// A listener closed by its owner unlinks its socket; make sure.
	if p := m.cfg.Vsock.UDSPath; p != "" {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(p)
		}
	}
	m.vsock = nil
}
