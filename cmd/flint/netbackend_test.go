package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/configs"
)

// TestNetBackendIRQGapDefaults: net-backend's --rx-irq-gap, --poll and
// --tx-irq-gap defaults are --net's (the flags spell them for the help
// text, so they could drift apart).
func TestNetBackendIRQGapDefaults(t *testing.T) {
	want := map[string]time.Duration{"rx-irq-gap": configs.DefaultRxIRQGap, "tx-irq-gap": configs.DefaultNetInterface("t").TxIRQGap,
		"poll": configs.DefaultNetInterface("t").Poll, "irq-resend": configs.DefaultBackendIRQResend}
	for _, f := range netBackendCommand(&app{}).Flags {
		sf, ok := f.(*cli.StringFlag)
		if !ok {
			continue
		}
		if w, ok := want[sf.Name]; ok {
			if d, err := time.ParseDuration(sf.Value); err != nil || d != w {
				t.Errorf("--%s default %q, want %v", sf.Name, sf.Value, w)
			}
			delete(want, sf.Name)
		}
	}
	if len(want) != 0 {
		t.Errorf("flags missing: %v", want)
	}
}

// TestNetBackendCommaInValue: a flag's value is one field of the
// device's spec, so a comma in it is refused (naming the flag) instead of
// being read as more keys: --tap "t0,csum=off" must not turn checksum
// offload off, nor --mac or a switch carry options net-backend has no
// flag for.
func TestNetBackendCommaInValue(t *testing.T) {
	base := []string{"net-backend", "--socket", "/nonexistent/nb.sock"}
	for _, c := range []struct{ flag, val string }{
		{"tap", "t0,packed=maybe"},
		{"mac", "x,tso=on"},
		{"tso", "on,mtu=1"},
		{"poll", "0,queues=2"},
	} {
		args := append(append([]string{}, base...), "--"+c.flag, c.val)
		if c.flag != "tap" {
			args = append(args, "--tap", "t0")
		}
		t.Run(c.flag, func(t *testing.T) { wantUsageError(t, args, fmt.Sprintf("--%s %q", c.flag, c.val)) })
	}
	// An empty switch is still refused, not taken as its default.
	wantUsageError(t, append(base, "--tap", "t0", "--tso", ""), `net-backend: --tso "": want on or off`)
}

// TestNetBackendPacked: --packed is off by default (UML's frontend
// negotiates packed rings and breaks them), on when asked, and a value
// other than on|off is a usage error naming it.
func TestNetBackendPacked(t *testing.T) {
	parse := func(extra ...string) (configs.NetInterface, error) {
		t.Helper()
		var n configs.NetInterface
		var perr error
		cmd := netBackendCommand(&app{})
		cmd.Action = func(c *cli.Context) error { n, perr = netBackendInterface(c); return nil }
		args := append([]string{"flint", "net-backend", "--socket", "/nonexistent/nb.sock", "--tap", "t0"}, extra...)
		if err := (&cli.App{Commands: []*cli.Command{cmd}}).Run(args); err != nil {
			t.Fatal(err)
		}
		return n, perr
	}
	for _, c := range []struct {
		args []string
		want bool
	}{{nil, false}, {[]string{"--packed", "off"}, false}, {[]string{"--packed", "on"}, true}} {
		n, err := parse(c.args...)
		if err != nil || n.Packed != c.want || !n.EventIdx || n.TAP != "t0" {
			t.Errorf("%v: packed %v (want %v), event_idx %v, tap %q, err %v", c.args, n.Packed, c.want, n.EventIdx, n.TAP, err)
		}
	}
	wantUsageError(t, []string{"net-backend", "--socket", "/nonexistent/nb.sock", "--tap", "t0", "--packed", "maybe"}, `net-backend: --packed "maybe": want on or off`)
}
