package main

import (
	"bytes"
	"strings"
	"testing"
)

// Three runs of flint and vec, one of dpdk, as bench-net.sh tags them, with
// a failed run, an "na" retransmit count and lines that are not UML-BENCH.
const sample = `UML-BENCH config=flint/mergeable/indirect=on backend=flint rx=mergeable indirect=on test=tcp dir=g2h run=1 mbps=9000 retr=4
UML-BENCH config=flint/mergeable/indirect=on backend=flint rx=mergeable indirect=on test=tcp dir=g2h run=2 mbps=11000 retr=na
UML-BENCH config=flint/mergeable/indirect=on backend=flint rx=mergeable indirect=on test=tcp dir=g2h run=3 mbps=10000 retr=2
UML-BENCH config=flint/mergeable/indirect=on backend=flint rx=mergeable indirect=on test=udp64 dir=h2g run=1 pps=300000 lost=0 sent=300000
UML-BENCH config=flint/mergeable/indirect=on backend=flint rx=mergeable indirect=on test=udp64 dir=h2g run=2 result=fail error=connection_refused
UML-BENCH config=vec backend=vec rx=- indirect=- test=tcp dir=g2h run=1 mbps=4000 retr=0
UML-BENCH config=vec backend=vec rx=- indirect=- test=tcp dir=g2h run=2 mbps=5000 retr=0
UML-BENCH config=vec backend=vec rx=- indirect=- test=udp64 dir=h2g run=1 pps=100000 lost=1 sent=100001
UML-BENCH config=dpdk backend=dpdk rx=- indirect=- test=tcp dir=g2h run=1 mbps=8000 retr=7
UML-BENCH config=dpdk backend=dpdk rx=- indirect=- test=udp64 dir=h2g run=1 pps=400000 lost=0 sent=400000
bench-net.sh: run 2/3: vec (load 1.0 1.0 1.0)
`

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in          []float64
		med, lo, hi float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		s := summarize(c.in)
		if !s.ok || s.median != c.med || s.min != c.lo || s.max != c.hi {
			t.Errorf("summarize(%v) = %+v, want median %v min %v max %v", c.in, s, c.med, c.lo, c.hi)
		}
	}
	if summarize(nil).ok {
		t.Error("no values summarized as a figure")
	}
}

func TestUnitReport(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := write(&out, res, []string{"flint/mergeable/indirect=on", "vec", "dpdk"}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	wantAll(t, got, []string{
		"1 measurement(s) failed and are left out of the medians:\n- config=flint/mergeable/indirect=on backend=flint rx=mergeable indirect=on test=udp64 dir=h2g run=2 result=fail error=connection_refused\n",
		"| configuration | TCP guest→host Gbit/s | retransmits | TCP host→guest Gbit/s | retransmits | UDP 64 B guest→host kpps | UDP 64 B host→guest kpps |\n|---|---|---|---|---|---|---|\n",
		// Median of three; "na" left out, so the median of 4 and 2.
		"| flint/mergeable/indirect=on | 10.00 (9.00-11.00) | 3 (2-4) | — | — | — | 300.0 (300.0-300.0) |\n",
		// Median of two: their mean.
		"| vec | 4.50 (4.00-5.00) | 0 (0-0) | — | — | — | 100.0 (100.0-100.0) |\n",
		"| dpdk | 8.00 (8.00-8.00) | 7 (7-7) | — | — | — | 400.0 (400.0-400.0) |\n",
		"| configuration | tcp-g2h (best: dpdk) | tcp-h2g (best: none) | udp64-g2h (best: none) | udp64-h2g (best: dpdk) |\n",
		"| flint/mergeable/indirect=on | 1.25 | — | — | 0.75 |\n",
	})
	if strings.Contains(got, "| vec | 0") || strings.Count(got, "| dpdk |") != 1 {
		t.Errorf("peers must not get a ratio row:\n%s", got)
	}
}

func TestUnitReportLongLine(t *testing.T) {
	if _, err := parse(strings.NewReader("UML-BENCH " + strings.Repeat("x", maxLine))); err == nil {
		t.Error("a line longer than maxLine was accepted")
	}
}

// FuzzReport: no input makes parse or write fail other than with an error,
// and the report always has both tables' headers.
func FuzzReport(f *testing.F) {
	f.Add(sample, "flint/mergeable/indirect=on vec dpdk")
	f.Add("UML-BENCH config=flint test=tcp dir=g2h mbps=NaN retr=Inf\n", "flint")
	f.Fuzz(func(t *testing.T, in, order string) {
		res, err := parse(strings.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := write(&out, res, strings.Fields(order)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "| configuration | TCP") || !strings.Contains(out.String(), "Flint / best peer") {
			t.Fatalf("report without its tables:\n%s", out.String())
		}
	})
}
