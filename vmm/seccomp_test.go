package vmm

import (
	"testing"

	"github.com/flintvm/flint/internal/seccomp"
)

// TestSeccompOptions: the filter's options follow the VM's devices, and
// nothing else (no process-wide state: a VM with vsock does not widen the
// next VM's filter).
func TestSeccompOptions(t *testing.T) {
	vsock := &VsockConfig{GuestCID: 3, UDSPath: "/run/v.sock"}
	share := &CommandConfig{Shares: []Share{{}}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want seccomp.Options
	}{
		{"neither", Config{}, seccomp.Options{}},
		{"command mode without shares", Config{Command: &CommandConfig{}}, seccomp.Options{}},
		{"vsock", Config{Vsock: vsock}, seccomp.Options{Connect: true}},
		{"share", Config{Command: share}, seccomp.Options{FileServer: true}},
		{"both", Config{Vsock: vsock, Command: share}, seccomp.Options{FileServer: true, Connect: true}},
		{"neither, after the others", Config{}, seccomp.Options{}},
	} {
		if got := tc.cfg.SeccompOptions(); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := NetBackendSeccompOptions(); got != (seccomp.Options{}) {
		t.Errorf("net-backend: %+v, want none", got)
	}
}
