package main

// The request-response table (uml-net-case.sh --rr): round-trip latency
// of one 64-byte TCP request at a time (internal/netrr's figures), and
// the CPU each round trip cost.

import "strings"

// rrFigures are the round-trip table's columns: netrr's keys, then
// cpuDerived's rr-* figures.
var rrFigures = []figure{
	{name: "rr-p50", test: "rr", dir: "rt", key: "p50_us", title: "TCP RR p50 µs", scale: 1, digits: 0},
	{name: "rr-p90", test: "rr", dir: "rt", key: "p90_us", title: "p90 µs", scale: 1, digits: 0},
	{name: "rr-p99", test: "rr", dir: "rt", key: "p99_us", title: "p99 µs", scale: 1, digits: 0},
	{name: "rr-rate", test: "rr", dir: "rt", key: "rate", title: "round trips/s", scale: 1, digits: 0},
	{name: "rr-be-us", title: "backend CPU µs per trip", scale: 1, digits: 1},
	{name: "rr-uml-us", title: "UML CPU µs per trip", scale: 1, digits: 1},
}

// rrDerived adds one rr line's CPU per round trip to out: be_cpu= and
// uml_cpu= (CPU seconds over the whole run) over rr= round trips.
func rrDerived(kv map[string]string, out map[string]float64, num func(string) (float64, bool)) {
	trips, ok := num("rr")
	if !ok || trips == 0 {
		return
	}
	if v, ok := num("be_cpu"); ok {
		out["rr-be-us"] = v / trips * 1e6
	}
	if v, ok := num("uml_cpu"); ok {
		out["rr-uml-us"] = v / trips * 1e6
	}
}

// writeRR prints the round-trip table (nothing if no line had one).
func writeRR(b *strings.Builder, res *results, order []string) {
	have := false
	for _, c := range order {
		have = have || len(res.vals[c]["rr-p50"]) > 0
	}
	if !have {
		return
	}
	b.WriteString("\nRequest-response (--rr): 64-byte TCP requests, one at a time, host to guest and back " +
		"(internal/netrr against the guest's `nc -ll -e cat`); latency in µs, CPU per round trip over the whole run; " +
		"medians (min-max) over the runs:\n\n")
	writeMedians(b, res, order, rrFigures)
}
