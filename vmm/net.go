package vmm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/net/tap"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/netdev"
	"github.com/flintvm/flint/virtio/transport"
)

// The TAP queue is the virtio-net device's backend as it is, and steers
// (TUNSETQUEUE) for its multiqueue.
var (
	_ netdev.Backend     = (*tap.Queue)(nil)
	_ netdev.Steerer     = (*tap.Queue)(nil)
	_ netdev.Drainer     = (*tap.Queue)(nil) // VQ_PAIRS_SET drains a queue before it detaches it
	_ netdev.Pinner      = (*tap.Queue)(nil) // ... with every frame steered to pair 1 meanwhile
	_ netdev.ReadvParker = (*tap.Queue)(nil) // RX reads or parks in one call (else it falls back to TryReadv + WaitReadable)
)

// --net's queues=N is the device's number of pairs: the two limits agree
// (a compile error otherwise).
var (
	_ [configs.MaxNetQueues - netdev.MaxQueuePairs]struct{}
	_ [netdev.MaxQueuePairs - configs.MaxNetQueues]struct{}
)

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
	rx, tx    *ratelimit.Limiter // the device's limiters (nil: none)
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
	return virtio.WithRingPacked(f, n.Packed)
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
			return tapError("--net tap="+n.TAP, err)
		}
	}
	return nil
}

// tapError prefixes err with what named the TAP (a flag or key); an
// interface of that name that cannot be attached as a TAP
// (tap.ErrWrongDevice) is the user's input, a ConfigError.
func tapError(named string, err error) error {
	err = fmt.Errorf("%s: %w", named, err)
	if errors.Is(err, tap.ErrWrongDevice) {
		return &ConfigError{Err: err}
	}
	return err
}

func (m *Machine) addNetDevice(n configs.NetInterface) error {
	nd, err := openNetDeviceWith(n, m.cfg.PatchableLimiters)
	if err != nil {
		return err
	}
	m.nets = append(m.nets, nd)
	mac := macFor(n)
	tr, err := m.attachVirtio(nd.dev, n.Transport, "tap", n.TAP)
	if err != nil {
		return err
	}
	nd.transport = tr
	warnNoSteering(m.log, nd.tap)
	m.log.Info("virtio-net device", "tap", n.TAP, "transport", n.Transport, "mac", net.HardwareAddr(mac[:]).String(),
		"mtu", n.MTU, "queues", nd.dev.Pairs(), "features", fmt.Sprintf("%#x", netFeatures(n)))
	return nil
}

// warnNoSteering logs, for a multiqueue TAP whose steering program could
// not be loaded, that a pair-count change down can drop the frames the
// host steers to a queue as it is detached.
func warnNoSteering(log *slog.Logger, t *tap.Tap) {
	if err := t.SteeringError(); err != nil {
		log.Warn("virtio-net: no steering pin for the multiqueue TAP: when the guest uses fewer pairs, frames steered to a queue as it is detached can be dropped",
			"tap", t.Name(), "err", err)
	}
}

// openNetDevice opens (or creates) n's TAP, gives it n's MTU, and builds
// the virtio-net device on it, offloads following what the guest acks. The
// caller closes the TAP after the device has been reset.
func openNetDevice(n configs.NetInterface) (*tap.Tap, *netdev.Device, error) {
	nd, err := openNetDeviceWith(n, false)
	if err != nil {
		return nil, nil, err
	}
	return nd.tap, nd.dev, nil
}

// openNetDeviceWith is openNetDevice, with rate limiters on the device
// even when n has none if patchable (Config.PatchableLimiters).
func openNetDeviceWith(n configs.NetInterface, patchable bool) (*netDevice, error) {
	rx, err := deviceLimiter(RateLimitConfig(n.RxRateLimiter), patchable)
	if err != nil {
		return nil, fmt.Errorf("rx_rate_limiter: %w", err)
	}
	tx, err := deviceLimiter(RateLimitConfig(n.TxRateLimiter), patchable)
	if err != nil {
		return nil, fmt.Errorf("tx_rate_limiter: %w", err)
	}
	t, err := tap.Open(tap.Options{Name: n.TAP, Mode: tap.OpenOrCreate, Queues: max(n.Queues, 1)})
	if err != nil {
		return nil, err
	}
	if cur, err := t.MTU(); err == nil && cur != n.MTU {
		if err := t.SetMTU(n.MTU); err != nil {
			t.Close()
			return nil, fmt.Errorf("setting the TAP's MTU to %d: %w", n.MTU, err)
		}
	}
	// The last SIOC* call: the control socket (AF_INET) must not outlive
	// the setup into the sandbox.
	if err := t.CloseControl(); err != nil {
		t.Close()
		return nil, err
	}
	bes := make([]netdev.Backend, t.NumQueues())
	for i, q := range t.Queues() {
		bes[i] = q
	}
	dev, err := netdev.NewMulti(bes, netdev.Options{
		RxLimiter: rx,
		TxLimiter: tx,
		Features:  netFeatures(n),
		MAC:       macFor(n),
		MTU:       uint16(n.MTU),
		RxIRQGap:  n.RxIRQGap,
		TxIRQGap:  n.TxIRQGap,
		IRQResend: n.IRQResend,
		Poll:      n.Poll,
		SetOffload: func(f uint64) error {
			_, err := t.SetOffload(tap.OffloadsForGuest(f))
			return err
		},
	})
	if err != nil {
		t.Close()
		return nil, err
	}
	return &netDevice{cfg: n, tap: t, dev: dev, rx: rx, tx: tx}, nil
}

// UpdateNetInterface gives the running interface id (its iface_id, or
// its TAP's name for a --net interface) new rate limiters, as the API's
// PATCH /network-interfaces/{id} does: rx and tx, when not nil, replace
// the configuration in force (both buckets start over full). Both are
// checked before either changes. It needs Config.PatchableLimiters or
// limiters configured at start. A device throttled by the old limiter
// asks the new one within virtio.MaxThrottle (100 ms).
func (m *Machine) UpdateNetInterface(id string, rx, tx *ratelimit.Config) error {
	m.dumpMu.Lock() // Close marks the devices closed under it
	defer m.dumpMu.Unlock()
	if m.devicesClosed {
		return errors.New("the VM has stopped")
	}
	i := slices.IndexFunc(m.nets, func(nd *netDevice) bool { return nd.cfg.ID == id || nd.cfg.ID == "" && nd.cfg.TAP == id })
	if i < 0 {
		return fmt.Errorf("no network interface %q", id)
	}
	nd := m.nets[i]
	if err := checkPatchLimiter("rx_rate_limiter", nd.rx, rx); err != nil {
		return err
	}
	if err := checkPatchLimiter("tx_rate_limiter", nd.tx, tx); err != nil {
		return err
	}
	if rx != nil {
		nd.rx.Update(*rx) // checked above: cannot fail
	}
	if tx != nil {
		nd.tx.Update(*tx)
	}
	return nil
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
		if nd.dev.Pairs() == 1 {
			continue
		}
		for k, p := range nd.dev.PairStats() {
			m.log.Log(context.Background(), level, "virtio-net queue pair", "when", when, "tap", nd.cfg.TAP, "pair", k+1,
				"rx_packets", p.RxPackets, "rx_bytes", p.RxBytes, "tx_packets", p.TxPackets, "tx_bytes", p.TxBytes)
		}
		shrinks, pinned := nd.dev.Shrinks()
		m.log.Log(context.Background(), level, "virtio-net queue pairs", "when", when, "tap", nd.cfg.TAP,
			"pairs", nd.dev.Pairs(), "active", nd.dev.ActivePairs(), "shrinks", shrinks, "shrinks_pinned", pinned)
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
