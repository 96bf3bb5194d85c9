package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The multiqueue case's checks (issue 15): net-guest.sh's NET-GUEST-MQ and
// NET-GUEST-QSTATS lines, net-case.sh's NET-HOST-TAPSTATS, and flint's own
// exit log ("virtio-net counters", one "virtio-net queue pair" line per
// pair, "virtio-net queue pairs").

// flintLogRE picks one of flint's exit log lines by its message.
func flintLogRE(msg string) *regexp.Regexp {
	return regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `" (.*)$`)
}

var (
	flintPairRE     = flintLogRE("virtio-net queue pair")
	flintPairsRE    = flintLogRE("virtio-net queue pairs")
	flintCountersRE = flintLogRE("virtio-net counters")
)

// flintLog returns the key=value fields of flint's "when=exit" log lines
// whose message re matches, in order.
func flintLog(out string, re *regexp.Regexp) []map[string]string {
	var lines []map[string]string
	for _, l := range strings.Split(out, "\n") {
		g := re.FindStringSubmatch(strings.TrimRight(l, "\r"))
		if g == nil {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(g[1]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		if kv["when"] == "exit" {
			lines = append(lines, kv)
		}
	}
	return lines
}

// checkMQ asserts what a case with c.queues > 1 printed: the guest used
// every pair (ethtool -L), took them down to one and back during each of
// the second streams (whose checksums checkNetCase compares), every queue
// of the guest and every pair of flint's device carried packets both
// ways, the guest's per-queue drops and flint's device drops are 0, and
// the host TAP counted no errors (its drops go in the summary).
func checkMQ(t reporter, c netCase, m map[string][]netMarker, out string) string {
	t.Helper()
	steps := map[string]bool{}
	for _, x := range m["NET-GUEST-MQ"] {
		steps[x.kv["step"]] = true
		if x.kv["result"] != "ok" || x.kv["combined"] != x.kv["want"] {
			t.Errorf("ethtool -L: %s", x.line)
		}
	}
	want := []string{"start"}
	if c.againMiB > 0 {
		want = append(want, "g2h2-down", "g2h2-up", "h2g2-down", "h2g2-up")
	}
	for _, s := range want {
		if !steps[s] {
			t.Errorf("no NET-GUEST-MQ step=%s line (channel change not done)", s)
		}
	}

	// The guest's queues: each pair received and sent, nothing dropped.
	q, ok := lastNet(m, "NET-GUEST-QSTATS")
	if !ok {
		t.Errorf("no NET-GUEST-QSTATS line")
	}
	var guest []string
	for i := range c.queues {
		for _, dir := range []string{"rx", "tx"} {
			k := dir + "_queue_" + strconv.Itoa(i) + "_packets"
			if n, err := strconv.ParseUint(q.kv[k], 10, 64); err != nil || n == 0 {
				t.Errorf("guest %s = %q: want packets on every queue (%s)", k, q.kv[k], q.line)
			}
			guest = append(guest, dir+strconv.Itoa(i)+"="+q.kv[k])
		}
	}
	for k, v := range q.kv {
		if strings.HasSuffix(k, "drops") && v != "0" {
			t.Errorf("guest %s = %s, want 0", k, v)
		}
	}

	// Flint's device: every pair carried traffic both ways, no drops.
	pairs := flintLog(out, flintPairRE)
	if len(pairs) != c.queues {
		t.Errorf("%d 'virtio-net queue pair' exit lines from flint, want %d", len(pairs), c.queues)
	}
	var host []string
	for _, p := range pairs {
		for _, k := range []string{"rx_packets", "tx_packets"} {
			if n, err := strconv.ParseUint(p[k], 10, 64); err != nil || n == 0 {
				t.Errorf("flint pair %s: %s = %q, want > 0", p["pair"], k, p[k])
			}
		}
		host = append(host, "pair"+p["pair"]+"="+p["rx_packets"]+"/"+p["tx_packets"])
	}
	// Each channel change down detached pair 2 behind the TAP's steering
	// pin, so no frame steered there as it went was dropped with it.
	if ps := flintLog(out, flintPairsRE); len(ps) == 0 {
		t.Errorf("no 'virtio-net queue pairs' exit line from flint")
	} else {
		p := ps[len(ps)-1]
		downs := 0
		if c.againMiB > 0 {
			downs = 2
		}
		n, err := strconv.Atoi(p["shrinks"])
		if err != nil || n < downs || p["shrinks_pinned"] != p["shrinks"] {
			t.Errorf("flint: shrinks=%q shrinks_pinned=%q, want at least %d, all pinned", p["shrinks"], p["shrinks_pinned"], downs)
		}
		host = append(host, "shrinks="+p["shrinks"]+"/"+p["shrinks_pinned"]+"pinned")
	}
	if cs := flintLog(out, flintCountersRE); len(cs) == 0 {
		t.Errorf("no 'virtio-net counters' exit line from flint")
	} else {
		for k, v := range cs[len(cs)-1] {
			if (strings.HasPrefix(k, "rx_drop") || strings.HasPrefix(k, "tx_drop") || k == "tx_errors" ||
				strings.HasSuffix(k, "malformed") || k == "broken" || k == "rx_bad_chains") && v != "0" {
				t.Errorf("flint's device: %s = %s, want 0", k, v)
			}
		}
	}

	// The host TAP (flint's writes are its rx, the guest's frames its tx):
	// no errors. Its drops are reported, not failed: a TAP whose reader
	// (the device, behind a guest slowed down by nested emulation) falls
	// behind drops at its queue as any NIC does, and TCP recovers.
	tap := "tap drops ?"
	if ts, ok := lastNet(m, "NET-HOST-TAPSTATS"); !ok {
		t.Errorf("no NET-HOST-TAPSTATS line")
	} else {
		for _, k := range []string{"rx_errors", "tx_errors"} {
			if ts.kv[k] != "0" {
				t.Errorf("host TAP %s = %q, want 0 (%s)", k, ts.kv[k], ts.line)
			}
		}
		tap = "tap drops rx=" + ts.kv["rx_dropped"] + " tx=" + ts.kv["tx_dropped"]
		t.Logf("host TAP: %s", ts.line)
	}
	return "queues guest " + strings.Join(guest, ",") + " flint rx/tx " + strings.Join(host, ",") + " " + tap
}

// mqGood is what a good multiqueue case prints on top of netGood.
const mqGood = `NET-GUEST-MQ result=ok step=start want=2 combined=2 rc=0
NET-GUEST-MQ result=ok step=g2h2-down want=1 combined=1 rc=0
NET-GUEST-MQ result=ok step=g2h2-up want=2 combined=2 rc=0
NET-GUEST-MQ result=ok step=h2g2-down want=1 combined=1 rc=0
NET-GUEST-MQ result=ok step=h2g2-up want=2 combined=2 rc=0
NET-GUEST-QSTATS rx_queue_0_packets=900 rx_queue_0_drops=0 rx_queue_0_kicks=3 rx_queue_1_packets=800 rx_queue_1_drops=0 tx_queue_0_packets=700 tx_queue_1_packets=600 tx_queue_0_kicks=9
time=2026-12-06T12:00:00Z level=INFO msg="virtio-net counters" when=exit tap=tap0 rx_packets=1700 rx_drop_oversize=0 rx_drop_short=0 rx_malformed=0 tx_packets=1300 tx_drop_short=0 tx_errors=0 broken=0
time=2026-12-06T12:00:00Z level=INFO msg="virtio-net queue pair" when=exit tap=tap0 pair=1 rx_packets=900 rx_bytes=1 tx_packets=700 tx_bytes=1
time=2026-12-06T12:00:00Z level=INFO msg="virtio-net queue pair" when=exit tap=tap0 pair=2 rx_packets=800 rx_bytes=1 tx_packets=600 tx_bytes=1
time=2026-12-06T12:00:00Z level=INFO msg="virtio-net queue pairs" when=exit tap=tap0 pairs=2 active=2 shrinks=2 shrinks_pinned=2
NET-HOST-TAPSTATS rx_packets=1300 tx_packets=1700 rx_errors=0 tx_errors=0 rx_dropped=0 tx_dropped=4
`

// TestCheckMQ shows that each multiqueue assertion fails when what it
// checks goes wrong.
func TestCheckMQ(t *testing.T) {
	c := netCase{transport: "pci", mode: "mergeable", indirect: true, mtu: 1500, queues: 2, againMiB: 32}
	check := func(out string) []string {
		var rec recorder
		checkMQ(&rec, c, parseNet(out), out)
		return rec.errs
	}
	if errs := check(mqGood); len(errs) > 0 {
		t.Fatalf("good output rejected: %q", errs)
	}
	for name, m := range map[string][2]string{
		"ethtool -L failed":     {"step=start want=2 combined=2 rc=0", "step=start want=2 combined=1 rc=0"},
		"no change during h2g2": {"NET-GUEST-MQ result=ok step=h2g2-down want=1 combined=1 rc=0\n", ""},
		"guest queue 1 idle":    {"rx_queue_1_packets=800", "rx_queue_1_packets=0"},
		"guest drops":           {"rx_queue_1_drops=0", "rx_queue_1_drops=3"},
		"flint pair 2 idle":     {"pair=2 rx_packets=800 rx_bytes=1 tx_packets=600", "pair=2 rx_packets=800 rx_bytes=1 tx_packets=0"},
		"flint pair missing":    {`msg="virtio-net queue pair" when=exit tap=tap0 pair=2`, `msg="virtio-net queue pair" when=dump tap=tap0 pair=2`},
		"flint drops":           {"rx_drop_short=0", "rx_drop_short=2"},
		"flint tx errors":       {"tx_errors=0 broken", "tx_errors=1 broken"},
		"no counters":           {`msg="virtio-net counters"`, `msg="other"`},
		"shrink not pinned":     {"shrinks=2 shrinks_pinned=2", "shrinks=2 shrinks_pinned=1"},
		"too few shrinks":       {"shrinks=2 shrinks_pinned=2", "shrinks=1 shrinks_pinned=1"},
		"no pairs line":         {`msg="virtio-net queue pairs"`, `msg="virtio-net queue pairz"`},
		"tap errors":            {"rx_errors=0 tx_errors=0 rx_dropped", "rx_errors=1 tx_errors=0 rx_dropped"},
		"no tap stats":          {"NET-HOST-TAPSTATS", "NET-HOST-OTHER"},
		"no queue stats":        {"NET-GUEST-QSTATS", "NET-GUEST-OTHER"},
	} {
		if !strings.Contains(mqGood, m[0]) {
			t.Fatalf("%s: %q not in the good output", name, m[0])
		}
		if errs := check(strings.Replace(mqGood, m[0], m[1], 1)); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}
