package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

var markerRE = regexp.MustCompile(`FLINT-BOOT-OK cpus=(\d+)`)

// TestStockKernelBoot boots the stock Debian cloud and generic kernels with 1 and 2
// vCPUs into the marker initramfs and checks that each guest reaches init, sees the
// vCPUs it was given, and that flint exits 0 when the guest reboots.
func TestStockKernelBoot(t *testing.T) {
	e := setup(t)
	kernels := e.kernels(t)
	initrd := e.initramfs(t, "marker", "--marker")
	timeout := e.bootTimeout(t)

	var boots []boot
	for _, flavour := range []string{"cloud", "amd64"} {
		for _, cpus := range []int{1, 2} {
			boots = append(boots, boot{
				name:    fmt.Sprintf("%s/cpus=%d", flavour, cpus),
				kernel:  kernels[flavour],
				initrd:  initrd,
				cpus:    cpus,
				memMiB:  256,
				cmdline: guestCmdline(),
				timeout: timeout,
			})
		}
	}
	results, err := e.runBoots(t, boots)
	if err != nil {
		t.Error(err)
	}
	for _, b := range boots {
		t.Run(b.name, func(t *testing.T) {
			r := results[b.name]
			if r == nil {
				t.Fatalf("boot never started (the nested host ended first)")
			}
			if r.unfinished {
				why := "the nested host ended while it ran"
				if r.host != "" {
					why = "nested host " + r.host
				}
				t.Fatalf("boot cut off: %s; its output so far:\n%s", why, tail(r.output, 60))
			}
			if r.retried != "" {
				t.Logf("second run: the first nested host wedged during or before this boot (%s)", r.retried)
			}
			t.Logf("flint exit status %d after %.1fs", r.rc, r.elapsed.Seconds())
			ok := true
			switch {
			case r.timedOut:
				t.Errorf("flint did not finish within %v (killed, status %d)", b.timeout, r.rc)
				ok = false
			case r.rc != 0:
				t.Errorf("flint exit status %d, want 0", r.rc)
				ok = false
			}
			m := markerRE.FindStringSubmatch(r.output)
			switch {
			case m == nil:
				t.Errorf("guest never printed the FLINT-BOOT-OK marker")
				ok = false
			default:
				if n, _ := strconv.Atoi(m[1]); n != b.cpus {
					t.Errorf("guest saw %d CPUs, want %d", n, b.cpus)
					ok = false
				}
			}
			if !ok {
				t.Logf("last 60 lines of output:\n%s", tail(r.output, 60))
			}
		})
	}
}
