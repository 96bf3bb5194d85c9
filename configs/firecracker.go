package configs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Machine limits, with Firecracker's vCPU range and Flint's memory range.
const (
	MinVCPUs          = 1
	MaxVCPUs          = 32
	MinMemSizeMiB     = 16
	MaxMemSizeMiB     = 1 << 20 // 1 TiB
	DefaultVCPUCount  = 1
	DefaultMemSizeMiB = 128 // Firecracker's default
	// MaxIDLength bounds an id in an API path (/drives/{id},
	// /network-interfaces/{id}); a config file's ids are not bounded,
	// as in Firecracker.
	MaxIDLength = 64
)

// Drive cache types and I/O engines (Firecracker's enums).
const (
	CacheUnsafe    = "Unsafe"
	CacheWriteback = "Writeback"
	IOEngineSync   = "Sync"
	IOEngineAsync  = "Async"
)

// VMConfig is a whole VM in the shape of Firecracker's --config-file (and
// of GET /vm/config), plus Flint's own settings under "flint".
type VMConfig struct {
	BootSource        *BootSource        `json:"boot-source,omitempty"`
	MachineConfig     MachineConfig      `json:"machine-config"`
	NetworkInterfaces []NetworkInterface `json:"network-interfaces"`
	Drives            []Drive            `json:"drives"`
	Logger            *Logger            `json:"logger,omitempty"`
	Metrics           *Metrics           `json:"metrics,omitempty"`
	Vsock             *Vsock             `json:"vsock,omitempty"`
	Entropy           *Entropy           `json:"entropy,omitempty"`
	Flint             *Flint             `json:"flint,omitempty"`
}

// BootSource is the kernel, initrd and command line.
type BootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	// BootArgs is the kernel command line; empty means Flint's default.
	BootArgs string `json:"boot_args,omitempty"`
}

// MachineConfig is the VM's shape.
type MachineConfig struct {
	VCPUCount       int    `json:"vcpu_count"`
	MemSizeMiB      int    `json:"mem_size_mib"`
	SMT             bool   `json:"smt"`
	TrackDirtyPages bool   `json:"track_dirty_pages"`
	HugePages       string `json:"huge_pages"` // "None"
}

// DefaultMachineConfig is Firecracker's machine before any PUT: one vCPU,
// 128 MiB.
func DefaultMachineConfig() MachineConfig {
	return MachineConfig{VCPUCount: DefaultVCPUCount, MemSizeMiB: DefaultMemSizeMiB, HugePages: "None"}
}

// NetworkInterface is a virtio-net interface on a host TAP. MTU is a Flint
// extension (0: 1500); the transport and feature switches are under
// "flint".
type NetworkInterface struct {
	IfaceID       string       `json:"iface_id"`
	HostDevName   string       `json:"host_dev_name"`
	GuestMAC      string       `json:"guest_mac,omitempty"`
	MTU           int          `json:"mtu,omitempty"`
	RxRateLimiter *RateLimiter `json:"rx_rate_limiter,omitempty"`
	TxRateLimiter *RateLimiter `json:"tx_rate_limiter,omitempty"`
}

// Drive is a virtio-blk disk backed by a host file.
type Drive struct {
	DriveID      string       `json:"drive_id"`
	PathOnHost   string       `json:"path_on_host"`
	IsRootDevice bool         `json:"is_root_device"`
	IsReadOnly   bool         `json:"is_read_only"`
	PartUUID     string       `json:"partuuid,omitempty"`
	CacheType    string       `json:"cache_type"` // Unsafe (default) or Writeback
	IOEngine     string       `json:"io_engine"`  // Sync
	RateLimiter  *RateLimiter `json:"rate_limiter,omitempty"`
}

// Logger sends Flint's log to a file at a level.
type Logger struct {
	LogPath       string `json:"log_path,omitempty"`
	Level         string `json:"level,omitempty"` // Error, Warning, Info, Debug, Trace, Off (any case)
	ShowLevel     bool   `json:"show_level"`
	ShowLogOrigin bool   `json:"show_log_origin"`
}

// Metrics names the file that receives one JSON object per flush.
type Metrics struct {
	MetricsPath string `json:"metrics_path"`
}

// Action is a PUT /actions request's action_type.
type Action string

// Actions.
const (
	ActionInstanceStart  Action = "InstanceStart"
	ActionSendCtrlAltDel Action = "SendCtrlAltDel"
	ActionFlushMetrics   Action = "FlushMetrics"
)

// Top-level keys: the ones Flint reads and the Firecracker ones it does not
// implement.
var (
	topKeys = []string{"boot-source", "machine-config", "network-interfaces", "drives", "logger", "metrics", "vsock", "entropy", "flint"}
	topNot  = []string{"balloon", "mmds-config", "cpu-config", "serial", "memory-hotplug", "pmem"}
)

// DecodeVMConfig decodes and validates a config file strictly: unknown keys,
// known keys Flint does not implement, wrong types and values out of range
// are errors (*FieldError) that name the field.
func DecodeVMConfig(data []byte) (VMConfig, error) {
	var c VMConfig
	o, err := openObject("", data, topKeys, topNot...)
	if err != nil {
		return c, err
	}
	o.require("boot-source")
	c.MachineConfig = DefaultMachineConfig()
	if v := o.raw("boot-source"); v != nil && o.err == nil {
		b, err := decodeBootSource("boot-source", v)
		o.fail(err)
		c.BootSource = &b
	}
	if v := o.raw("machine-config"); v != nil && o.err == nil {
		c.MachineConfig, err = decodeMachineConfig("machine-config", v, nil)
		o.fail(err)
	}
	for i, v := range o.array("network-interfaces") {
		if o.err != nil {
			break
		}
		n, err := decodeNetworkInterface(fmt.Sprintf("network-interfaces[%d]", i), v)
		o.fail(err)
		c.NetworkInterfaces = append(c.NetworkInterfaces, n)
	}
	for i, v := range o.array("drives") {
		if o.err != nil {
			break
		}
		d, err := decodeDrive(fmt.Sprintf("drives[%d]", i), v)
		o.fail(err)
		c.Drives = append(c.Drives, d)
	}
	if v := o.raw("logger"); v != nil && o.err == nil {
		l, err := decodeLogger("logger", v, Logger{})
		o.fail(err)
		c.Logger = &l
	}
	if v := o.raw("metrics"); v != nil && o.err == nil {
		m, err := decodeMetrics("metrics", v)
		o.fail(err)
		c.Metrics = &m
	}
	if v := o.raw("vsock"); v != nil && o.err == nil {
		vs, err := decodeVsock("vsock", v)
		o.fail(err)
		c.Vsock = &vs
	}
	if v := o.raw("entropy"); v != nil && o.err == nil {
		e, err := decodeEntropy("entropy", v)
		o.fail(err)
		c.Entropy = &e
	}
	if v := o.raw("flint"); v != nil && o.err == nil {
		f, err := decodeFlint("flint", v)
		o.fail(err)
		c.Flint = &f
	}
	if o.err != nil {
		return c, o.err
	}
	return c, c.Validate()
}

// Validate checks c as a whole: every part's values, that a boot source is
// set, that iface_id, host_dev_name, guest_mac and drive_id are unique, that
// at most one drive is the root device, and that the "flint" section only
// names interfaces and drives that exist. The API calls it at InstanceStart.
func (c *VMConfig) Validate() error {
	if c.BootSource == nil {
		return fieldErrorf("boot-source", "is required")
	}
	return c.ValidatePending()
}

// ValidatePending checks c like Validate but allows a missing boot source:
// it is the check for a VM still being configured over the API.
func (c *VMConfig) ValidatePending() error {
	if c.BootSource != nil {
		if err := c.BootSource.validate("boot-source"); err != nil {
			return err
		}
	}
	if err := c.MachineConfig.validate("machine-config"); err != nil {
		return err
	}
	ifaces, taps, macs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, n := range c.NetworkInterfaces {
		p := fmt.Sprintf("network-interfaces[%d]", i)
		if err := n.validate(p); err != nil {
			return err
		}
		if err := unique(ifaces, joinPath(p, "iface_id"), n.IfaceID); err != nil {
			return err
		}
		if err := unique(taps, joinPath(p, "host_dev_name"), n.HostDevName); err != nil {
			return err
		}
		if n.GuestMAC != "" {
			mac, _ := parseMAC(n.GuestMAC)
			if err := unique(macs, joinPath(p, "guest_mac"), mac.String()); err != nil {
				return err
			}
		}
	}
	drives, root := map[string]bool{}, -1
	for i, d := range c.Drives {
		p := fmt.Sprintf("drives[%d]", i)
		if err := d.validate(p); err != nil {
			return err
		}
		if err := unique(drives, joinPath(p, "drive_id"), d.DriveID); err != nil {
			return err
		}
		if d.IsRootDevice {
			if root >= 0 {
				return fieldErrorf(joinPath(p, "is_root_device"), "true: drives[%d] (%q) is already the root device; at most one drive can be", root, c.Drives[root].DriveID)
			}
			root = i
		}
	}
	if c.Logger != nil {
		if err := c.Logger.validate("logger"); err != nil {
			return err
		}
	}
	if c.Metrics != nil {
		if err := c.Metrics.validate("metrics"); err != nil {
			return err
		}
	}
	if c.Vsock != nil {
		if err := c.Vsock.validate("vsock"); err != nil {
			return err
		}
	}
	if c.Entropy != nil {
		if err := c.Entropy.RateLimiter.validate("entropy.rate_limiter"); err != nil {
			return err
		}
	}
	if c.Flint != nil {
		if err := c.Flint.validate("flint", ifaces, drives, c.Vsock != nil, c.Entropy != nil); err != nil {
			return err
		}
	}
	return c.checkDeviceCount()
}

func unique(seen map[string]bool, path, v string) error {
	if seen[v] {
		return fieldErrorf(path, "%q is used twice", v)
	}
	seen[v] = true
	return nil
}

// DecodeBootSource decodes a PUT /boot-source body.
func DecodeBootSource(data []byte) (BootSource, error) { return decodeBootSource("boot-source", data) }

func decodeBootSource(path string, raw json.RawMessage) (BootSource, error) {
	var b BootSource
	o, err := openObject(path, raw, []string{"kernel_image_path", "initrd_path", "boot_args"})
	if err != nil {
		return b, err
	}
	o.require("kernel_image_path")
	o.str("kernel_image_path", &b.KernelImagePath)
	o.str("initrd_path", &b.InitrdPath)
	o.str("boot_args", &b.BootArgs)
	if o.err != nil {
		return b, o.err
	}
	return b, b.validate(path)
}

func (b *BootSource) validate(path string) error {
	if b.KernelImagePath == "" {
		return fieldErrorf(joinPath(path, "kernel_image_path"), "must not be empty")
	}
	return nil
}

// DecodeMachineConfig decodes a PUT /machine-config body: vcpu_count and
// mem_size_mib are required, absent optional keys take their defaults.
func DecodeMachineConfig(data []byte) (MachineConfig, error) {
	return decodeMachineConfig("machine-config", data, nil)
}

// PatchMachineConfig applies a PATCH /machine-config body to cur: only the
// keys present change, and the result must be valid as a whole.
func PatchMachineConfig(cur MachineConfig, data []byte) (MachineConfig, error) {
	return decodeMachineConfig("machine-config", data, &cur)
}

// decodeMachineConfig decodes a full machine config, or patches base.
func decodeMachineConfig(path string, raw json.RawMessage, base *MachineConfig) (MachineConfig, error) {
	m := DefaultMachineConfig()
	o, err := openObject(path, raw, []string{"vcpu_count", "mem_size_mib", "smt", "track_dirty_pages", "huge_pages", "cpu_template"})
	if err != nil {
		return m, err
	}
	if base != nil {
		m = *base
	} else {
		o.require("vcpu_count", "mem_size_mib")
	}
	o.integer("vcpu_count", MinVCPUs, MaxVCPUs, &m.VCPUCount)
	o.integer("mem_size_mib", MinMemSizeMiB, MaxMemSizeMiB, &m.MemSizeMiB)
	o.boolean("smt", &m.SMT)
	o.boolean("track_dirty_pages", &m.TrackDirtyPages)
	o.enum("huge_pages", &m.HugePages, "None", "Transparent", "2M")
	var tmpl string
	o.enum("cpu_template", &tmpl, "None", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1")
	if o.err == nil && tmpl != "" && tmpl != "None" {
		o.fail(unsupported(joinPath(path, "cpu_template"), tmpl))
	}
	if o.err != nil {
		return m, o.err
	}
	return m, m.validate(path)
}

func (m *MachineConfig) validate(path string) error {
	if m.VCPUCount < MinVCPUs || m.VCPUCount > MaxVCPUs {
		return fieldErrorf(joinPath(path, "vcpu_count"), "%d is out of range [%d, %d]", m.VCPUCount, MinVCPUs, MaxVCPUs)
	}
	if m.MemSizeMiB < MinMemSizeMiB || m.MemSizeMiB > MaxMemSizeMiB {
		return fieldErrorf(joinPath(path, "mem_size_mib"), "%d is out of range [%d, %d]", m.MemSizeMiB, MinMemSizeMiB, MaxMemSizeMiB)
	}
	if m.SMT {
		// Flint's vCPUs are one thread per core (CPUID topology).
		return unsupported(joinPath(path, "smt"), true)
	}
	if m.TrackDirtyPages {
		return unsupported(joinPath(path, "track_dirty_pages"), true)
	}
	switch m.HugePages {
	case "", "None":
	case "Transparent", "2M":
		return unsupported(joinPath(path, "huge_pages"), m.HugePages)
	default:
		return fieldErrorf(joinPath(path, "huge_pages"), "%q: want \"None\", \"Transparent\" or \"2M\"", m.HugePages)
	}
	return nil
}

// CheckPathID applies the API's rule for the id in a request path
// (Firecracker's checked_id: not empty, letters, digits or underscores;
// Flint takes ASCII ones, at most MaxIDLength) to id, the value of key
// path. A config file's iface_id and drive_id are any string, as
// Firecracker's --config-file takes them: only the API checks this.
func CheckPathID(path, id string) error {
	if !plainID(id) {
		return fieldErrorf(path, "%q: want 1 to %d letters, digits or underscores", id, MaxIDLength)
	}
	return nil
}

func plainID(id string) bool {
	return id != "" && len(id) <= MaxIDLength && strings.IndexFunc(id, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0
}

// idPath appends an id to a JSON path: as it is when it passes the API's
// rule, else quoted (Go syntax), so that a message naming the path stays
// one line and shows where the id ends.
func idPath(path, id string) string {
	if plainID(id) {
		return joinPath(path, id)
	}
	return joinPath(path, strconv.Quote(id))
}

// DecodeNetworkInterface decodes a PUT /network-interfaces/{id} body.
func DecodeNetworkInterface(data []byte) (NetworkInterface, error) {
	return decodeNetworkInterface("network-interfaces", data)
}

func decodeNetworkInterface(path string, raw json.RawMessage) (NetworkInterface, error) {
	var n NetworkInterface
	o, err := openObject(path, raw, []string{"iface_id", "host_dev_name", "guest_mac", "mtu", "rx_rate_limiter", "tx_rate_limiter"})
	if err != nil {
		return n, err
	}
	o.require("iface_id", "host_dev_name")
	o.str("iface_id", &n.IfaceID)
	o.str("host_dev_name", &n.HostDevName)
	o.str("guest_mac", &n.GuestMAC)
	o.integer("mtu", MinMTU, MaxMTU, &n.MTU)
	o.optRateLimiter("rx_rate_limiter", &n.RxRateLimiter)
	o.optRateLimiter("tx_rate_limiter", &n.TxRateLimiter)
	if o.err != nil {
		return n, o.err
	}
	return n, n.validate(path)
}

func (n *NetworkInterface) validate(path string) error {
	if err := checkTAPName(n.HostDevName); err != nil {
		return fieldErrorf(joinPath(path, "host_dev_name"), "%q: %v", n.HostDevName, err)
	}
	if n.GuestMAC != "" {
		if _, err := parseMAC(n.GuestMAC); err != nil {
			return fieldErrorf(joinPath(path, "guest_mac"), "%q: %v", n.GuestMAC, err)
		}
	}
	if n.MTU != 0 && (n.MTU < MinMTU || n.MTU > MaxMTU) {
		return fieldErrorf(joinPath(path, "mtu"), "%d is out of range [%d, %d]", n.MTU, MinMTU, MaxMTU)
	}
	if err := n.RxRateLimiter.validate(joinPath(path, "rx_rate_limiter")); err != nil {
		return err
	}
	return n.TxRateLimiter.validate(joinPath(path, "tx_rate_limiter"))
}

// DecodeDrive decodes a PUT /drives/{id} body.
func DecodeDrive(data []byte) (Drive, error) { return decodeDrive("drives", data) }

func decodeDrive(path string, raw json.RawMessage) (Drive, error) {
	d := Drive{CacheType: CacheUnsafe, IOEngine: IOEngineSync}
	o, err := openObject(path, raw, []string{"drive_id", "path_on_host", "is_root_device", "is_read_only",
		"partuuid", "cache_type", "io_engine", "rate_limiter"}, "socket")
	if err != nil {
		return d, err
	}
	o.require("drive_id", "path_on_host", "is_root_device")
	o.str("drive_id", &d.DriveID)
	o.str("path_on_host", &d.PathOnHost)
	o.boolean("is_root_device", &d.IsRootDevice)
	o.boolean("is_read_only", &d.IsReadOnly)
	o.str("partuuid", &d.PartUUID)
	o.enum("cache_type", &d.CacheType, CacheUnsafe, CacheWriteback)
	o.enum("io_engine", &d.IOEngine, IOEngineSync, IOEngineAsync)
	o.optRateLimiter("rate_limiter", &d.RateLimiter)
	if o.err != nil {
		return d, o.err
	}
	return d, d.validate(path)
}

func (d *Drive) validate(path string) error {
	if d.PathOnHost == "" {
		return fieldErrorf(joinPath(path, "path_on_host"), "must not be empty")
	}
	if d.IsRootDevice && !validPartUUID(d.PartUUID) {
		return fieldErrorf(joinPath(path, "partuuid"), "%q: want at most %d letters, digits, '-', '/' or '=' (no spaces or quotes)", d.PartUUID, MaxPartUUID)
	}
	switch d.CacheType {
	case "", CacheUnsafe, CacheWriteback:
	default:
		return fieldErrorf(joinPath(path, "cache_type"), "%q: want %q or %q", d.CacheType, CacheUnsafe, CacheWriteback)
	}
	switch d.IOEngine {
	case "", IOEngineSync:
	case IOEngineAsync:
		return unsupported(joinPath(path, "io_engine"), d.IOEngine)
	default:
		return fieldErrorf(joinPath(path, "io_engine"), "%q: want %q or %q", d.IOEngine, IOEngineSync, IOEngineAsync)
	}
	return d.RateLimiter.validate(joinPath(path, "rate_limiter"))
}

// MaxPartUUID bounds a root drive's partuuid (root=PARTUUID=...): a GUID
// or an MBR "SSSSSSSS-PP", optionally with "/PARTNROFF=N"; vmm's bound.
const MaxPartUUID = 64

// validPartUUID reports whether s can follow root=PARTUUID= on the kernel
// command line ("" is none). A partuuid on another drive is ignored, as in
// Firecracker, so only the root device's is checked.
func validPartUUID(s string) bool {
	return len(s) <= MaxPartUUID && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/=") == ""
}

// DecodeLogger decodes a PUT /logger body.
func DecodeLogger(data []byte) (Logger, error) { return decodeLogger("logger", data, Logger{}) }

// UpdateLogger is a second PUT /logger body over the logger cur, as
// Firecracker updates its logger: log_path, show_level and
// show_log_origin left out (or null) keep cur's values; level left out
// is the default again.
func UpdateLogger(cur Logger, data []byte) (Logger, error) {
	cur.Level = ""
	return decodeLogger("logger", data, cur)
}

// decodeLogger decodes raw over base: keys left out keep base's values.
func decodeLogger(path string, raw json.RawMessage, base Logger) (Logger, error) {
	l := base
	o, err := openObject(path, raw, []string{"log_path", "level", "show_level", "show_log_origin"}, "module")
	if err != nil {
		return l, err
	}
	o.str("log_path", &l.LogPath)
	o.str("level", &l.Level)
	o.boolean("show_level", &l.ShowLevel)
	o.boolean("show_log_origin", &l.ShowLogOrigin)
	if o.err != nil {
		return l, o.err
	}
	return l, l.validate(path)
}

// LogLevels are the logger levels (case-insensitive), as in Firecracker,
// which also takes "Warn" for "Warning" (and writes "Warn" in GET
// /vm/config).
var LogLevels = []string{"Error", "Warning", "Info", "Debug", "Trace", "Off"}

func (l *Logger) validate(path string) error {
	if l.Level == "" {
		return nil
	}
	if strings.EqualFold(l.Level, "Warn") {
		return nil
	}
	for _, v := range LogLevels {
		if strings.EqualFold(v, l.Level) {
			return nil
		}
	}
	return fieldErrorf(joinPath(path, "level"), "%q: want one of %s (any case)", l.Level, quoteList(LogLevels))
}

// DecodeMetrics decodes a PUT /metrics body.
func DecodeMetrics(data []byte) (Metrics, error) { return decodeMetrics("metrics", data) }

func decodeMetrics(path string, raw json.RawMessage) (Metrics, error) {
	var m Metrics
	o, err := openObject(path, raw, []string{"metrics_path", "emit_id", "properties"})
	if err != nil {
		return m, err
	}
	o.require("metrics_path")
	o.str("metrics_path", &m.MetricsPath)
	// emit_id false is Firecracker's default; true asks for the
	// instance id in every metrics line, which Flint does not write yet.
	var emitID bool
	o.boolean("emit_id", &emitID)
	if o.err == nil && emitID {
		o.fail(unsupported(joinPath(path, "emit_id"), true))
	}
	// properties: {} (or null) adds nothing to the metrics lines.
	if v := o.raw("properties"); v != nil && o.err == nil && !isEmptyObject(v) {
		o.fail(fieldErrorf(joinPath(path, "properties"), "is not supported by flint yet"))
	}
	if o.err != nil {
		return m, o.err
	}
	return m, m.validate(path)
}

func (m *Metrics) validate(path string) error {
	if m.MetricsPath == "" {
		return fieldErrorf(joinPath(path, "metrics_path"), "must not be empty")
	}
	return nil
}

// DecodeAction decodes a PUT /actions body.
func DecodeAction(data []byte) (Action, error) {
	var a string
	o, err := openObject("actions", data, []string{"action_type"})
	if err != nil {
		return "", err
	}
	o.require("action_type")
	o.enum("action_type", &a, string(ActionInstanceStart), string(ActionSendCtrlAltDel), string(ActionFlushMetrics))
	return Action(a), o.err
}
