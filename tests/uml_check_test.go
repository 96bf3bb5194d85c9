package e2e

import (
	"fmt"
	"strings"
)

// umlCase is one run of scripts/uml-net-case.sh in TestUMLNetBackend.
type umlCase struct {
	rx       string // the Linux driver's RX mode: mergeable, big or small
	indirect bool
	sizeMiB  int
	boots    int // UML boots against the one backend
	killBoot int // the boot killed mid-stream (0: none)
}

func (c umlCase) name() string {
	if c.boots > 1 {
		return "reconnect"
	}
	return fmt.Sprintf("%s/indirect=%s", c.rx, onOffStr(c.indirect))
}

func onOffStr(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// args is the script's command line for the case.
func (c umlCase) args(flint, initrd string) []string {
	return []string{"--backend", "flint", "--rx", c.rx, "--indirect", onOffStr(c.indirect),
		"--size", fmt.Sprint(c.sizeMiB), "--boots", fmt.Sprint(c.boots),
		"--kill-boot", fmt.Sprint(c.killBoot), "--flint", flint, "--initrd", initrd,
		"--name", "e2e-" + strings.NewReplacer("/", "-", "=", "-").Replace(c.name())}
}

// umlLine is one "KIND key=value ..." line of the script's output.
type umlLine struct {
	kind string
	kv   map[string]string
}

// parseUMLLines returns the UML-* lines of out (other lines are ignored).
func parseUMLLines(out string) []umlLine {
	var ls []umlLine
	for _, raw := range strings.Split(out, "\n") {
		f := strings.Fields(strings.TrimRight(raw, "\r"))
		if len(f) == 0 || !strings.HasPrefix(f[0], "UML-") {
			continue
		}
		l := umlLine{kind: f[0], kv: map[string]string{}}
		for _, x := range f[1:] {
			if k, v, ok := strings.Cut(x, "="); ok {
				if _, dup := l.kv[k]; !dup {
					l.kv[k] = v
				}
			}
		}
		ls = append(ls, l)
	}
	return ls
}

// find returns the first line of kind for boot ("" matches any boot).
func find(ls []umlLine, kind, boot string) (umlLine, bool) {
	for _, l := range ls {
		if l.kind == kind && (boot == "" || l.kv["boot"] == boot) {
			return l, true
		}
	}
	return umlLine{}, false
}

// Feature bits (virtio 1.2, 5.1.3) that show which RX mode the guest uses.
const (
	umlFeatGuestTSO4 = 7
	umlFeatMrgRxbuf  = 15
	umlFeatIndirect  = 28
)

// checkUMLCase is the one verdict on a case: the script reports only what
// each end saw (its UML-* lines), and this judges them, returning every
// problem it finds.
func checkUMLCase(c umlCase, out string) []string {
	ls := parseUMLLines(out)
	var bad []string
	badf := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	want := fmt.Sprint(c.sizeMiB << 20)
	for b := 1; b <= c.boots; b++ {
		boot := fmt.Sprint(b)
		get := func(kind string) map[string]string {
			l, ok := find(ls, kind, boot)
			if !ok {
				badf("boot %s: no %s line", boot, kind)
				return map[string]string{}
			}
			return l.kv
		}
		if hb := get("UML-HOST-BOOT"); b == c.killBoot {
			if hb["killed"] != "1" {
				badf("boot %s: should have been killed mid-stream: %v", boot, hb)
			}
			continue
		}
		ifl := get("UML-GUEST-IF")
		if ifl["driver"] != "virtio_net" {
			badf("boot %s: guest interface driver %q, want virtio_net", boot, ifl["driver"])
		}
		bad = append(bad, checkFeatures(c, boot, ifl["features"])...)
		if l, ok := find(ls, "UML-HOST-TIMEOUT", boot); ok {
			badf("boot %s: overran the script's --timeout (%s s) and was killed", boot, l.kv["secs"])
		}
		for _, k := range []string{"UML-GUEST-PING", "UML-HOST-PING", "UML-GUEST-HOSTPING", "UML-GUEST-G2H", "UML-GUEST-H2G"} {
			if r := get(k)["result"]; r != "ok" {
				badf("boot %s: %s result=%q", boot, k, r)
			}
		}
		gs, hr := get("UML-GUEST-G2H"), get("UML-HOST-G2H")
		if gs["sha256"] == "" || gs["sha256"] != hr["sha256"] || gs["bytes"] != want || hr["bytes"] != want {
			badf("boot %s: guest->host stream: guest sent %s bytes sha256 %s, host got %s bytes sha256 %s (want %s bytes)",
				boot, gs["bytes"], gs["sha256"], hr["bytes"], hr["sha256"], want)
		}
		hs, gr := get("UML-HOST-H2G"), get("UML-GUEST-H2G")
		if hs["sha256"] == "" || hs["sha256"] != gr["sha256"] || hs["bytes"] != want || gr["bytes"] != want {
			badf("boot %s: host->guest stream: host sent %s bytes sha256 %s, guest got %s bytes sha256 %s (want %s bytes)",
				boot, hs["bytes"], hs["sha256"], gr["bytes"], gr["sha256"], want)
		}
		if _, ok := find(ls, "UML-GUEST-DONE", boot); !ok {
			badf("boot %s: the guest script did not finish", boot)
		}
	}
	be, ok := find(ls, "UML-HOST-BACKEND", "")
	switch {
	case !ok:
		badf("no UML-HOST-BACKEND line")
	case be.kv["running"] != "yes":
		badf("flint net-backend exited during the case")
	case be.kv["connections"] != fmt.Sprint(c.boots):
		badf("flint net-backend served %s connections, want %d (one per boot)", be.kv["connections"], c.boots)
	}
	if l, ok := find(ls, "UML-HOST-ABORT", ""); ok {
		badf("the script could not set the case up: %s", l.kv["reason"])
	}
	if _, ok := find(ls, "UML-CASE-END", ""); !ok {
		badf("the script did not finish (no UML-CASE-END line)")
	}
	return bad
}

// checkFeatures checks that the features the guest driver negotiated (the
// sysfs string, one character per bit) select the case's RX mode.
func checkFeatures(c umlCase, boot, f string) []string {
	if len(f) < 33 {
		return []string{fmt.Sprintf("boot %s: feature string %q too short", boot, f)}
	}
	want := map[int]bool{
		umlFeatMrgRxbuf:  c.rx == "mergeable",
		umlFeatGuestTSO4: c.rx != "small",
		umlFeatIndirect:  c.indirect,
	}
	var bad []string
	for bit, on := range want {
		if (f[bit] == '1') != on {
			bad = append(bad, fmt.Sprintf("boot %s: feature bit %d is %c, want %v for rx=%s indirect=%v (features %s)",
				boot, bit, f[bit], on, c.rx, c.indirect, f))
		}
	}
	return bad
}
