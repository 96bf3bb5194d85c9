package vmm

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/net/tap"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/netdev"
	"github.com/flintvm/flint/virtio/transport"
)

// The TAP queue is the virtio-net device's backend as it is.
var _ netdev.Backend = (*tap.Queue)(nil)

// virtioTransport is a virtio device's transport (MMIO or PCI): Close
// resets its device, Snapshot reads its state for dumps (dump.go).
type virtioTransport interface {
	Close()
	Snapshot() transport.Snapshot
}

// netDevice is one --net interface: the host TAP, the device, and the
// transport that shows it to the guest.
type netDevice struct {
	cfg       configs.NetInterface
	tap       *tap.Tap
	dev       *netdev.Device
	transport virtioTransport
}

// netFeatures maps an interface's switches onto the device's feature bits.
func netFeatures(n configs.NetInterface) uint64 {
	f := uint64(netdev.DefaultFeatures)
	clear := func(fs ...virtio.Feature) {
		for _, x := range fs {
			f &^= x.Mask()
		}
	}
	if !n.MrgRxbuf {
		clear(netdev.FeatureMrgRxbuf)
	}
	if !n.TSO {
		clear(netdev.FeatureGuestTSO4, netdev.FeatureGuestTSO6, netdev.FeatureGuestECN,
			netdev.FeatureHostTSO4, netdev.FeatureHostTSO6, netdev.FeatureHostECN)
	}
	if !n.UFO {
		clear(netdev.FeatureGuestUFO, netdev.FeatureHostUFO)
	}
	if !n.Csum {
		clear(netdev.FeatureCsum, netdev.FeatureGuestCsum)
	}
	if !n.Indirect {
		clear(virtio.FeatureRingIndirectDesc)
	}
	if !n.EventIdx {
		clear(virtio.FeatureRingEventIdx)
	}
	return f
}

// macFor returns the interface's MAC, or a stable locally administered one
// derived from the TAP name (52:54:00 is the prefix VMMs conventionally use).
func macFor(n configs.NetInterface) [6]byte {
	var mac [6]byte
	if n.MAC != nil {
		copy(mac[:], n.MAC)
		return mac
	}
	h := fnv.New32a()
	h.Write([]byte(n.TAP))
	s := h.Sum32()
	return [6]byte{0x52, 0x54, 0x00, byte(s >> 16), byte(s >> 8), byte(s)}
}

// addNetDevices opens each interface's TAP and puts a virtio-net device on
// its transport: a PCI function (MSI-X, INTx fallback) or a virtio-mmio
// window described in the ACPI DSDT.
func (m *Machine) addNetDevices() error {
	for _, n := range m.cfg.Net {
		if err := m.addNetDevice(n); err != nil {
			return fmt.Errorf("--net tap=%s: %w", n.TAP, err)
		}
	}
	return nil
}

func (m *Machine) addNetDevice(n configs.NetInterface) error {
	t, dev, err := openNetDevice(n)
	if err != nil {
		return err
	}
	nd := &netDevice{cfg: n, tap: t, dev: dev}
	m.nets = append(m.nets, nd)
	mac := macFor(n)
	tr, err := m.attachVirtio(nd.dev, n.Transport, "tap", n.TAP)
	if err != nil {
		return err
	}
	nd.transport = tr
	m.log.Info("virtio-net device", "tap", n.TAP, "transport", n.Transport, "mac", net.HardwareAddr(mac[:]).String(),
		"mtu", n.MTU, "features", fmt.Sprintf("%#x", netFeatures(n)))
	return nil
}

// openNetDevice opens (or creates) n's TAP, gives it n's MTU, and builds
// the virtio-net device on it, offloads following what the guest acks. The
// caller closes the TAP after the device has been reset.
func openNetDevice(n configs.NetInterface) (*tap.Tap, *netdev.Device, error) {
	t, err := tap.Open(tap.Options{Name: n.TAP, Mode: tap.OpenOrCreate})
	if err != nil {
		return nil, nil, err
	}
	if cur, err := t.MTU(); err == nil && cur != n.MTU {
		if err := t.SetMTU(n.MTU); err != nil {
			t.Close()
			return nil, nil, fmt.Errorf("setting the TAP's MTU to %d: %w", n.MTU, err)
		}
	}
	rx, err := limiterFor(RateLimitConfig(n.RxRateLimiter))
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("rx_rate_limiter: %w", err)
	}
	tx, err := limiterFor(RateLimitConfig(n.TxRateLimiter))
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("tx_rate_limiter: %w", err)
	}
	dev, err := netdev.New(t.Queue(0), netdev.Options{
		RxLimiter: rx,
		TxLimiter: tx,
		Features:  netFeatures(n),
		MAC:       macFor(n),
		MTU:       uint16(n.MTU),
		SetOffload: func(f uint64) error {
			_, err := t.SetOffload(tap.OffloadsForGuest(f))
			return err
		},
	})
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	return t, dev, nil
}

// RateLimitConfig converts a config file's rate limiter into the
// ratelimit package's; nil stays nil (no limit).
func RateLimitConfig(r *configs.RateLimiter) *ratelimit.Config {
	if r == nil {
		return nil
	}
	bucket := func(b *configs.TokenBucket) ratelimit.BucketConfig {
		if b == nil {
			return ratelimit.BucketConfig{}
		}
		return ratelimit.BucketConfig{Size: b.Size, OneTimeBurst: b.OneTimeBurst, RefillTime: b.RefillTime}
	}
	return &ratelimit.Config{Bandwidth: bucket(r.Bandwidth), Ops: bucket(r.Ops)}
}

// logNetStats logs every interface's device counters (at exit, and in a
// state dump), so a transfer that went wrong shows where packets went.
// A dump is asked for, so it logs at warn; the exit summary at info.
func (m *Machine) logNetStats(when string) {
	level := slog.LevelInfo
	if when == "dump" {
		level = slog.LevelWarn
	}
	for _, nd := range m.nets {
		s := nd.dev.Stats()
		logCounters(m.log, level, "virtio-net counters", s.Counters(), "when", when, "tap", nd.cfg.TAP)
	}
}

// closeNetDevices resets every device (through its transport) and closes
// the TAPs.
func (m *Machine) closeNetDevices() {
	if len(m.nets) > 0 {
		m.logNetStats("exit")
	}
	for _, nd := range m.nets {
		if nd.transport != nil {
			nd.transport.Close()
		}
		nd.tap.Close()
	}
	m.nets = nil
}
