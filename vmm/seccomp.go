package vmm

// The seccomp filter's options, derived from what the VM has.

import "github.com/flintvm/flint/internal/seccomp"

// SeccompOptions are the filter options c's VM needs once it runs, the
// one source for them (Run hands them to BeforeRun): FileServer when it
// serves a virtio-fs share (command mode's --share and host root), Connect
// when it has a virtio-vsock device (guest connections dial
// <uds_path>_<port>). Mode and PID are the installer's.
func (c *Config) SeccompOptions() seccomp.Options {
	return seccomp.Options{
		FileServer: c.Command != nil && len(c.Command.Shares) > 0,
		Connect:    c.Vsock != nil,
	}
}

// NetBackendSeccompOptions are the filter options `flint net-backend`
// needs: none beyond the defaults (its TAP and socket are open, its
// frontends' sockets are accepted, not dialled).
func NetBackendSeccompOptions() seccomp.Options {
	return seccomp.Options{}
}
