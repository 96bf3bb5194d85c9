package vmm

// The virtio-rng device (Firecracker's "entropy").

import (
	"fmt"
	"log/slog"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio/rng"
)

// EntropyConfig is the VM's virtio-rng device.
type EntropyConfig struct {
	// RateLimit limits the guest's requests (bandwidth in bytes, ops in
	// requests); nil or unlimited: no limit.
	RateLimit *ratelimit.Config
	Transport string // "pci" (default) or "mmio"
}

// Validate checks c; errors name the config file's keys.
func (c *EntropyConfig) Validate() error {
	if c.RateLimit != nil {
		if err := c.RateLimit.Validate(); err != nil {
			return fmt.Errorf("entropy: %w", err.(*ratelimit.FieldError).Under("rate_limiter"))
		}
	}
	return checkTransport("entropy", c.Transport)
}

// addEntropy attaches Config.Entropy's device, if any.
func (m *Machine) addEntropy() error {
	c := m.cfg.Entropy
	if c == nil {
		return nil
	}
	var lim *ratelimit.Limiter
	if c.RateLimit != nil && !c.RateLimit.Unlimited() {
		l, err := ratelimit.New(*c.RateLimit, nil)
		if err != nil {
			return &ConfigError{Err: fmt.Errorf("entropy: %w", err)}
		}
		lim = l
	}
	dev, err := rng.New(rng.Options{Limiter: lim})
	if err != nil {
		return err
	}
	m.rng = dev
	tr, err := m.attachVirtio(dev, configs.Transport(c.Transport))
	if err != nil {
		return fmt.Errorf("entropy: %w", err)
	}
	m.rngTr = tr
	m.log.Info("virtio-rng device", "transport", c.Transport, "rate_limited", lim != nil)
	return nil
}

// closeEntropy resets the device and logs its counters.
func (m *Machine) closeEntropy() {
	if m.rngTr != nil {
		m.rngTr.Close()
		m.rngTr = nil
	}
	if m.rng != nil {
		s := m.rng.Stats()
		logCounters(m.log, slog.LevelInfo, "virtio-rng counters", s.Counters(), "when", "exit")
		m.rng = nil
	}
}
