package main

import (
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
		"poll": configs.DefaultNetInterface("t").Poll}
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
