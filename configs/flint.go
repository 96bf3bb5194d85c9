package configs

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Flint holds Flint's own settings, under the config file's top-level key
// "flint". Each mirrors a `flint run` flag.
type Flint struct {
	// Console is where COM1 goes: "stdio", "none" or "file:PATH" (--console).
	Console string `json:"console,omitempty"`
	// Timeout stops the VM with exit code 3 after this long (--timeout).
	Timeout Duration `json:"timeout,omitempty"`
	// ExitMarker stops the VM with exit code 0 when the console prints it
	// (--exit-marker).
	ExitMarker string `json:"exit_marker,omitempty"`
	// Timing prints boot timing on exit (--timing).
	Timing bool `json:"timing,omitempty"`
	// NetworkInterfaces holds per-interface settings keyed by iface_id.
	NetworkInterfaces map[string]FlintNet `json:"network-interfaces,omitempty"`
	// Drives holds per-drive settings keyed by drive_id.
	Drives map[string]FlintDrive `json:"drives,omitempty"`
	// Vsock and Entropy hold the vsock and entropy devices' transports.
	Vsock   *FlintDevice `json:"vsock,omitempty"`
	Entropy *FlintDevice `json:"entropy,omitempty"`
}

// FlintDevice is a device's transport (the vsock and entropy devices).
type FlintDevice struct {
	Transport Transport `json:"transport,omitempty"`
}

// FlintNet is one interface's transport and virtio-net feature switches,
// the --net options a Firecracker interface has no key for. Nil switches
// keep their default (on).
type FlintNet struct {
	Transport Transport `json:"transport,omitempty"`
	MrgRxbuf  *bool     `json:"mrg_rxbuf,omitempty"`
	TSO       *bool     `json:"tso,omitempty"`
	Csum      *bool     `json:"csum,omitempty"`
	UFO       *bool     `json:"ufo,omitempty"`
	Indirect  *bool     `json:"indirect,omitempty"`
	EventIdx  *bool     `json:"event_idx,omitempty"`
	// Packed offers the packed virtqueue layout (--net ...,packed=on);
	// nil keeps the default, off.
	Packed *bool `json:"packed,omitempty"`
	// Queues is the number of queue pairs (--net ...,queues=N); 0 keeps
	// the default, 1.
	Queues int `json:"queues,omitempty"`
	// RxIRQGap and TxIRQGap are the interrupt gaps (--net
	// ...,rx_irq_gap=D,tx_irq_gap=D) as duration strings ("50us", "0");
	// nil keeps the defaults.
	RxIRQGap *Duration `json:"rx_irq_gap,omitempty"`
	TxIRQGap *Duration `json:"tx_irq_gap,omitempty"`
	// IRQResend is the interrupt resend interval (--net
	// ...,irq_resend=D); nil keeps the default, 0.
	IRQResend *Duration `json:"irq_resend,omitempty"`
	// Poll is the busy-poll window (--net ...,poll=D); nil keeps the
	// default, 0 (no polling).
	Poll *Duration `json:"poll,omitempty"`
}

// FlintDrive is one drive's transport and ring layout.
type FlintDrive struct {
	Transport Transport `json:"transport,omitempty"`
	// Packed offers the packed virtqueue layout (default off).
	Packed bool `json:"packed,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

var flintNetKeys = []string{"transport", "mrg_rxbuf", "tso", "csum", "ufo", "indirect", "event_idx", "packed", "queues",
	"rx_irq_gap", "tx_irq_gap", "irq_resend", "poll"}

// irqGap decodes an interrupt gap or a busy-poll window, a duration
// string from 0 to MaxIRQGap, into a newly allocated Duration.
func (o *object) irqGap(key string, dst **Duration) {
	var s string
	o.str(key, &s)
	if o.err != nil || !o.has(key) {
		return
	}
	d, err := parseIRQGap(s)
	if err != nil {
		o.fail(fieldErrorf(joinPath(o.path, key), "%q: %v", s, err))
		return
	}
	g := Duration(d)
	*dst = &g
}

func decodeFlint(path string, raw json.RawMessage) (Flint, error) {
	var f Flint
	o, err := openObject(path, raw, []string{"console", "timeout", "exit_marker", "timing", "network-interfaces", "drives",
		"vsock", "entropy"})
	if err != nil {
		return f, err
	}
	o.str("console", &f.Console)
	if c := f.Console; o.err == nil && c != "" && !ValidConsole(c) {
		// Checked here, not only where the console is opened: a
		// --console flag overrides the key, and must not hide a
		// mistake in the file.
		o.fail(fieldErrorf(joinPath(path, "console"), "%q: want \"stdio\", \"stderr\", \"none\" or \"file:PATH\"", c))
	}
	var timeout string
	o.str("timeout", &timeout)
	if o.err == nil && timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil || d < 0 {
			o.fail(fieldErrorf(joinPath(path, "timeout"), "%q: want a non-negative duration such as \"90s\" or \"5m\"", timeout))
		}
		f.Timeout = Duration(d)
	}
	o.str("exit_marker", &f.ExitMarker)
	o.boolean("timing", &f.Timing)
	o.objectMap("network-interfaces", flintNetKeys, func(p string, e *object) {
		var n FlintNet
		e.transport(&n.Transport)
		e.optBool("mrg_rxbuf", &n.MrgRxbuf)
		e.optBool("tso", &n.TSO)
		e.optBool("csum", &n.Csum)
		e.optBool("ufo", &n.UFO)
		e.optBool("indirect", &n.Indirect)
		e.optBool("event_idx", &n.EventIdx)
		e.optBool("packed", &n.Packed)
		e.integer("queues", 1, MaxNetQueues, &n.Queues)
		e.irqGap("rx_irq_gap", &n.RxIRQGap)
		e.irqGap("tx_irq_gap", &n.TxIRQGap)
		e.irqGap("irq_resend", &n.IRQResend)
		e.irqGap("poll", &n.Poll)
		if f.NetworkInterfaces == nil {
			f.NetworkInterfaces = map[string]FlintNet{}
		}
		f.NetworkInterfaces[p] = n
	})
	o.objectMap("drives", []string{"transport", "packed"}, func(p string, e *object) {
		var d FlintDrive
		e.transport(&d.Transport)
		e.boolean("packed", &d.Packed)
		if f.Drives == nil {
			f.Drives = map[string]FlintDrive{}
		}
		f.Drives[p] = d
	})
	f.Vsock = o.flintDevice("vsock")
	f.Entropy = o.flintDevice("entropy")
	return f, o.err
}

// flintDevice decodes key's {"transport": ...}, nil when absent.
func (o *object) flintDevice(key string) *FlintDevice {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return nil
	}
	e, err := openObject(joinPath(o.path, key), v, []string{"transport"})
	if err != nil {
		o.fail(err)
		return nil
	}
	var d FlintDevice
	e.transport(&d.Transport)
	o.fail(e.err)
	return &d
}

// objectMap decodes key's value as an object whose keys are ids and whose
// values are objects with the given keys; fn decodes each (id, value).
func (o *object) objectMap(key string, keys []string, fn func(id string, e *object)) {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return
	}
	m, err := parseObject(joinPath(o.path, key), v)
	if err != nil {
		o.fail(err)
		return
	}
	for _, id := range sortedKeys(m.fields) {
		// An id is any string, as a config file's iface_id and
		// drive_id are: idPath quotes an odd one in messages.
		e, err := openObject(idPath(m.path, id), m.fields[id], keys)
		if err != nil {
			o.fail(err)
			return
		}
		fn(id, e)
		if e.err != nil {
			o.fail(e.err)
			return
		}
	}
}

// transport decodes "transport": "pci" or "mmio".
func (o *object) transport(dst *Transport) {
	var s string
	o.enum("transport", &s, string(TransportPCI), string(TransportMMIO))
	if s != "" {
		*dst = Transport(s)
	}
}

// validate checks that every id in f names an interface or drive that
// exists (ifaces and drives are the sets of ids), and that the vsock and
// entropy settings are for devices the config has.
func (f *Flint) validate(path string, ifaces, drives map[string]bool, vsock, entropy bool) error {
	if f.Timeout < 0 {
		return fieldErrorf(joinPath(path, "timeout"), "must not be negative")
	}
	for _, id := range sortedKeys(f.NetworkInterfaces) {
		if !ifaces[id] {
			return fieldErrorf(idPath(joinPath(path, "network-interfaces"), id), "names no interface in network-interfaces (no iface_id %q)", id)
		}
	}
	for _, id := range sortedKeys(f.Drives) {
		if !drives[id] {
			return fieldErrorf(idPath(joinPath(path, "drives"), id), "names no drive in drives (no drive_id %q)", id)
		}
	}
	if f.Vsock != nil && !vsock {
		return fieldErrorf(joinPath(path, "vsock"), "is set but the config has no vsock section")
	}
	if f.Entropy != nil && !entropy {
		return fieldErrorf(joinPath(path, "entropy"), "is set but the config has no entropy section")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// NetInterfaces resolves c's network interfaces into the devices Flint
// builds: the Firecracker keys, then each interface's "flint" switches, then
// the same checks as --net. c must have passed Validate.
func (c *VMConfig) NetInterfaces() ([]NetInterface, error) {
	var out []NetInterface
	for i, ni := range c.NetworkInterfaces {
		n := DefaultNetInterface(ni.HostDevName)
		n.ID = ni.IfaceID
		if ni.GuestMAC != "" {
			mac, err := parseMAC(ni.GuestMAC)
			if err != nil {
				return nil, fieldErrorf(fmt.Sprintf("network-interfaces[%d].guest_mac", i), "%q: %v", ni.GuestMAC, err)
			}
			n.MAC = mac
		}
		if ni.MTU != 0 {
			n.MTU = ni.MTU
		}
		n.RxRateLimiter, n.TxRateLimiter = ni.RxRateLimiter, ni.TxRateLimiter
		path := fmt.Sprintf("network-interfaces[%d]", i)
		if c.Flint != nil {
			if f, ok := c.Flint.NetworkInterfaces[ni.IfaceID]; ok {
				path = idPath("flint.network-interfaces", ni.IfaceID)
				if f.Transport != "" {
					n.Transport = f.Transport
				}
				if f.Queues != 0 {
					n.Queues = f.Queues
				}
				for _, d := range []struct {
					v   *Duration
					dst *time.Duration
				}{{f.RxIRQGap, &n.RxIRQGap}, {f.TxIRQGap, &n.TxIRQGap}, {f.IRQResend, &n.IRQResend}, {f.Poll, &n.Poll}} {
					if d.v != nil {
						*d.dst = time.Duration(*d.v)
					}
				}
				for _, s := range []struct {
					v   *bool
					dst *bool
				}{{f.MrgRxbuf, &n.MrgRxbuf}, {f.TSO, &n.TSO}, {f.Csum, &n.Csum}, {f.UFO, &n.UFO},
					{f.Indirect, &n.Indirect}, {f.EventIdx, &n.EventIdx}, {f.Packed, &n.Packed}} {
					if s.v != nil {
						*s.dst = *s.v
					}
				}
			}
		}
		if err := n.Validate(); err != nil {
			return nil, fieldErrorf(path, "(iface_id %q): %v", ni.IfaceID, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// VsockTransport is the vsock device's transport from the "flint"
// section, pci when unset.
func (c *VMConfig) VsockTransport() Transport {
	if c.Flint != nil && c.Flint.Vsock != nil && c.Flint.Vsock.Transport != "" {
		return c.Flint.Vsock.Transport
	}
	return TransportPCI
}

// EntropyTransport is the entropy device's transport from the "flint"
// section, pci when unset.
func (c *VMConfig) EntropyTransport() Transport {
	if c.Flint != nil && c.Flint.Entropy != nil && c.Flint.Entropy.Transport != "" {
		return c.Flint.Entropy.Transport
	}
	return TransportPCI
}

// DrivePacked reports whether drive id's "flint" section asks for the
// packed virtqueue layout.
func (c *VMConfig) DrivePacked(id string) bool {
	return c.Flint != nil && c.Flint.Drives[id].Packed
}

// DriveTransport returns drive id's transport from the "flint" section,
// pci when unset.
func (c *VMConfig) DriveTransport(id string) Transport {
	if c.Flint != nil && c.Flint.Drives[id].Transport != "" {
		return c.Flint.Drives[id].Transport
	}
	return TransportPCI
}

// ValidConsole reports whether s is a console spec: stdio, stderr, none
// or file:PATH (vmm.ParseConsole takes these, and flint.console in a
// config file).
func ValidConsole(s string) bool {
	switch s {
	case "stdio", "stderr", "none":
		return true
	}
	return strings.HasPrefix(s, "file:") && len(s) > len("file:")
}
