package vmm

import (
	"context"
	"log/slog"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
)

// ServeNetBackend serves Flint's virtio-net device, bridged to the TAP n
// names, as a vhost-user backend on a unix socket at socket, to one
// frontend at a time (QEMU, Cloud Hypervisor, UML's virtio_uml), until ctx
// ends. The same device core runs here as inside a Flint VM. beforeServe,
// when not nil, is called with NetBackendSeccompOptions once the TAP is
// open and the socket listens, before the first frontend is served (the
// CLI installs its seccomp filter there).
func ServeNetBackend(ctx context.Context, socket string, n configs.NetInterface, log *slog.Logger, beforeServe func(seccomp.Options) error) error {
	if err := n.Validate(); err != nil {
		return &ConfigError{Err: err}
	}
	t, dev, err := openNetDevice(n)
	if err != nil {
		return tapError("--tap "+n.TAP, err)
	}
	defer t.Close()
	warnNoSteering(log, t)
	// QEMU keeps the control queue and negotiates MQ without CTRL_VQ.
	dev.AllowFrontendControlQueue()
	srv, err := vhostuser.New(vhostuser.Config{Device: dev, Log: log})
	if err != nil {
		return err
	}
	l, err := vhostuser.Listen(socket)
	if err != nil {
		return err
	}
	log.Info("vhost-user net backend listening", "socket", socket, "tap", n.TAP)
	done := make(chan struct{})
	defer close(done)
	// kill -USR1: the served device's rings and engines, as a VM's dump.
	onDumpSignal(done, func() {
		logVirtioSnapshot(log, "dump", "net0", []any{"tap", n.TAP}, srv.Snapshot())
	})
	if beforeServe != nil {
		if err := beforeServe(NetBackendSeccompOptions()); err != nil {
			l.Close()
			return err
		}
	}
	return srv.Serve(ctx, l)
}
