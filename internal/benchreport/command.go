package main

// The command-mode report (-command): scripts/bench-command.sh's runs of
// `flint run --kernel K -- true` and of QEMU microvm doing the same work,
// from the BENCHCMD lines scripts/bench-command-job.sh prints in the nested
// host, as two tables: end to end (exec to exit, to /init, /init to exit,
// and Flint / QEMU) and the phases of a run.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The configurations bench-command-job.sh runs, in the report's order;
// qemuConfig is the one Flint's are compared with. A configuration's
// phase runs are named after it with phasesSuffix.
const (
	qemuConfig   = "qemu-microvm"
	phasesSuffix = "-phases"
)

var cmdConfigs = []string{"flint-nohostroot", "flint-hostroot", qemuConfig}

// cmdTitles are the configurations' names in the tables.
var cmdTitles = map[string]string{
	"flint-nohostroot": "Flint `--no-host-root`",
	"flint-hostroot":   "Flint, host root (virtio-fs + overlay)",
	qemuConfig:         "QEMU microvm",
}

// cmdRun is what the lines say about one run of one configuration.
type cmdRun struct {
	hasRun bool
	rc     int
	t0, t1 float64 // L1's uptime just before exec and just after exit
	// From Flint's --report, else its --timing line: seconds, NaN when
	// missing. result is the report's verdict; exited0 says the command
	// exited 0 (the report's status).
	bootToInit, command, total float64
	result                     string
	exited0                    bool
	// guest: the guest's uptime at each point (init, modules, cmd0, cmd1,
	// kinit); arrived: L1's uptime when QEMU's line for it came out.
	guest, arrived map[string]float64
}

func newCmdRun() *cmdRun {
	nan := math.NaN()
	return &cmdRun{bootToInit: nan, command: nan, total: nan, guest: map[string]float64{}, arrived: map[string]float64{}}
}

// cmdKey names a run: its configuration and round (0 is the warm-up).
type cmdKey struct {
	config string
	run    int
}

// cmdResults holds every run by configuration and round, and the lines
// that tell of failures (BENCHCMD-ERR).
type cmdResults struct {
	runs map[cmdKey]*cmdRun
	errs []string
}

// cmdReport is the part of Flint's --report JSON the report uses.
type cmdReport struct {
	BootToInit *float64 `json:"boot_to_init_seconds"`
	Command    *float64 `json:"command_seconds"`
	Total      *float64 `json:"total_seconds"`
	Status     *struct {
		Kind string `json:"kind"`
		Code *int   `json:"code"`
	} `json:"status"`
	Verdict struct {
		Result string `json:"result"`
	} `json:"verdict"`
}

// finite parses a finite number.
func finite(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
}

// parseCommand reads BENCHCMD lines; other lines, and lines without a
// config and a round, are ignored, as are values that do not parse.
func parseCommand(r io.Reader) (*cmdResults, error) {
	res := &cmdResults{runs: map[cmdKey]*cmdRun{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		kind, rest, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(kind, "BENCHCMD-") {
			continue
		}
		if kind == "BENCHCMD-ERR" {
			res.errs = append(res.errs, rest)
			continue
		}
		// config=C run=N come first; a report's JSON follows them.
		f := strings.SplitN(rest, " ", 3)
		if len(f) < 2 || !strings.HasPrefix(f[0], "config=") || !strings.HasPrefix(f[1], "run=") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[1], "run="))
		if err != nil || n < 0 {
			continue
		}
		k := cmdKey{strings.TrimPrefix(f[0], "config="), n}
		if k.config == "" {
			continue
		}
		tail := ""
		if len(f) == 3 {
			tail = f[2]
		}
		run := res.runs[k]
		if run == nil {
			run = newCmdRun()
			res.runs[k] = run
		}
		run.add(kind, tail)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading BENCHCMD lines: %w", err)
	}
	return res, nil
}

// add takes one line of kind about this run.
func (run *cmdRun) add(kind, tail string) {
	if kind == "BENCHCMD-REPORT" {
		var rep cmdReport
		if json.Unmarshal([]byte(tail), &rep) != nil {
			return
		}
		set := func(dst *float64, p *float64) {
			if p != nil && !math.IsNaN(*p) && !math.IsInf(*p, 0) {
				*dst = *p
			}
		}
		set(&run.bootToInit, rep.BootToInit)
		set(&run.command, rep.Command)
		set(&run.total, rep.Total)
		run.result = rep.Verdict.Result
		st := rep.Status
		run.exited0 = st != nil && st.Kind == "exited" && st.Code != nil && *st.Code == 0
		return
	}
	kv := map[string]string{}
	for _, x := range strings.Fields(tail) {
		if k, v, ok := strings.Cut(x, "="); ok {
			if _, dup := kv[k]; !dup {
				kv[k] = v
			}
		}
	}
	switch kind {
	case "BENCHCMD-RUN":
		rc, err := strconv.Atoi(kv["rc"])
		t0, ok0 := finite(kv["t0"])
		t1, ok1 := finite(kv["t1"])
		if err == nil && ok0 && ok1 && t1 >= t0 {
			run.hasRun, run.rc, run.t0, run.t1 = true, rc, t0, t1
		}
	case "BENCHCMD-TIMING":
		// Go durations; the report's seconds win when both are there.
		for key, dst := range map[string]*float64{"boot-to-init": &run.bootToInit, "command": &run.command, "total": &run.total} {
			if d, err := time.ParseDuration(kv[key]); err == nil && math.IsNaN(*dst) && d > 0 {
				*dst = d.Seconds()
			}
		}
	case "BENCHCMD-GUEST":
		at := kv["at"]
		if at == "" {
			return
		}
		if v, ok := finite(kv["up"]); ok {
			run.guest[at] = v
		}
		if v, ok := finite(kv["l1"]); ok {
			run.arrived[at] = v
		}
	}
}

// good reports whether the run measured what it should: the VMM exited 0
// (and Flint's verdict, when it wrote one, passed), or Flint's report says
// the command exited 0 whatever the verdict (a kernel WARNING at boot, as
// the nested host's CPU model gives, fails the verdict, not the run's
// times; such runs are named in the report).
func (run *cmdRun) good() bool {
	return run.hasRun && (run.exited0 || run.rc == 0 && (run.result == "" || run.result == "passed"))
}

// judged reports whether a good run's verdict was not passed.
func (run *cmdRun) judged() bool {
	return run.good() && run.result != "" && run.result != "passed"
}

func (run *cmdRun) wall() float64 { return run.t1 - run.t0 }

// get returns the guest's uptime at point at.
func (run *cmdRun) get(at string) (float64, bool) {
	v, ok := run.guest[at]
	return v, ok
}

// toInit is exec to /init: Flint's boot_to_init (counted from its own
// start); for QEMU, when the line its /init printed reached L1.
func (run *cmdRun) toInit(qemu bool) (float64, bool) {
	if !qemu {
		return run.bootToInit, !math.IsNaN(run.bootToInit)
	}
	a, ok := run.arrived["init"]
	return a - run.t0, ok && a >= run.t0
}

// kernelStart is when the guest's clock started, seconds from exec: when
// the line for point at reached L1, less the guest's uptime it carries.
func (run *cmdRun) kernelStart(at string) (float64, bool) {
	a, okA := run.arrived[at]
	u, okU := run.get(at)
	return diff(a-run.t0, okA, u, okU)
}

// phase is one row of the phases table: its title and how it is computed
// from a Flint phase run or a QEMU run (false: not known).
type phase struct {
	title       string
	flint, qemu func(run *cmdRun) (float64, bool)
}

// diff is a - b when both are known.
func diff(a float64, okA bool, b float64, okB bool) (float64, bool) {
	return a - b, okA && okB && !math.IsNaN(a) && !math.IsNaN(b)
}

// phases: Flint's from its phase runs, where the guest's kernel stamps
// "Run /init" (kinit) and the command prints the uptime at its start
// (cmd0: after the shell started); QEMU's from its /init's prints. The
// kernel's start is when a line reached L1 less the guest uptime it
// carries; the last row is the rest of the run's wall time (for Flint, less
// the phase command's time, from its start to the agent's report).
var phases = []phase{
	{"exec → kernel start",
		func(r *cmdRun) (float64, bool) { return r.kernelStart("cmd0") },
		func(r *cmdRun) (float64, bool) { return r.kernelStart("init") }},
	{"kernel start → /init",
		func(r *cmdRun) (float64, bool) { return r.get("kinit") },
		func(r *cmdRun) (float64, bool) { return r.get("init") }},
	{"/init → command start (modules, mounts, consoles)",
		func(r *cmdRun) (float64, bool) {
			c, okC := r.get("cmd0")
			k, okK := r.get("kinit")
			return diff(c, okC, k, okK)
		},
		func(r *cmdRun) (float64, bool) {
			c, okC := r.get("cmd0")
			i, okI := r.get("init")
			return diff(c, okC, i, okI)
		}},
	{"of which module loads",
		nil,
		func(r *cmdRun) (float64, bool) {
			m, okM := r.get("modules")
			i, okI := r.get("init")
			return diff(m, okM, i, okI)
		}},
	{"command",
		func(r *cmdRun) (float64, bool) { return r.command, !math.IsNaN(r.command) },
		func(r *cmdRun) (float64, bool) {
			b, okB := r.get("cmd1")
			a, okA := r.get("cmd0")
			return diff(b, okB, a, okA)
		}},
	{"command exit → VMM exit (power-off, teardown)",
		func(r *cmdRun) (float64, bool) {
			a, ok := r.arrived["cmd0"]
			return diff(r.wall(), true, a-r.t0+r.command, ok && !math.IsNaN(r.command))
		},
		func(r *cmdRun) (float64, bool) {
			k, okK := r.kernelStart("init")
			e, okE := r.get("cmd1")
			return diff(r.wall(), true, k+e, okK && okE)
		}},
}

// values collects f over the good runs of config from round 1 on.
func (res *cmdResults) values(config string, f func(*cmdRun) (float64, bool)) []float64 {
	var vs []float64
	for k, run := range res.runs {
		if k.config != config || k.run < 1 || !run.good() {
			continue
		}
		if v, ok := f(run); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			vs = append(vs, v)
		}
	}
	return vs
}

// rounds returns the rounds >= 1 that any run has, in order.
func (res *cmdResults) rounds() []int {
	var rs []int
	for k := range res.runs {
		if k.run >= 1 && !slices.Contains(rs, k.run) {
			rs = append(rs, k.run)
		}
	}
	slices.Sort(rs)
	return rs
}

// cell formats a summary as "median (min-max)" in seconds, or a dash.
func cell(s stats) string {
	if !s.ok {
		return "—"
	}
	return fmt.Sprintf("%.3f (%.3f-%.3f)", s.median, s.min, s.max)
}

// endToEnd are the end-to-end table's columns.
var endToEnd = []struct {
	title string
	f     func(run *cmdRun, qemu bool) (float64, bool)
}{
	{"exec → exit", func(r *cmdRun, _ bool) (float64, bool) { return r.wall(), true }},
	{"exec → /init", func(r *cmdRun, q bool) (float64, bool) { return r.toInit(q) }},
	{"/init → exit", func(r *cmdRun, q bool) (float64, bool) {
		t, ok := r.toInit(q)
		return r.wall() - t, ok
	}},
}

// writeCommand prints the command-mode report: failed runs, the end-to-end
// table with Flint / QEMU ratios (of the medians, and the range of the
// per-round ratios), and the phases table.
func writeCommand(w io.Writer, res *cmdResults) error {
	b := &strings.Builder{}
	var bad []string
	keys := make([]cmdKey, 0, len(res.runs))
	for k := range res.runs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, c cmdKey) int {
		if a.run != c.run {
			return a.run - c.run
		}
		return strings.Compare(a.config, c.config)
	})
	for _, k := range keys {
		if run := res.runs[k]; !run.good() {
			why := "no exit line"
			if run.hasRun {
				why = fmt.Sprintf("exit status %d", run.rc)
				if run.result != "" && run.result != "passed" {
					why += ", verdict " + run.result
				}
			}
			bad = append(bad, fmt.Sprintf("%s round %d: %s", k.config, k.run, why))
		}
	}
	if len(bad) > 0 {
		for _, l := range res.errs {
			bad = append(bad, "stderr: "+l)
		}
		writeList(b, fmt.Sprintf("%d run(s) failed and are left out:", len(bad)-len(res.errs)), bad)
	}
	var kept []string
	for _, k := range keys {
		if k.run >= 1 && res.runs[k].judged() {
			kept = append(kept, fmt.Sprintf("%s round %d: %s", k.config, k.run, res.runs[k].result))
		}
	}
	if len(kept) > 0 {
		writeList(b, fmt.Sprintf("%d run(s) kept although Flint's verdict failed them: the command exited 0, the times are whole (the splats are in the log):", len(kept)), kept)
	}

	titles := make([]string, len(endToEnd))
	for i, c := range endToEnd {
		titles[i] = c.title
	}
	writeHeader(b, append([]string{"configuration", "runs"}, titles...))
	for _, cfg := range cmdConfigs {
		q := cfg == qemuConfig
		walls := res.values(cfg, func(r *cmdRun) (float64, bool) { return r.wall(), true })
		fmt.Fprintf(b, "| %s | %d |", cmdTitles[cfg], len(walls))
		for _, c := range endToEnd {
			fmt.Fprintf(b, " %s |", cell(summarize(res.values(cfg, func(r *cmdRun) (float64, bool) { return c.f(r, q) }))))
		}
		b.WriteString("\n")
	}

	b.WriteString("\nFlint / QEMU: ratio of the medians (range of the ratios within a round):\n\n")
	writeHeader(b, append([]string{"configuration"}, titles...))
	for _, cfg := range cmdConfigs {
		if cfg == qemuConfig {
			continue
		}
		fmt.Fprintf(b, "| %s |", cmdTitles[cfg])
		for _, c := range endToEnd {
			fv := func(r *cmdRun) (float64, bool) { return c.f(r, false) }
			qv := func(r *cmdRun) (float64, bool) { return c.f(r, true) }
			fs, qs := summarize(res.values(cfg, fv)), summarize(res.values(qemuConfig, qv))
			if !fs.ok || !qs.ok || qs.median <= 0 {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(b, " %.2f", fs.median/qs.median)
			var per []float64
			for _, n := range res.rounds() {
				fr, qr := res.runs[cmdKey{cfg, n}], res.runs[cmdKey{qemuConfig, n}]
				if fr == nil || qr == nil || !fr.good() || !qr.good() {
					continue
				}
				a, okA := c.f(fr, false)
				d, okD := c.f(qr, true)
				if okA && okD && d > 0 {
					per = append(per, a/d)
				}
			}
			if s := summarize(per); s.ok {
				fmt.Fprintf(b, " (%.2f-%.2f)", s.min, s.max)
			}
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}

	b.WriteString("\nPhases (Flint: its phase runs, but the command's own time from the timed runs; QEMU: its timed runs):\n\n")
	cols := []string{"phase"}
	for _, cfg := range cmdConfigs {
		cols = append(cols, cmdTitles[cfg])
	}
	writeHeader(b, cols)
	for _, p := range phases {
		fmt.Fprintf(b, "| %s |", p.title)
		for _, cfg := range cmdConfigs {
			f, src := p.flint, cfg+phasesSuffix
			switch {
			case cfg == qemuConfig:
				f, src = p.qemu, cfg
			case p.title == "command":
				src = cfg // `true`'s own time, not the phase command's
			}
			if f == nil {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(b, " %s |", cell(summarize(res.values(src, f))))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader writes a Markdown table's header row and separator.
func writeHeader(b *strings.Builder, titles []string) {
	b.WriteString("|")
	for _, t := range titles {
		fmt.Fprintf(b, " %s |", t)
	}
	b.WriteString("\n|" + strings.Repeat("---|", len(titles)) + "\n")
}

// writeList writes head, the items as a Markdown list, and a blank line.
func writeList(b *strings.Builder, head string, items []string) {
	b.WriteString(head + "\n")
	for _, l := range items {
		fmt.Fprintf(b, "- %s\n", l)
	}
	b.WriteString("\n")
}
