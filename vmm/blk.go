package vmm

// virtio-blk drives: their configuration, the root= command-line
// fragment, and attaching a drive (on the transport virtio.go builds).

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio/blk"
)

// Drive cache types (Firecracker's cache_type).
const (
	// CacheUnsafe: FLUSH is not offered, writes reach the image when the
	// host page cache writes them back. The default.
	CacheUnsafe = "Unsafe"
	// CacheWriteback: FLUSH is offered and syncs the image (fdatasync).
	CacheWriteback = "Writeback"
)

// maxPartUUID bounds root=PARTUUID= values: a GUID (36 characters) or an
// MBR "SSSSSSSS-PP", optionally with "/PARTNROFF=N".
const maxPartUUID = 64

// DriveConfig describes one virtio-blk drive of the VM.
type DriveConfig struct {
	ID        string // drive_id, any string as in Firecracker's config files; its first 20 bytes are the virtio-blk serial (GET_ID)
	Path      string // raw image on the host
	ReadOnly  bool
	Root      bool   // the kernel command line gets root=/dev/vdX (or root=PARTUUID=... when PartUUID is set) and rw/ro
	PartUUID  string // partuuid: the root partition, for root=PARTUUID=
	CacheType string // "Unsafe" (default) or "Writeback" (flush -> fdatasync)
	Transport string // "pci" (default) or "mmio", as for --net
	Packed    bool   // offer the packed virtqueue layout (VIRTIO_F_RING_PACKED)
	// RateLimit limits the drive's requests (bandwidth in bytes, ops in
	// requests); nil or unlimited buckets: no limit.
	RateLimit *ratelimit.Config
}

// Validate checks d without touching the host: the error names the field
// as the config file spells it (drive_id, path_on_host, partuuid,
// cache_type, transport, rate_limiter.<bucket>.<field>).
func (d DriveConfig) Validate() error {
	switch {
	case d.Path == "":
		return fmt.Errorf("drive %q: path_on_host: must not be empty", d.ID)
	case d.PartUUID != "" && !d.Root:
		return fmt.Errorf("drive %q: partuuid: only meaningful with is_root_device", d.ID)
	case len(d.PartUUID) > maxPartUUID ||
		strings.IndexFunc(d.PartUUID, func(r rune) bool { return !isAlnum(r) && !strings.ContainsRune("-/=", r) }) >= 0:
		return fmt.Errorf("drive %q: partuuid %q: at most %d letters, digits, '-', '/' or '='", d.ID, d.PartUUID, maxPartUUID)
	}
	switch d.CacheType {
	case "", CacheUnsafe, CacheWriteback:
	default:
		return fmt.Errorf("drive %q: cache_type %q: must be %q or %q", d.ID, d.CacheType, CacheUnsafe, CacheWriteback)
	}
	switch configs.Transport(d.Transport) {
	case "", configs.TransportPCI, configs.TransportMMIO:
	default:
		return fmt.Errorf("drive %q: transport %q: must be %q or %q", d.ID, d.Transport, configs.TransportPCI, configs.TransportMMIO)
	}
	if d.RateLimit != nil {
		if err := d.RateLimit.Validate(); err != nil {
			return fmt.Errorf("drive %q: %w", d.ID, err.(*ratelimit.FieldError).Under("rate_limiter"))
		}
	}
	return nil
}

// driveSerial is the virtio-blk serial (GET_ID) of drive id: its first
// blk.IDBytes bytes. Firecracker's ids run to 64 characters (any length
// in a config file); two drives whose ids share their first 20 bytes get
// the same serial.
func driveSerial(id string) string { return id[:min(len(id), blk.IDBytes)] }

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// validateDrives checks every drive and the set: unique drive_ids and at
// most one root device.
func validateDrives(drives []DriveConfig) error {
	ids := map[string]bool{}
	root := ""
	for _, d := range drives {
		if err := d.Validate(); err != nil {
			return err
		}
		if ids[d.ID] {
			return fmt.Errorf("drive_id %q: used by two drives", d.ID)
		}
		ids[d.ID] = true
		if d.Root {
			if root != "" {
				return fmt.Errorf("drive %q: is_root_device: drive %q is already the root device", d.ID, root)
			}
			root = d.ID
		}
	}
	return nil
}

// orderDrives returns the drives in the order they are attached: the root
// device first (so it is /dev/vda, as in Firecracker), then the others in
// their configured order.
func orderDrives(drives []DriveConfig) []DriveConfig {
	out := make([]DriveConfig, 0, len(drives))
	for _, d := range drives {
		if d.Root {
			out = append(out, d)
		}
	}
	for _, d := range drives {
		if !d.Root {
			out = append(out, d)
		}
	}
	return out
}

// rootArgs is the kernel command-line fragment for the root drive:
// "root=/dev/vdX rw" (X from the drive's position in orderDrives, which
// puts the root first, so vda), or "root=PARTUUID=<uuid> rw" when the
// drive has a PartUUID; "ro" instead of "rw" for a read-only drive. It is
// "" without a root drive. Linux names virtio disks in probe order, which
// follows the attach order for drives on one transport; mixing transports
// makes the order the guest's choice, so use a PartUUID then.
func rootArgs(drives []DriveConfig) (string, error) {
	if err := validateDrives(drives); err != nil {
		return "", err
	}
	for i, d := range orderDrives(drives) {
		if !d.Root {
			continue
		}
		mode := "rw"
		if d.ReadOnly {
			mode = "ro"
		}
		if d.PartUUID != "" {
			return "root=PARTUUID=" + d.PartUUID + " " + mode, nil
		}
		return "root=/dev/" + vdName(i) + " " + mode, nil
	}
	return "", nil
}

// vdName is Linux's name for the i-th virtio disk: vda..vdz, vdaa..vdzz,
// vdaaa... (virtblk_name_format).
func vdName(i int) string {
	var b []byte
	for i++; i > 0; i = (i - 1) / 26 {
		b = append([]byte{byte('a' + (i-1)%26)}, b...)
	}
	return "vd" + string(b)
}

// limiterFor builds a device's rate limiter, nil when it limits nothing.
func limiterFor(c *ratelimit.Config) (*ratelimit.Limiter, error) { return deviceLimiter(c, false) }

// deviceLimiter builds a device's rate limiter: nil when it limits
// nothing, unless patchable asks for one anyway (an unlimited limiter
// that Update can set later: Config.PatchableLimiters).
func deviceLimiter(c *ratelimit.Config, patchable bool) (*ratelimit.Limiter, error) {
	if c == nil || c.Unlimited() {
		if !patchable {
			return nil, nil
		}
		c = &ratelimit.Config{}
	}
	return ratelimit.New(*c, nil)
}

// addDrive opens d's image and puts a virtio-blk device for it on d's
// transport, like addNetDevice does for an interface. The caller keeps
// the device and its transport and closes both after the vCPUs have
// stopped (closeDrives): the transport resets the device and releases
// its kick eventfds, then the device closes the image.
func (m *Machine) addDrive(d DriveConfig) (*blk.Device, virtioTransport, error) {
	if err := d.Validate(); err != nil {
		return nil, nil, &ConfigError{Err: err}
	}
	lim, err := deviceLimiter(d.RateLimit, m.cfg.PatchableLimiters)
	if err != nil {
		return nil, nil, &ConfigError{Err: err}
	}
	dev, err := blk.Open(d.Path, blk.Options{ID: driveSerial(d.ID), ReadOnly: d.ReadOnly,
		Writeback: d.CacheType == CacheWriteback, Packed: d.Packed, Limiter: lim})
	if err != nil {
		return nil, nil, fmt.Errorf("drive %q: %w", d.ID, err)
	}
	tr, err := m.attachVirtio(dev, configs.Transport(d.Transport), "drive", d.ID)
	if err != nil {
		dev.Close()
		return nil, nil, fmt.Errorf("drive %q: %w", d.ID, err)
	}
	m.log.Info("virtio-blk device", "drive", d.ID, "path", d.Path, "transport", d.Transport,
		"sectors", dev.Capacity(), "read_only", d.ReadOnly, "cache", d.CacheType, "rate_limited", lim != nil)
	return dev, tr, nil
}

// closeDrives logs each drive's counters and closes it: its transport
// first (which resets the device and releases the kick eventfds; issue
// 13 finding 10: it used to be dropped, leaking them per VM), then the
// device (the image). Call it after the vCPUs have stopped, before guest
// memory is unmapped. trs[i] is drives[i]'s transport (nil: none).
func closeDrives(log *slog.Logger, drives []*blk.Device, ids []string, trs []virtioTransport) {
	for i, d := range drives {
		if i < len(trs) && trs[i] != nil {
			trs[i].Close()
		}
		if d == nil {
			continue
		}
		id := ""
		if i < len(ids) {
			id = ids[i]
		}
		logDriveStats(log, slog.LevelInfo, "exit", id, d)
		d.Close()
	}
}

// UpdateDrive changes the running drive id, as the API's PATCH
// /drives/{id} does: path, when not empty, becomes its image (see
// blk.Device.ReplaceImage: same size, swapped between two requests once
// a Writeback drive's old image is synced), and rl, when not nil, its
// rate limiter (both buckets start over full). Both are checked before
// either changes, and the image is swapped first: on error nothing
// changed (a failed sync of the old image fails the update and keeps
// the image, whose later flushes are IOERR). A rate limiter needs
// Config.PatchableLimiters or a limiter configured at start.
func (m *Machine) UpdateDrive(id, path string, rl *ratelimit.Config) error {
	m.dumpMu.Lock() // Close marks the devices closed under it
	defer m.dumpMu.Unlock()
	if m.devicesClosed {
		return errors.New("the VM has stopped")
	}
	i := slices.Index(m.driveIDs, id)
	if i < 0 || i >= len(m.drives) {
		return fmt.Errorf("no drive %q", id)
	}
	dev := m.drives[i]
	if err := checkPatchLimiter("rate_limiter", dev.Limiter(), rl); err != nil {
		return err
	}
	if path != "" {
		if err := dev.ReplaceImage(path); err != nil {
			return err
		}
		m.log.Info("virtio-blk image replaced", "drive", id, "path", path)
	}
	if rl != nil {
		return dev.Limiter().Update(*rl) // checked above: cannot fail
	}
	return nil
}

// checkPatchLimiter checks that rl (nil: no change) can replace lim's
// configuration; key names the limiter in errors.
func checkPatchLimiter(key string, lim *ratelimit.Limiter, rl *ratelimit.Config) error {
	switch {
	case rl == nil:
		return nil
	case lim == nil:
		return fmt.Errorf("%s: the device was built without a rate limiter, so none can be set while it runs (vmm.Config.PatchableLimiters)", key)
	}
	if err := rl.Validate(); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// logDriveStats logs one drive's counters.
func logDriveStats(log *slog.Logger, level slog.Level, when, id string, d *blk.Device) {
	s := d.Stats()
	logCounters(log, level, "virtio-blk counters", s.Counters(), "when", when, "drive", id)
}
