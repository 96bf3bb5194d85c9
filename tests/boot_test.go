package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var markerRE = regexp.MustCompile(`FLINT-BOOT-OK cpus=(\d+)`)

// TestStockKernelBoot boots the stock Debian cloud and generic kernels in one
// nested host: the generic bzImage and the cloud kernel's ELF vmlinux into
// the marker initramfs with 2 vCPUs (the command-mode cases boot each
// kernel with 1),
// checking that the guest reaches init, sees the vCPUs it was given, and that
// flint exits 0 when the guest reboots; a guest that dumps its state on
// SIGUSR1 and --timeout; the ELF vmlinux boots (elf_test.go); flint
// jailed as an unprivileged uid (jail_test.go); and the command-mode cases
// (command_test.go).
func TestStockKernelBoot(t *testing.T) {
	e := setup(t)
	kernels := e.kernels(t)
	initrd := e.initramfs(t, "marker", "--marker")
	timeout := e.bootTimeout(t)

	var boots []boot
	for _, fc := range []struct {
		flavour string
		cpus    int
	}{{"amd64", 2}} { // the cloud kernel's 2-vCPU marker boot is cloud-elf/pvh's
		boots = append(boots, boot{
			name:    fmt.Sprintf("%s/cpus=%d", fc.flavour, fc.cpus),
			kernel:  kernels[fc.flavour],
			initrd:  initrd,
			cpus:    fc.cpus,
			memMiB:  256,
			cmdline: guestCmdline(),
			timeout: timeout,
		})
	}
	dumps := dumpBoot(kernels["cloud"], initrd, timeout)
	cmds := e.commandCases(t, kernels, timeout)
	elfs, elfChecks := elfBoots(t, e, kernels, initrd, timeout)
	all := append(append(boots, dumps), elfs...)
	jailed, jailCheck, jail := jailedBootIfReady(t, e)
	if jail {
		all = append(all, jailed)
	}
	for _, c := range cmds {
		all = append(all, c.b)
	}
	all, picked := bootsOnly(t, all)
	results, err := e.runBoots(t, all)
	if err != nil {
		t.Error(err)
	}
	run := func(name string, check func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if !picked[name] {
				t.Skipf("not picked by FLINT_E2E_BOOT_ONLY")
			}
			check(t)
		})
	}
	run(dumps.name, func(t *testing.T) { checkDumps(t, results[dumps.name]) })
	for _, c := range cmds {
		run(c.b.name, func(t *testing.T) { checkCommandCase(t, c, results[c.b.name], !e.direct) })
	}
	for _, b := range elfs {
		run(b.name, func(t *testing.T) { elfChecks[b.name](t, results[b.name]) })
	}
	if jail {
		run(jailed.name, func(t *testing.T) { jailCheck(t, finished(t, results, jailed.name)) })
	}
	for _, b := range boots {
		run(b.name, func(t *testing.T) {
			r := results[b.name]
			if r == nil {
				t.Fatalf("boot never started (the nested host ended first)")
			}
			if r.unfinished {
				why := "the nested host ended while it ran"
				if r.host != "" {
					why = "nested host " + r.host
				}
				cutOff(t, "boot cut off: "+why, r)
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

// dumpBoot is a guest that never finishes (its init sleeps), run by flint with
// the default seccomp filter: a SIGUSR1 after 5 s, then --timeout, each make
// flint dump its vCPUs' state. The dump paths run only when something is
// already wrong, so this boot is what proves they work under the filter
// (the timeout exit status, not a SIGSYS death).
func dumpBoot(kernel, initrd string, timeout time.Duration) boot {
	return boot{
		name:    "cloud/sigusr1-and-timeout-dumps",
		kernel:  kernel,
		initrd:  initrd,
		cpus:    1,
		memMiB:  256,
		cmdline: guestCmdline() + " rdinit=/bin/busybox -- sleep 600",
		timeout: timeout,
		wrap:    []string{"sh", "-c", `"$@" & p=$!; sleep 5; kill -USR1 $p; wait $p`, "dumps"},
		flags:   []string{"--timeout", "15s"},
	}
}

// vcpuDumpRE matches one vCPU's line of a state dump (vmm/debug.go).
var vcpuDumpRE = regexp.MustCompile(`msg="dump: vCPU" vcpu=0 `)

// checkDumps: the dump boot ended by its --timeout (exit status 3, not
// 128+SIGSYS), with the vCPU dumped twice: once for SIGUSR1, once for the
// timeout.
func checkDumps(t *testing.T, r *result) {
	t.Helper()
	switch {
	case r == nil:
		t.Fatal("boot never started (the nested host ended first)")
	case r.unfinished:
		cutOff(t, "boot cut off (nested host "+r.host+")", r)
	}
	if r.rc != 3 {
		t.Errorf("flint exit status %d, want 3 (--timeout expired); 159 would be SIGSYS from the seccomp filter", r.rc)
	}
	if n := len(vcpuDumpRE.FindAllString(r.output, -1)); n < 2 {
		t.Errorf("%d vCPU dumps, want 2 (SIGUSR1, then the timeout)", n)
	}
	if !strings.Contains(r.output, "timeout: the guest did not finish in time") {
		t.Errorf("no timeout message")
	}
	if t.Failed() {
		t.Logf("last 60 lines of output:\n%s", tail(r.output, 60))
	}
}

// bootsOnly applies FLINT_E2E_BOOT_ONLY (a regexp on boot names, for
// development) to all and says which boots are left.
func bootsOnly(t *testing.T, all []boot) ([]boot, map[string]bool) {
	t.Helper()
	picked := map[string]bool{}
	re := os.Getenv("FLINT_E2E_BOOT_ONLY")
	if re == "" {
		for _, b := range all {
			picked[b.name] = true
		}
		return all, picked
	}
	rx, err := regexp.Compile(re)
	if err != nil {
		t.Fatalf("FLINT_E2E_BOOT_ONLY: %v", err)
	}
	var out []boot
	for _, b := range all {
		if rx.MatchString(b.name) {
			out = append(out, b)
			picked[b.name] = true
		}
	}
	if len(out) == 0 {
		t.Fatalf("FLINT_E2E_BOOT_ONLY=%q matches no boot", re)
	}
	return out, picked
}
