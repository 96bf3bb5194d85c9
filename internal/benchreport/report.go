package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// figure is one column of the report: a test and direction of
// uml-net-case.sh's bench mode, the UML-BENCH key that carries its value,
// and how it is shown.
type figure struct {
	name   string // test-dir, e.g. "tcp-g2h"
	test   string // UML-BENCH test=
	dir    string // UML-BENCH dir=
	key    string // the value's key: mbps, retr or pps
	title  string // the medians table's column
	scale  float64
	digits int
	peer   bool // compared with the best peer
}

// figures are the medians table's columns, in order.
var figures = []figure{
	{"tcp-g2h", "tcp", "g2h", "mbps", "TCP guest→host Gbit/s", 1000, 2, true},
	{"tcp-g2h-retr", "tcp", "g2h", "retr", "retransmits", 1, 0, false},
	{"tcp-h2g", "tcp", "h2g", "mbps", "TCP host→guest Gbit/s", 1000, 2, true},
	{"tcp-h2g-retr", "tcp", "h2g", "retr", "retransmits", 1, 0, false},
	{"udp64-g2h", "udp64", "g2h", "pps", "UDP 64 B guest→host kpps", 1000, 1, true},
	{"udp64-h2g", "udp64", "h2g", "pps", "UDP 64 B host→guest kpps", 1000, 1, true},
}

// parsedFigures are the figures read from the lines' keys as they are.
var parsedFigures = append(append([]figure(nil), figures...), rrFigures[:4]...)

// results holds every measurement of a run, by configuration and figure
// name, and the lines of the measurements that failed.
type results struct {
	vals  map[string]map[string][]float64
	fails []string
}

// maxLine bounds one input line; longer lines are an error, not a crash.
const maxLine = 64 << 10

// parse reads UML-BENCH lines ("UML-BENCH config=C test=T dir=D key=value
// ..."); other lines are ignored. A line with result=fail is a failed
// measurement; a value that is missing or not a finite number (iperf3's
// "na" retransmits) is left out.
func parse(r io.Reader) (*results, error) {
	res := &results{vals: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "UML-BENCH" {
			continue
		}
		kv := map[string]string{}
		for _, x := range f[1:] {
			if k, v, ok := strings.Cut(x, "="); ok {
				if _, dup := kv[k]; !dup {
					kv[k] = v
				}
			}
		}
		if kv["result"] == "fail" {
			res.fails = append(res.fails, strings.Join(f[1:], " "))
			continue
		}
		c := kv["config"]
		if c == "" {
			continue
		}
		for _, fig := range parsedFigures {
			if kv["test"] != fig.test || kv["dir"] != fig.dir {
				continue
			}
			v, err := strconv.ParseFloat(kv[fig.key], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			if res.vals[c] == nil {
				res.vals[c] = map[string][]float64{}
			}
			res.vals[c][fig.name] = append(res.vals[c][fig.name], v)
		}
		for name, v := range cpuDerived(kv) {
			if res.vals[c] == nil {
				res.vals[c] = map[string][]float64{}
			}
			res.vals[c][name] = append(res.vals[c][name], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading UML-BENCH lines: %w", err)
	}
	return res, nil
}

// stats is a figure's median, minimum and maximum over the runs.
type stats struct {
	median, min, max float64
	ok               bool // there was at least one value
}

// summarize returns vs's median (the mean of the middle two for an even
// count), minimum and maximum.
func summarize(vs []float64) stats {
	if len(vs) == 0 {
		return stats{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return stats{median: m, min: s[0], max: s[n-1], ok: true}
}

// writeMedians prints a table of figs' medians (min-max), one row per
// configuration in order.
func writeMedians(b *strings.Builder, res *results, order []string, figs []figure) {
	b.WriteString("| configuration |")
	for _, f := range figs {
		fmt.Fprintf(b, " %s |", f.title)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(figs)) + "\n")
	for _, c := range order {
		fmt.Fprintf(b, "| %s |", c)
		for _, f := range figs {
			s := summarize(res.vals[c][f.name])
			if !s.ok {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(b, " %.*f (%.*f-%.*f) |", f.digits, s.median/f.scale, f.digits, s.min/f.scale, f.digits, s.max/f.scale)
		}
		b.WriteString("\n")
	}
}

// isFlint reports whether configuration c is one of Flint's (the others are
// the peers it is compared with).
func isFlint(c string) bool { return c == "flint" || strings.HasPrefix(c, "flint/") }

// write prints the report for the configurations in order: the failed
// measurements, the medians (min-max) of every figure, and each Flint
// configuration's median as a ratio of the best peer's (the peer with the
// highest median), figure by figure.
func write(w io.Writer, res *results, order []string) error {
	b := &strings.Builder{}
	if len(res.fails) > 0 {
		writeList(b, fmt.Sprintf("%d measurement(s) failed and are left out of the medians:", len(res.fails)), res.fails)
	}
	writeMedians(b, res, order, figures)
	var cmp []figure
	for _, f := range figures {
		if f.peer {
			cmp = append(cmp, f)
		}
	}
	best := make([]string, len(cmp))
	bestv := make([]float64, len(cmp))
	for k, f := range cmp {
		for _, c := range order {
			if s := summarize(res.vals[c][f.name]); !isFlint(c) && s.ok && s.median > bestv[k] {
				best[k], bestv[k] = c, s.median
			}
		}
	}
	b.WriteString("\nFlint / best peer (medians; the best peer of each figure in the header):\n\n| configuration |")
	for k, f := range cmp {
		name := best[k]
		if name == "" {
			name = "none"
		}
		fmt.Fprintf(b, " %s (best: %s) |", f.name, name)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(cmp)) + "\n")
	for _, c := range order {
		if !isFlint(c) {
			continue
		}
		fmt.Fprintf(b, "| %s |", c)
		for k, f := range cmp {
			s := summarize(res.vals[c][f.name])
			if !s.ok || bestv[k] == 0 {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(b, " %.2f |", s.median/bestv[k])
		}
		b.WriteString("\n")
	}
	writeCPU(b, res, order)
	writeRR(b, res, order)
	_, err := io.WriteString(w, b.String())
	return err
}
