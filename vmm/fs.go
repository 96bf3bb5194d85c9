package vmm

// Command mode's shared host directories: one virtio-fs device (virtio/fs)
// per share, on CommandTransport.

import (
	"fmt"

	"github.com/flintvm/flint/virtio/fs"
)

// Share is a host directory the guest mounts with virtio-fs.
type Share struct {
	// Tag is what the guest mounts (`mount -t virtiofs TAG DIR`).
	Tag string
	// HostDir is the host directory served.
	HostDir string
	// ReadOnly refuses every change.
	ReadOnly bool
}

// MaxShares bounds Config.Command.Shares: each takes one of the
// virtio-mmio interrupt pins, which the command's streams share.
const MaxShares = 5

// addShares attaches a virtio-fs device per share.
func (m *Machine) addShares(c *commandRun, shares []Share) error {
	if len(shares) > MaxShares {
		return &ConfigError{Err: fmt.Errorf("%d shared directories: at most %d", len(shares), MaxShares)}
	}
	for _, s := range shares {
		dev, err := fs.New(fs.Config{Tag: s.Tag, Root: s.HostDir, ReadOnly: s.ReadOnly, Log: m.log})
		if err != nil {
			return &ConfigError{Err: err}
		}
		c.shares = append(c.shares, dev)
		tr, err := m.attachVirtio(dev, CommandTransport, "tag", s.Tag, "dir", s.HostDir)
		if err != nil {
			return fmt.Errorf("share %s: %w", s.HostDir, err)
		}
		c.trs = append(c.trs, tr)
	}
	return nil
}
