package main

// The per-core figure (issue 15 item 4): the CPU time the backend process
// (and UML's) used in a window inside an iperf3 run, from
// uml-net-case.sh's win=, be_cpu=, uml_cpu=, win_bytes= and win_pkts=
// keys, per Gbit/s of TCP and per UDP packet.

import (
	"math"
	"strconv"
	"strings"
)

// cpuFigures are the CPU table's columns, in order (the values are
// cpuDerived's, by name).
var cpuFigures = []figure{
	{name: "cpu-tcp-g2h", title: "TCP g→h backend cores", scale: 1, digits: 2},
	{name: "cpg-tcp-g2h", title: "cores per Gbit/s", scale: 1, digits: 3},
	{name: "cpu-tcp-h2g", title: "TCP h→g backend cores", scale: 1, digits: 2},
	{name: "cpg-tcp-h2g", title: "cores per Gbit/s", scale: 1, digits: 3},
	{name: "usp-udp64-g2h", title: "UDP 64 B g→h backend µs/packet", scale: 1, digits: 1},
	{name: "usp-udp64-h2g", title: "UDP 64 B h→g backend µs/packet", scale: 1, digits: 1},
	{name: "uml-tcp-g2h", title: "TCP g→h UML cores", scale: 1, digits: 2},
	{name: "uml-tcp-h2g", title: "TCP h→g UML cores", scale: 1, digits: 2},
	{name: "all-tcp-g2h", title: "TCP g→h backend+UML cores per Gbit/s", scale: 1, digits: 3},
	{name: "all-tcp-h2g", title: "TCP h→g backend+UML cores per Gbit/s", scale: 1, digits: 3},
}

// cpuDerived returns the CPU figures of one UML-BENCH line's keys, all
// over the line's window inside the traffic (win= seconds, in which the
// TAP carried win_bytes= and win_pkts= in the test's direction): the
// backend's cores (be_cpu= CPU seconds over win), its cores per Gbit/s
// (be_cpu over the window's gigabits: TCP), its CPU microseconds per
// packet (UDP), UML's cores (uml_cpu over win: TCP), and backend and UML
// together per Gbit/s (TCP: the figure vec, without a backend process,
// can be compared by). A figure whose
// inputs are missing, not finite, negative, or zero where they divide is
// left out.
func cpuDerived(kv map[string]string) map[string]float64 {
	num := func(k string) (float64, bool) {
		v, err := strconv.ParseFloat(kv[k], 64)
		return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0
	}
	out := map[string]float64{}
	win, ok := num("win")
	if !ok || win == 0 {
		return out
	}
	if kv["test"] == "rr" {
		rrDerived(kv, out, num)
		return out
	}
	suffix := kv["test"] + "-" + kv["dir"]
	be, beOK := num("be_cpu")
	if v, ok := num("uml_cpu"); ok && kv["test"] == "tcp" {
		out["uml-"+suffix] = v / win
		if bytes, ok := num("win_bytes"); ok && bytes > 0 {
			if beOK {
				v += be
			}
			out["all-"+suffix] = v / (bytes * 8 / 1e9)
		}
	}
	if !beOK {
		return out
	}
	switch kv["test"] {
	case "tcp":
		out["cpu-"+suffix] = be / win
		if bytes, ok := num("win_bytes"); ok && bytes > 0 {
			out["cpg-"+suffix] = be / (bytes * 8 / 1e9)
		}
	case "udp64":
		if pkts, ok := num("win_pkts"); ok && pkts > 0 {
			out["usp-"+suffix] = be / pkts * 1e6
		}
	}
	return out
}

// writeCPU prints the CPU table for the configurations in order (nothing
// if no line carried CPU figures).
func writeCPU(b *strings.Builder, res *results, order []string) {
	have := false
	for _, c := range order {
		for _, f := range cpuFigures {
			have = have || len(res.vals[c][f.name]) > 0
		}
	}
	if !have {
		return
	}
	b.WriteString("\nCPU in a window inside the traffic (utime+stime from /proc/PID/stat, per second of the window, " +
		"per Gbit and per packet the TAP carried in the test's direction meanwhile; medians (min-max)). " +
		"Backend: flint net-backend or dpdk-testpmd (its busy-polling core counts whole); none for vec, " +
		"whose driver runs in UML's kernel. UML: every process of the UML session (with vec, its driver too):\n\n")
	writeMedians(b, res, order, cpuFigures)
}
