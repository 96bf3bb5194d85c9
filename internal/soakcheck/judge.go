package main

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// line is one "KIND key=value ..." line (the first value of a repeated key wins).
type line struct {
	kind string
	kv   map[string]string
}

// sample is one SOAK-SAMPLE line: flint net-backend's resources at t.
type sample struct {
	t        time.Duration
	rssKiB   int64 // VmRSS
	shmemKiB int64 // RssShmem: the connected frontend's memory the device has touched
	fds      int64 // entries of /proc/PID/fd
}

// own is the backend's own resident memory: VmRSS less RssShmem, the pages
// of the frontend's (the guest's) shared memory file that the rings and
// buffers touched. Those come and go with each connection and with which
// buffers the guest posted; they are the guest's RAM, not a backend's leak.
func (s sample) own() int64 { return s.rssKiB - s.shmemKiB }

// soak is what the lines say.
type soak struct {
	start   map[string]string // SOAK-START
	end     map[string]string // SOAK-END (nil: missing)
	samples []sample
	lines   []line // the UML-* lines, in order
}

const maxLine = 64 << 10

// parse reads the SOAK-* and UML-* lines; other lines are ignored. A
// SOAK-SAMPLE with a missing or malformed figure is an error: the sampler
// writes them, so one that cannot be read means the record cannot be trusted.
func parse(r io.Reader) (*soak, error) {
	s := &soak{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !(strings.HasPrefix(f[0], "SOAK-") || strings.HasPrefix(f[0], "UML-")) {
			continue
		}
		l := line{kind: f[0], kv: map[string]string{}}
		for _, x := range f[1:] {
			if k, v, ok := strings.Cut(x, "="); ok {
				if _, dup := l.kv[k]; !dup {
					l.kv[k] = v
				}
			}
		}
		switch l.kind {
		case "SOAK-START":
			s.start = l.kv
		case "SOAK-END":
			s.end = l.kv
		case "SOAK-SAMPLE":
			sm, err := parseSample(l.kv)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			s.samples = append(s.samples, sm)
		default:
			s.lines = append(s.lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the soak's lines: %w", err)
	}
	return s, nil
}

func parseSample(kv map[string]string) (sample, error) {
	var v [4]int64
	for i, k := range []string{"ms", "rss_kib", "fds", "shmem_kib"} {
		x, err := strconv.ParseInt(kv[k], 10, 64)
		if err != nil || x < 0 {
			return sample{}, fmt.Errorf("SOAK-SAMPLE: %s=%q is not a count", k, kv[k])
		}
		v[i] = x
	}
	if v[3] > v[1] {
		return sample{}, fmt.Errorf("SOAK-SAMPLE: shmem_kib=%d is more than rss_kib=%d", v[3], v[1])
	}
	return sample{t: time.Duration(v[0]) * time.Millisecond, rssKiB: v[1], fds: v[2], shmemKiB: v[3]}, nil
}

// verdict is the judged soak: figures for the report and every problem found.
type verdict struct {
	samples, judged             int
	rss, own, fds               stats
	rssGrowth, ownGrowth        float64 // rssGrowth is reported, ownGrowth judged
	fdGrowth                    float64
	boots, testBoots, benchRuns int
	shaOK, shaBad, iperfFail    int
	iperfMiB                    int64
	problems                    []string
}

// stats are first, last, min and max of one figure over all samples.
type stats struct{ first, last, min, max int64 }

func statsOf(ss []sample, f func(sample) int64) stats {
	if len(ss) == 0 {
		return stats{}
	}
	st := stats{first: f(ss[0]), last: f(ss[len(ss)-1]), min: f(ss[0]), max: f(ss[0])}
	for _, s := range ss {
		st.min, st.max = min(st.min, f(s)), max(st.max, f(s))
	}
	return st
}

// growth compares the largest value in the last quarter of ss with the
// largest in the first quarter: maxima, because the backend's RSS and fds rise
// while a frontend is connected (its memory mapped, its eventfds held) and
// fall between boots, and each quarter spans several boots.
func growth(ss []sample, f func(sample) int64) float64 {
	q := max(len(ss)/4, 1)
	peak := func(xs []sample) int64 {
		m := int64(0)
		for _, x := range xs {
			m = max(m, f(x))
		}
		return m
	}
	a, b := peak(ss[:q]), peak(ss[len(ss)-q:])
	if a == 0 {
		if b == 0 {
			return 0
		}
		return 1
	}
	return float64(b-a) / float64(a)
}

// minJudged is the fewest samples after warm-up that can show a trend.
const minJudged = 8

func judge(s *soak, warmup time.Duration, flat float64) *verdict {
	v := &verdict{samples: len(s.samples)}
	bad := func(format string, a ...any) { v.problems = append(v.problems, fmt.Sprintf(format, a...)) }
	if s.start == nil {
		bad("no SOAK-START line")
	}
	if s.end == nil {
		bad("no SOAK-END line: the soak did not finish")
	} else if s.end["rc"] != "0" {
		bad("scripts/uml-net-case.sh exited with status %s", s.end["rc"])
	}

	// Resources: flat after warm-up.
	v.rss = statsOf(s.samples, func(x sample) int64 { return x.rssKiB })
	v.own = statsOf(s.samples, sample.own)
	v.fds = statsOf(s.samples, func(x sample) int64 { return x.fds })
	var after []sample
	for _, x := range s.samples {
		if x.t >= warmup {
			after = append(after, x)
		}
	}
	v.judged = len(after)
	if len(after) < minJudged {
		bad("%d samples after the %v warm-up, want at least %d", len(after), warmup, minJudged)
	} else {
		v.rssGrowth = growth(after, func(x sample) int64 { return x.rssKiB })
		v.ownGrowth = growth(after, sample.own)
		v.fdGrowth = growth(after, func(x sample) int64 { return x.fds })
		if v.ownGrowth > flat {
			bad("RSS (VmRSS less the guest's shared pages) grew %.1f%% from the first to the last quarter after warm-up (limit %.0f%%)", 100*v.ownGrowth, 100*flat)
		}
		if v.fdGrowth > flat {
			bad("fd count grew %.1f%% from the first to the last quarter after warm-up (limit %.0f%%)", 100*v.fdGrowth, 100*flat)
		}
	}

	// Boots: every one's streams whole, every bench boot's iperf3 runs done.
	want := s.start["size_bytes"]
	bootsSeen := map[string]bool{}
	var order []string
	for _, l := range s.lines {
		switch l.kind {
		case "UML-HOST-BOOT":
			if !bootsSeen[l.kv["boot"]] {
				bootsSeen[l.kv["boot"]] = true
				order = append(order, l.kv["boot"])
			}
		case "UML-HOST-TIMEOUT":
			bad("boot %s overran the case's --timeout (%s s)", l.kv["boot"], l.kv["secs"])
		case "UML-HOST-ABORT":
			bad("the case could not be set up: %s", l.kv["reason"])
		case "UML-HOST-SERVE":
			bad("a bench boot's guest never served iperf3: %s", l.kv["reason"])
		case "UML-BENCH":
			if l.kv["result"] == "fail" {
				v.iperfFail++
				bad("iperf3 %s %s (boot %s) gave no figures: %s", l.kv["test"], l.kv["dir"], l.kv["boot"], l.kv["error"])
				continue
			}
			v.benchRuns++
			b, err := strconv.ParseInt(l.kv["bytes"], 10, 64)
			if err != nil || b <= 0 {
				bad("iperf3 %s %s (boot %s) moved no bytes (bytes=%q)", l.kv["test"], l.kv["dir"], l.kv["boot"], l.kv["bytes"])
				continue
			}
			v.iperfMiB += b >> 20
		}
	}
	v.boots = len(order)
	sort.SliceStable(order, func(i, j int) bool { return atoi(order[i]) < atoi(order[j]) })
	for _, b := range order {
		if atoi(b)%2 == 1 {
			v.testBoots++
			v.checkStreams(s.lines, b, want, bad)
		} else if n := countBench(s.lines, b); n != 2 {
			bad("bench boot %s: %d TCP iperf3 results, want 2 (one each way)", b, n)
		}
	}
	if v.testBoots == 0 || v.boots < 2 {
		bad("%d boots (%d with streams): the soak needs both kinds", v.boots, v.testBoots)
	}
	if v.shaBad == 0 && v.shaOK != 2*v.testBoots {
		bad("%d streams matched, want %d (two per test boot)", v.shaOK, 2*v.testBoots)
	}

	// The backend: alive at the end, one connection per boot.
	be, ok := find(s.lines, "UML-HOST-BACKEND", "")
	switch {
	case !ok:
		bad("no UML-HOST-BACKEND line")
	case be["running"] != "yes":
		bad("flint net-backend exited during the soak")
	case atoi(be["connections"]) != v.boots:
		bad("flint net-backend served %s connections, want %d (one per boot)", be["connections"], v.boots)
	}
	if _, ok := find(s.lines, "UML-CASE-END", ""); !ok {
		bad("scripts/uml-net-case.sh did not finish (no UML-CASE-END)")
	}
	return v
}

// checkStreams checks a test boot's two streams: the same byte count and
// SHA-256 at both ends, and the size the soak asked for.
func (v *verdict) checkStreams(ls []line, boot, want string, bad func(string, ...any)) {
	for _, d := range []struct{ name, sent, got string }{
		{"guest->host", "UML-GUEST-G2H", "UML-HOST-G2H"},
		{"host->guest", "UML-HOST-H2G", "UML-GUEST-H2G"},
	} {
		s, _ := find(ls, d.sent, boot)
		g, _ := find(ls, d.got, boot)
		if s["sha256"] == "" || s["sha256"] == "none" || s["sha256"] != g["sha256"] ||
			s["bytes"] != g["bytes"] || (want != "" && s["bytes"] != want) {
			v.shaBad++
			bad("boot %s: %s stream: sent %s bytes sha256 %s, received %s bytes sha256 %s (want %s bytes)",
				boot, d.name, s["bytes"], s["sha256"], g["bytes"], g["sha256"], want)
			continue
		}
		v.shaOK++
	}
}

func countBench(ls []line, boot string) int {
	n := 0
	for _, l := range ls {
		if l.kind == "UML-BENCH" && l.kv["boot"] == boot && l.kv["test"] == "tcp" && l.kv["result"] != "fail" {
			n++
		}
	}
	return n
}

// find returns the first line of kind for boot ("" matches any boot).
func find(ls []line, kind, boot string) (map[string]string, bool) {
	for _, l := range ls {
		if l.kind == kind && (boot == "" || l.kv["boot"] == boot) {
			return l.kv, true
		}
	}
	return map[string]string{}, false
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func (v *verdict) write(w io.Writer) {
	fmt.Fprintf(w, "SOAK-RSS-KIB first=%d last=%d min=%d max=%d growth_pct=%.1f\n",
		v.rss.first, v.rss.last, v.rss.min, v.rss.max, 100*v.rssGrowth)
	fmt.Fprintf(w, "SOAK-OWN-RSS-KIB first=%d last=%d min=%d max=%d growth_pct=%.1f\n",
		v.own.first, v.own.last, v.own.min, v.own.max, 100*v.ownGrowth)
	fmt.Fprintf(w, "SOAK-FDS first=%d last=%d min=%d max=%d growth_pct=%.1f\n",
		v.fds.first, v.fds.last, v.fds.min, v.fds.max, 100*v.fdGrowth)
	fmt.Fprintf(w, "SOAK-TRAFFIC samples=%d judged=%d boots=%d test_boots=%d streams_ok=%d streams_bad=%d iperf_runs=%d iperf_fail=%d iperf_mib=%d\n",
		v.samples, v.judged, v.boots, v.testBoots, v.shaOK, v.shaBad, v.benchRuns, v.iperfFail, v.iperfMiB)
	for _, p := range v.problems {
		fmt.Fprintf(w, "SOAK-PROBLEM %s\n", p)
	}
	r := "pass"
	if len(v.problems) > 0 {
		r = "fail"
	}
	fmt.Fprintf(w, "SOAK-VERDICT result=%s problems=%d\n", r, len(v.problems))
}
