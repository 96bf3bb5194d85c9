package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strings"
)

// SpecPath is where Flint puts the Spec in the generated initramfs.
const SpecPath = "/flint/agent.json"

// maxSpecSize bounds the Spec the agent reads: it is written by Flint, but a
// user --initrd appended before it could carry a file of that name.
const maxSpecSize = 1 << 20

// Spec is what Flint tells the agent to do, written as JSON into the
// generated initramfs. Unknown keys are an error: the agent and the host are
// the same binary, so a mismatch is a bug to report, not to skip.
type Spec struct {
	// Modules are the kernel modules to load, as paths inside the
	// initramfs, dependencies first.
	Modules []string `json:"modules,omitempty"`
	// Mounts are mounted in order after the modules are loaded.
	Mounts []Mount `json:"mounts,omitempty"`
	// Root, when set, is the directory the command runs chrooted into
	// (e.g. an overlay of the host's shared root); the guest's /proc,
	// /sys and /dev are bind-mounted there first.
	Root string `json:"root,omitempty"`
	// After are mounted after Root's own filesystems (the --share
	// directories).
	After []Mount `json:"after,omitempty"`
	// Interfaces are configured before the command starts.
	Interfaces []Interface `json:"interfaces,omitempty"`
	// Argv is the command and its arguments; Argv[0] is looked up in PATH
	// (from Env) unless it contains a slash.
	Argv []string `json:"argv"`
	// Env is the command's environment, KEY=VALUE.
	Env []string `json:"env,omitempty"`
	// Dir is the command's working directory, inside Root.
	Dir string `json:"dir,omitempty"`
	// Stdin, Stdout and Stderr are device paths (e.g. /dev/hvc1) the
	// command's streams are connected to; empty means /dev/null.
	Stdin  string `json:"stdin,omitempty"`
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	// DeviceWaitMs bounds how long the agent waits for a device node
	// (a stream's device, a share's tag) to appear after the modules are
	// loaded. 0 means DefaultDeviceWait.
	DeviceWaitMs int `json:"device_wait_ms,omitempty"`
}

// DefaultDeviceWaitMs is how long a device node may take to appear.
const DefaultDeviceWaitMs = 5000

// Mount is one mount(2) call; Target is created if missing.
type Mount struct {
	Source  string   `json:"source"`
	Target  string   `json:"target"`
	FSType  string   `json:"fstype"`
	Options []string `json:"options,omitempty"` // flag names (MountFlags) and fs data
	// Opaque, for an overlay, names directories created in its upperdir
	// (with upperdir and workdir themselves) and marked opaque before the
	// mount, so the overlay never looks them up in the lower layers (a
	// shared host root refuses lookups of its /proc and /sys).
	Opaque []string `json:"opaque,omitempty"`
	// Optional: a failure is a line on the console, not the run's end
	// (a convenience, such as the kernel's modules at /lib/modules,
	// must not fail a run that needs none).
	Optional bool `json:"optional,omitempty"`
	// InRoot, set by Prepare for a Spec.After mount inside Spec.Root,
	// is that root: Target's directories are made and its symbolic
	// links resolved there (mkdirInRoot), as the command sees them.
	InRoot string `json:"-"`
}

// Interface gives the guest interface with MAC the address Addr (CIDR).
type Interface struct {
	MAC  string `json:"mac"`
	Addr string `json:"addr"`
}

// DecodeSpec reads and validates a Spec.
func DecodeSpec(r io.Reader) (*Spec, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("agent spec: %w", err)
	}
	if len(b) > maxSpecSize {
		return nil, fmt.Errorf("agent spec: larger than %d bytes", maxSpecSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var s Spec
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("agent spec: %w", err)
	}
	if d.More() {
		return nil, errors.New("agent spec: data after the JSON object")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks the Spec without touching the system.
func (s *Spec) Validate() error {
	switch {
	case len(s.Argv) == 0:
		return errors.New("agent spec: no command (argv is empty)")
	case s.Argv[0] == "":
		return errors.New("agent spec: the command's name is empty (argv[0] is \"\")")
	}
	for _, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return errors.New("agent spec: a command argument contains a NUL byte")
		}
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("agent spec: environment entry %q is not KEY=VALUE", e)
		}
	}
	for _, m := range s.Modules {
		if err := checkAbs("module", m); err != nil {
			return err
		}
	}
	for _, m := range append(append([]Mount(nil), s.Mounts...), s.After...) {
		if err := checkAbs("mount target", m.Target); err != nil {
			return err
		}
		if m.FSType == "" {
			return fmt.Errorf("agent spec: mount on %s has no fstype", m.Target)
		}
		if _, _, err := MountFlags(m.Options); err != nil {
			return fmt.Errorf("agent spec: mount on %s: %w", m.Target, err)
		}
		for _, o := range m.Opaque {
			if o == "" || o == "." || o == ".." || strings.ContainsAny(o, "/\x00") {
				return fmt.Errorf("agent spec: mount on %s: opaque directory %q is not one path element", m.Target, o)
			}
		}
	}
	for name, p := range map[string]string{"root": s.Root, "stdin": s.Stdin, "stdout": s.Stdout, "stderr": s.Stderr} {
		if p != "" {
			if err := checkAbs(name, p); err != nil {
				return err
			}
		}
	}
	if s.Dir != "" {
		if err := checkAbs("dir", s.Dir); err != nil {
			return err
		}
	}
	for _, i := range s.Interfaces {
		if _, err := parseMAC(i.MAC); err != nil {
			return fmt.Errorf("agent spec: interface %q: %w", i.MAC, err)
		}
		if p, err := netip.ParsePrefix(i.Addr); err != nil || !p.Addr().Is4() {
			return fmt.Errorf("agent spec: interface %s: address %q is not an IPv4 CIDR", i.MAC, i.Addr)
		}
	}
	if s.DeviceWaitMs < 0 || s.DeviceWaitMs > 600_000 {
		return fmt.Errorf("agent spec: device_wait_ms %d out of range 0-600000", s.DeviceWaitMs)
	}
	return nil
}

func checkAbs(what, p string) error {
	if p == "" || !path.IsAbs(p) || path.Clean(p) != p || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("agent spec: %s %q is not a clean absolute path", what, p)
	}
	return nil
}

// parseMAC parses aa:bb:cc:dd:ee:ff (lower or upper case) into its canonical
// lower-case form, as /sys/class/net/*/address shows it.
func parseMAC(s string) (string, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return "", errors.New("not a MAC address (want six hex pairs)")
	}
	for _, p := range parts {
		if len(p) != 2 || strings.Trim(strings.ToLower(p), "0123456789abcdef") != "" {
			return "", errors.New("not a MAC address (want six hex pairs)")
		}
	}
	return strings.ToLower(s), nil
}
