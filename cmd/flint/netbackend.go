package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm"
)

// netBackendCommand is `flint net-backend`: the virtio-net device as a
// vhost-user backend for another VMM's guest.
func netBackendCommand(a *app) *cli.Command {
	onOff := func(name, usage string) cli.Flag {
		return &cli.StringFlag{Name: name, Usage: usage + " (on|off)", Value: "on"}
	}
	return &cli.Command{
		Name:      "net-backend",
		Usage:     "serve Flint's virtio-net device bridged to a TAP to a vhost-user frontend",
		UsageText: "flint net-backend --socket PATH --tap NAME [--mac MAC] [--mtu N] [--mrg-rxbuf on|off] [--tso on|off] [--indirect on|off] [--event-idx on|off] [--packed on|off] [--queues N] [--rx-irq-gap D] [--tx-irq-gap D] [--irq-resend D] [--poll D]",
		Flags: append([]cli.Flag{
			// Required by hand, in Action: urfave/cli would print the usage text.
			&cli.StringFlag{Name: "socket", Usage: "unix socket to listen on (required)"},
			&cli.StringFlag{Name: "tap", Usage: "host TAP device, created if missing (required)"},
			&cli.StringFlag{Name: "mac", Usage: "guest MAC address (default: derived from the TAP name)"},
			&cli.IntFlag{Name: "mtu", Usage: "MTU announced to the guest", Value: configs.DefaultMTU},
			onOff("mrg-rxbuf", "mergeable receive buffers"),
			onOff("tso", "TCP segmentation offload both ways"),
			onOff("indirect", "indirect descriptors"),
			onOff("event-idx", "event-index notification suppression"),
			// Off by default: UML negotiates packed rings and then breaks
			// them (SET_VRING_BASE 0, wrap counter 0).
			&cli.StringFlag{Name: "packed", Usage: "offer packed virtqueues (on|off; UML's frontend breaks them)", Value: "off"},
			&cli.IntFlag{Name: "queues", Usage: fmt.Sprintf("queue pairs, 1 to %d (multiqueue: one TAP queue each)", configs.MaxNetQueues), Value: 1},
			&cli.StringFlag{Name: "rx-irq-gap", Usage: "least time between two receive interrupts of a queue (0: at once)", Value: "50us"}, // configs.DefaultRxIRQGap, spelled as the README does
			&cli.StringFlag{Name: "tx-irq-gap", Usage: "least time between two transmit-completion interrupts of a queue, for frames of 256 bytes or less (0: at once; a larger frame's completion goes at once)", Value: "0"},
			&cli.StringFlag{Name: "irq-resend", Usage: "send a notification again if the frontend still wants it once the device has sent none for this long (UML can lose one; 0: never)", Value: "250us"}, // configs.DefaultBackendIRQResend
			&cli.StringFlag{Name: "poll", Usage: "busy-poll window of each queue, adaptive, 0 to 1ms: spends CPU for latency (0: off)", Value: "0"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
		}, seccompFlags("")...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := refuseEmpty(c, "mac", "jail"); err != nil {
				return err
			}
			for _, f := range []string{"socket", "tap"} {
				if c.String(f) == "" {
					return usagef("net-backend: --%s is required", f)
				}
			}
			n, err := netBackendInterface(c)
			if err != nil {
				return err
			}
			level, err := parseLevel(c.String("log-level"))
			if err != nil {
				return err
			}
			if err := checkSocketPath("net-backend: --socket", c.String("socket")); err != nil {
				return err
			}
			before, err := a.seccompHook(c)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := vmm.ServeNetBackend(ctx, c.String("socket"), n, log, before); err != nil {
				fmt.Fprintln(a.stderr, "flint: "+oneLine(err.Error()))
				a.code = vmm.ExitVMMErr
				if ce := (*vmm.ConfigError)(nil); errors.As(err, &ce) {
					a.code = vmm.ExitUsage
				}
			}
			return nil
		},
	}
}

// netBackendInterface is the device net-backend's flags describe, parsed
// as a --net spec (so both share defaults and checks): --packed maps to
// the spec's packed key, which vmm's netFeatures turns into
// VIRTIO_F_RING_PACKED.
func netBackendInterface(c *cli.Context) (configs.NetInterface, error) {
	// Each flag is the spec key of its name with '_' for '-'.
	spec := []string{fmt.Sprintf("mtu=%d", c.Int("mtu")), fmt.Sprintf("queues=%d", c.Int("queues"))}
	for _, flag := range []string{"tap", "mac", "mrg-rxbuf", "tso", "indirect", "event-idx", "packed", "rx-irq-gap", "tx-irq-gap", "irq-resend", "poll"} {
		v := c.String(flag)
		if strings.Contains(v, ",") { // one field of the spec, not more keys
			return configs.NetInterface{}, usagef("net-backend: --%s %q: a comma is not allowed", flag, v)
		}
		if v != "" || flag != "mac" { // no --mac: derived from the TAP name
			spec = append(spec, strings.ReplaceAll(flag, "-", "_")+"="+v)
		}
	}
	n, err := configs.ParseNetFlag(strings.Join(spec, ","))
	if se := (*configs.NetSpecError)(nil); errors.As(err, &se) {
		// The user typed a flag, not the spec: name the flag.
		return n, usagef("net-backend: --%s %q: %v", strings.ReplaceAll(se.Key, "_", "-"), se.Value, se.Err)
	}
	if err != nil {
		return n, usageError{strings.Replace(err.Error(), "--net", "net-backend", 1)}
	}
	return n, nil
}

// checkSocketPath refuses, before any TAP is opened, a path (named by
// flag) that cannot become a listening unix socket because of what the
// user typed: too long, another kind of file already there, or a parent
// that is no directory. These are usage errors (exit 2); vmm would report
// them only after opening the TAP, as a backend failure.
func checkSocketPath(flag, path string) error {
	shown := configs.Shown(path)
	if len(path) > configs.MaxSocketPath {
		return usagef("%s %s: %d bytes, a unix socket path has at most %d", flag, shown, len(path), configs.MaxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
		return usagef("%s %s: exists and is not a socket", flag, shown)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return usagef("%s %s: %v", flag, shown, unwrapPathError(err))
	}
	if !fi.IsDir() {
		return usagef("%s %s: %s is not a directory", flag, shown, configs.Shown(dir))
	}
	return nil
}
