package api

// Post-boot PATCH requests: a running drive's backing file and rate
// limiter, a running interface's rate limiters. The server checks the
// body, the phase and the id, merges the rate limiter bucket by bucket
// with the one in force, has the controller apply it to the running
// device, and only then records it in the configuration (GET /vm/config).

import (
	"net/http"
	"slices"

	"github.com/flintvm/flint/configs"
)

// Updater changes a running VM's devices; a Controller that implements it
// serves the PATCH requests (without, they answer "not supported"). Its
// errors become 400 responses; on error nothing changed.
type Updater interface {
	// UpdateDrive gives the drive id a new backing file (path; "" keeps
	// the file) and/or the rate limiter rl (the whole limiter in force
	// afterwards; nil keeps the current one).
	UpdateDrive(id, path string, rl *configs.RateLimiter) error
	// UpdateNetworkInterface gives the interface id the rate limiters rx
	// and tx (each the whole limiter in force afterwards; nil keeps it).
	UpdateNetworkInterface(id string, rx, tx *configs.RateLimiter) error
}

// patchDrive is PATCH /drives/{id} after InstanceStart.
func (s *Server) patchDrive(r *http.Request, body []byte) (any, error) {
	p, err := configs.DecodeDrivePatch(body)
	if err != nil {
		return nil, err
	}
	if err := matchID("drives", "drive_id", p.DriveID, r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startedLocked("PATCH /drives/" + p.DriveID); err != nil {
		return nil, err
	}
	i := slices.IndexFunc(s.cfg.Drives, func(d configs.Drive) bool { return d.DriveID == p.DriveID })
	if i < 0 {
		return nil, faultf("drive %q not found: PUT /drives/%s before InstanceStart adds a drive", p.DriveID, p.DriveID)
	}
	if p.PathOnHost == "" && p.RateLimiter == nil {
		// Firecracker's words for a PATCH that changes nothing.
		return nil, faultf("drive %q: the body changes nothing: give path_on_host and/or rate_limiter (Running method expected different backend.)", p.DriveID)
	}
	if err := p.CheckFile(); err != nil {
		return nil, err
	}
	d := &s.cfg.Drives[i]
	var rl *configs.RateLimiter
	if p.RateLimiter != nil {
		rl = d.RateLimiter.Patch(p.RateLimiter)
	}
	u, err := s.updater()
	if err != nil {
		return nil, err
	}
	if err := u.UpdateDrive(p.DriveID, p.PathOnHost, rl); err != nil {
		return nil, faultf("Unable to patch the block device %q: %v", p.DriveID, err)
	}
	nd := *d
	if p.PathOnHost != "" {
		nd.PathOnHost = p.PathOnHost
	}
	if rl != nil {
		nd.RateLimiter = rl
	}
	// Copy on write: Config's callers share the old list.
	s.cfg.Drives = slices.Clone(s.cfg.Drives)
	s.cfg.Drives[i] = nd
	return nil, nil
}

// patchNetworkInterface is PATCH /network-interfaces/{id} after
// InstanceStart.
func (s *Server) patchNetworkInterface(r *http.Request, body []byte) (any, error) {
	p, err := configs.DecodeNetworkInterfacePatch(body)
	if err != nil {
		return nil, err
	}
	if err := matchID("network-interfaces", "iface_id", p.IfaceID, r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startedLocked("PATCH /network-interfaces/" + p.IfaceID); err != nil {
		return nil, err
	}
	i := slices.IndexFunc(s.cfg.NetworkInterfaces, func(n configs.NetworkInterface) bool { return n.IfaceID == p.IfaceID })
	if i < 0 {
		return nil, faultf("network interface %q not found: PUT /network-interfaces/%s before InstanceStart adds one", p.IfaceID, p.IfaceID)
	}
	if p.RxRateLimiter == nil && p.TxRateLimiter == nil {
		return nil, nil // nothing to change, as in Firecracker
	}
	n := &s.cfg.NetworkInterfaces[i]
	var rx, tx *configs.RateLimiter
	if p.RxRateLimiter != nil {
		rx = n.RxRateLimiter.Patch(p.RxRateLimiter)
	}
	if p.TxRateLimiter != nil {
		tx = n.TxRateLimiter.Patch(p.TxRateLimiter)
	}
	u, err := s.updater()
	if err != nil {
		return nil, err
	}
	if err := u.UpdateNetworkInterface(p.IfaceID, rx, tx); err != nil {
		return nil, faultf("Unable to update the net device %q: %v", p.IfaceID, err)
	}
	nn := *n
	if rx != nil {
		nn.RxRateLimiter = rx
	}
	if tx != nil {
		nn.TxRateLimiter = tx
	}
	s.cfg.NetworkInterfaces = slices.Clone(s.cfg.NetworkInterfaces)
	s.cfg.NetworkInterfaces[i] = nn
	return nil, nil
}

// updater is the controller's Updater.
func (s *Server) updater() (Updater, error) {
	if u, ok := s.ctrl.(Updater); ok {
		return u, nil
	}
	return nil, faultf("changing a running device is not supported by flint's controller yet")
}
