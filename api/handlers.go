package api

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"

	"github.com/flintvm/flint/configs"
)

func (s *Server) getInstance(*http.Request, []byte) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.info
	info.State = StateNotStarted
	if s.started {
		info.State = StateRunning
	}
	return info, nil
}

func (s *Server) getVersion(*http.Request, []byte) (any, error) {
	return map[string]string{"firecracker_version": s.info.VMMVersion}, nil
}

func (s *Server) getMachineConfig(*http.Request, []byte) (any, error) {
	return s.Config().MachineConfig, nil
}

func (s *Server) getVMConfig(*http.Request, []byte) (any, error) {
	c := s.Config()
	// Firecracker writes empty device lists as [], never null.
	if c.NetworkInterfaces == nil {
		c.NetworkInterfaces = []configs.NetworkInterface{}
	}
	if c.Drives == nil {
		c.Drives = []configs.Drive{}
	}
	return c, nil
}

func (s *Server) putBootSource(r *http.Request, body []byte) (any, error) {
	b, err := configs.DecodeBootSource(body)
	if err != nil {
		return nil, err
	}
	// The files are checked now, as Firecracker does (a missing kernel
	// is a 400 here, not at InstanceStart), after the pre-boot check;
	// stat never blocks, so this is safe under the server's lock.
	return nil, s.update(r, func(c *configs.VMConfig) error {
		if err := b.CheckFiles("boot-source"); err != nil {
			return err
		}
		c.BootSource = &b
		return nil
	})
}

func (s *Server) putMachineConfig(r *http.Request, body []byte) (any, error) {
	m, err := configs.DecodeMachineConfig(body)
	if err != nil {
		return nil, err
	}
	return nil, s.update(r, func(c *configs.VMConfig) error {
		c.MachineConfig = m
		return nil
	})
}

// patchMachineConfig changes only the keys the body has; a body with no
// key is refused, in Firecracker's words.
func (s *Server) patchMachineConfig(r *http.Request, body []byte) (any, error) {
	if emptyObject(body) {
		return nil, faultf("Empty PATCH request. PATCH /machine-config needs at least one key")
	}
	return nil, s.update(r, func(c *configs.VMConfig) error {
		m, err := configs.PatchMachineConfig(c.MachineConfig, body)
		if err != nil {
			return err
		}
		c.MachineConfig = m
		return nil
	})
}

// putNetworkInterface adds the interface, or replaces the one with its id.
func (s *Server) putNetworkInterface(r *http.Request, body []byte) (any, error) {
	n, err := configs.DecodeNetworkInterface(body)
	if err != nil {
		return nil, err
	}
	if err := matchID("network-interfaces", "iface_id", n.IfaceID, r); err != nil {
		return nil, err
	}
	return nil, s.update(r, func(c *configs.VMConfig) error {
		if err := netConflict(c.NetworkInterfaces, n); err != nil {
			return err
		}
		c.NetworkInterfaces = upsert(c.NetworkInterfaces, n, func(x configs.NetworkInterface) bool { return x.IfaceID == n.IfaceID })
		return nil
	})
}

// putDrive adds the drive, or replaces the one with its id.
func (s *Server) putDrive(r *http.Request, body []byte) (any, error) {
	d, err := configs.DecodeDrive(body)
	if err != nil {
		return nil, err
	}
	if err := matchID("drives", "drive_id", d.DriveID, r); err != nil {
		return nil, err
	}
	return nil, s.update(r, func(c *configs.VMConfig) error {
		if err := d.CheckFile("drives"); err != nil {
			return err
		}
		if d.IsRootDevice {
			for _, x := range c.Drives {
				if x.IsRootDevice && x.DriveID != d.DriveID {
					return faultf("A root block device already exists! Drive %q is the root device; at most one drive can be", x.DriveID)
				}
			}
		}
		c.Drives = upsert(c.Drives, d, func(x configs.Drive) bool { return x.DriveID == d.DriveID })
		return nil
	})
}

// netConflict refuses n when another interface (another iface_id)
// already has its MAC or its TAP, in the words Firecracker's clients
// match on.
func netConflict(list []configs.NetworkInterface, n configs.NetworkInterface) error {
	for _, x := range list {
		switch {
		case x.IfaceID == n.IfaceID:
		case n.GuestMAC != "" && strings.EqualFold(x.GuestMAC, n.GuestMAC):
			return faultf("The MAC address is already in use: %s (interface %q has it)", n.GuestMAC, x.IfaceID)
		case x.HostDevName == n.HostDevName:
			return faultf("Could not create the network device: the TAP %s is already interface %q's", n.HostDevName, x.IfaceID)
		}
	}
	return nil
}

// matchID checks, as Firecracker does, that the id in the request's
// path passes the API's id rule (configs.CheckPathID, which a config
// file's ids need not) and that the body's id (key, in the body of the
// object at path) is the same. Each failure is told in Firecracker's
// words (its clients match on them), then in Flint's.
func matchID(path, key, id string, r *http.Request) error {
	p := pathID(r)
	if err := configs.CheckPathID("the path's id", p); err != nil {
		return faultf("API Resource IDs can only contain alphanumeric characters and underscores. (%v)", err)
	}
	switch {
	case id == p:
		return nil
	case path == "network-interfaces":
		return faultf("The id from the path [%s] does not match the id from the body [%s]! (the body's %s %q, the path's %q)", configs.Shown(p), configs.Shown(id), key, id, p)
	default:
		return faultf("The id from the path does not match the id from the body! (the body's %s %q, the path's %q)", key, id, p)
	}
}

// upsert replaces the element same matches with v, or appends v.
func upsert[T any](list []T, v T, same func(T) bool) []T {
	for i := range list {
		if same(list[i]) {
			list[i] = v
			return list
		}
	}
	return append(list, v)
}

// putLogger sets the logger. A second PUT changes what it names, as
// Firecracker's does (configs.UpdateLogger). As in Firecracker, the log
// file is opened now and the request log goes there from this request's
// own line on (output.go).
func (s *Server) putLogger(r *http.Request, body []byte) (any, error) {
	l, err := configs.DecodeLogger(body)
	if err != nil {
		return nil, err
	}
	named := l.LogPath != ""
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *os.File
	err = s.updateLocked(r, func(c *configs.VMConfig) error {
		if err := l.CheckPath("logger"); err != nil { // stat: the clearest words for a missing directory
			return err
		}
		if c.Logger != nil {
			// The body decoded above; over the earlier logger it
			// decodes the same.
			if l, err = configs.UpdateLogger(*c.Logger, body); err != nil {
				return err
			}
		}
		c.Logger = &l
		f, err = s.openLog(&l, named) // last: nothing fails after it but ValidatePending
		return err
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	s.useLog(&l, f)
	return nil, nil
}

// putMetrics sets the metrics file once, as Firecracker does: a second
// PUT, or one after --metrics-path or a config file's metrics, is refused.
// The file is opened now, as Firecracker opens it, and held until
// Shutdown (a FIFO's reader sees a writer from now on); the VM writes
// through its own descriptor.
func (s *Server) putMetrics(r *http.Request, body []byte) (any, error) {
	m, err := configs.DecodeMetrics(body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *os.File
	err = s.updateLocked(r, func(c *configs.VMConfig) error {
		if c.Metrics != nil {
			return faultf("Reinitialization of metrics not allowed. The metrics file is already %s (it is set once)", c.Metrics.MetricsPath)
		}
		if err := m.CheckPath("metrics"); err != nil {
			return err
		}
		c.Metrics = &m
		f, err = s.openMetrics(&m)
		return err
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	s.metricsFile = f
	return nil, nil
}

func (s *Server) putAction(_ *http.Request, body []byte) (any, error) {
	a, err := configs.DecodeAction(body)
	if err != nil {
		return nil, err
	}
	switch a {
	case configs.ActionInstanceStart:
		return nil, s.start()
	case configs.ActionSendCtrlAltDel:
		if err := s.requireStarted(string(a)); err != nil {
			return nil, err
		}
		return nil, s.ctrl.SendCtrlAltDel()
	default: // FlushMetrics: a VM without a metrics file has nothing to flush (204)
		if err := s.requireStarted(string(a)); err != nil {
			return nil, err
		}
		return nil, s.ctrl.FlushMetrics()
	}
}

// start validates the whole configuration and has the controller build and
// start the VM. The lock is held throughout, so no change slips in between
// the check and the start, and two starts cannot race.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return faultf("InstanceStart: the VM is already running")
	}
	if s.cfg.BootSource == nil {
		return faultf("InstanceStart: Cannot start microvm without kernel configuration. There is no boot source: PUT /boot-source first") // Firecracker's words, then Flint's
	}
	if err := s.cfg.Validate(); err != nil {
		return faultf("InstanceStart: %v", err)
	}
	if err := s.ctrl.Start(s.cfg); err != nil {
		return faultf("InstanceStart: %v", err)
	}
	s.started = true
	return nil
}

// requireStarted refuses a post-boot call (what: the action or request)
// before InstanceStart, in the words Firecracker's clients match on.
func (s *Server) requireStarted(what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startedLocked(what)
}

func (s *Server) startedLocked(what string) error {
	if !s.started {
		return faultf("%s %s: the VM has not started yet (PUT /actions InstanceStart first)", notBeforeStart, what)
	}
	return nil
}

// Firecracker's phrases for a call made in the wrong phase; its clients
// and tests match on them.
const (
	notBeforeStart = "The requested operation is not supported before starting the microVM."
	notAfterStart  = "The requested operation is not supported after starting the microVM."
)

// emptyObject reports whether body is the JSON object {}.
func emptyObject(body []byte) bool {
	var keys map[string]json.RawMessage
	return json.Unmarshal(body, &keys) == nil && keys != nil && len(keys) == 0
}
