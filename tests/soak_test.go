//go:build soak

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNetSoak is issue 9's soak, outside CI (build tag soak; scripts/soak-net.sh
// runs it): the network cases that stalled on a one-CPU host, round after round, in
// a nested host with one vCPU and a one-vCPU guest, each round once with flint and
// once with QEMU as the guest's VMM, so the nested host's own losses are measured
// beside flint's. Every case sends 16 MiB each way, runs iperf3 for 2 s each way,
// then uploads and downloads 16 MiB more.
//
// Outcomes per case: ok; fail (finished, but a check failed); hung (L1 alive while
// the guest fell silent or overran: a suspected VMM hang); lost (L1 itself silent,
// wedged or crashed: the emulator's loss; the harness reruns the case in a fresh L1,
// and the rerun's outcome counts too). FLINT_SOAK_ROUNDS (default 10),
// FLINT_SOAK_VMMS (default "flint qemu"), FLINT_SOAK_REPORT (a file for the
// Markdown report; default: the log only).
func TestNetSoak(t *testing.T) {
	e := setup(t)
	requireNetTools(t)
	if e.direct {
		t.Skip("the soak measures CPU scarcity in the one-vCPU nested host; this machine boots guests directly")
	}
	rounds := netEnvInt(t, "FLINT_SOAK_ROUNDS", 10)
	vmms := strings.Fields(os.Getenv("FLINT_SOAK_VMMS"))
	if len(vmms) == 0 {
		vmms = []string{"flint", "qemu"}
	}
	const mib = 16
	// The five variants of issue 9, in its order.
	variants := []netCase{
		{transport: "pci", mode: "mergeable", indirect: true, mtu: 1500},
		{transport: "mmio", mode: "mergeable", indirect: true, mtu: 1500},
		{transport: "pci", mode: "big", opts: rxModeOpts["big"], indirect: true, mtu: 1500},
		{transport: "mmio", mode: "small", opts: rxModeOpts["small"], indirect: true, mtu: 1500},
		{transport: "pci", mode: "mergeable", opts: "event_idx=off", indirect: false, mtu: 1500},
	}
	// FLINT_SOAK_PINNED=1: a two-vCPU nested host with the VMM and the host side
	// confined to one of its CPUs (net-case.sh --cpus 1), instead of a one-vCPU
	// nested host: the same scarcity for the VMM, without the emulator's own
	// losses of one-vCPU hosts.
	pinned := os.Getenv("FLINT_SOAK_PINNED") == "1"
	where := "one-vCPU nested host"
	for i := range variants {
		variants[i].againMiB, variants[i].cpus = mib, 1
		if pinned {
			variants[i].hostCPUs = 1
		} else {
			variants[i].l1CPUs = 1
		}
	}
	if pinned {
		where = "two-vCPU nested host, the VMM and host side confined to one CPU"
	} else {
		e.l1CPUs = 1
	}
	flint := e.flint
	type tally struct{ ok, fail, hung, lost int }
	total := map[string]*tally{}
	var rows []string
	for round := 1; round <= rounds; round++ {
		for _, vmm := range vmms {
			t.Setenv("FLINT_E2E_VMM", vmm)
			e.flint = flint
			rig := newNetRig(t, e, 2)
			var boots []boot
			for _, c := range variants {
				boots = append(boots, rig.boot(c, mib))
			}
			lostBefore := len(e.lost)
			start := time.Now()
			res, err := e.runBoots(t, boots)
			if err != nil {
				t.Logf("round %d %s: %v", round, vmm, err)
			}
			n := &tally{lost: len(e.lost) - lostBefore}
			var outcomes []string
			for i, b := range boots {
				r := res[b.name]
				var rec recorder
				switch {
				case r == nil || (r.unfinished && !r.hung):
					outcomes = append(outcomes, "cut")
					n.fail++
					continue
				case r.hung:
					outcomes = append(outcomes, "HUNG")
					n.hung++
					continue
				}
				checkNetCase(&rec, variants[i], b, r, mib, 2)
				if len(rec.errs) > 0 {
					outcomes = append(outcomes, "fail")
					n.fail++
					t.Logf("round %d %s %s: %s", round, vmm, b.name, rec.errs[0])
				} else {
					outcomes = append(outcomes, "ok")
					n.ok++
				}
			}
			if total[vmm] == nil {
				total[vmm] = &tally{}
			}
			tv := total[vmm]
			tv.ok, tv.fail, tv.hung, tv.lost = tv.ok+n.ok, tv.fail+n.fail, tv.hung+n.hung, tv.lost+n.lost
			row := fmt.Sprintf("| %d | %s | %s | %d | %d | %d | %d | %v |", round, vmm, strings.Join(outcomes, " "),
				n.ok, n.fail, n.hung, n.lost, time.Since(start).Round(time.Second))
			rows = append(rows, row)
			t.Log(row)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Network soak, %s: %d rounds, %s, one-vCPU guest; variants: ", time.Now().UTC().Format(time.DateTime), rounds, where)
	for i, c := range variants {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.spec())
	}
	b.WriteString("\n\n| round | VMM | outcome per variant | ok | fail | hung (L1 alive) | L1 lost | wall |\n|---|---|---|---|---|---|---|---|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n\n")
	for _, vmm := range vmms {
		if tv := total[vmm]; tv != nil {
			fmt.Fprintf(&b, "- %s: %d ok, %d failed checks, %d hung with L1 alive, %d nested hosts lost\n", vmm, tv.ok, tv.fail, tv.hung, tv.lost)
		}
	}
	t.Logf("soak report:\n%s", b.String())
	if path := os.Getenv("FLINT_SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if tv := total["flint"]; tv != nil && tv.hung > 0 {
		t.Errorf("flint hung %d times", tv.hung)
	}
}
