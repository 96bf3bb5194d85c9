package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRRReport: --rr lines make the round-trip table, with each run's
// CPU per round trip; a report without them has no such table.
func TestRRReport(t *testing.T) {
	lines := `UML-BENCH backend=flint rx=mergeable indirect=on test=rr dir=rt run=1 rr=5000 lost=0 min_us=60.0 p50_us=150.0 p90_us=300.0 p99_us=900.0 max_us=9000.0 mean_us=200.0 rate=4000 boot=1 win=1.250 be_cpu=0.20 uml_cpu=0.50 config=flint
UML-BENCH backend=flint rx=mergeable indirect=on test=rr dir=rt run=1 rr=5000 lost=0 min_us=60.0 p50_us=170.0 p90_us=320.0 p99_us=1100.0 max_us=9000.0 mean_us=220.0 rate=3800 boot=2 win=1.300 be_cpu=0.30 uml_cpu=0.60 config=flint
UML-BENCH backend=vec rx=- indirect=- test=rr dir=rt run=1 rr=5000 lost=0 min_us=50.0 p50_us=120.0 p90_us=200.0 p99_us=700.0 max_us=5000.0 mean_us=150.0 rate=6000 boot=1 win=0.830 uml_cpu=0.70 config=vec
`
	res, err := parse(strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := write(&out, res, []string{"flint", "vec"}); err != nil {
		t.Fatal(err)
	}
	wantAll(t, out.String(), []string{
		"| configuration | TCP RR p50 µs | p90 µs | p99 µs | round trips/s | backend CPU µs per trip | UML CPU µs per trip |\n",
		"| flint | 160 (150-170) | 310 (300-320) | 1000 (900-1100) | 3900 (3800-4000) | 50.0 (40.0-60.0) | 110.0 (100.0-120.0) |\n",
		"| vec | 120 (120-120) | 200 (200-200) | 700 (700-700) | 6000 (6000-6000) | — | 140.0 (140.0-140.0) |\n",
	})
	out.Reset()
	res, _ = parse(strings.NewReader(sample))
	if write(&out, res, []string{"vec"}); strings.Contains(out.String(), "Request-response") {
		t.Error("a round-trip table without round trips")
	}
}
