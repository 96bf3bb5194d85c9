package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestCPUDerived checks the per-core arithmetic: cores = CPU seconds over
// the traffic's seconds, cores per Gbit/s, microseconds per packet.
func TestCPUDerived(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	for _, c := range []struct {
		name string
		kv   map[string]string
		want map[string]float64
	}{
		{"tcp: 2 CPU s in an 8 s window that carried 5 GB is 0.25 cores, 0.05 per Gbit/s",
			map[string]string{"test": "tcp", "dir": "g2h", "mbps": "4000", "secs": "10", "win": "8", "be_cpu": "2", "uml_cpu": "7.2", "win_bytes": "5000000000", "win_pkts": "100000"},
			map[string]float64{"cpu-tcp-g2h": 0.25, "cpg-tcp-g2h": 0.05, "uml-tcp-g2h": 0.9, "all-tcp-g2h": 0.23}},
		{"udp: 1 CPU s for 500000 packets is 2 µs per packet",
			map[string]string{"test": "udp64", "dir": "h2g", "pps": "100000", "win": "5", "be_cpu": "1", "uml_cpu": "5", "win_bytes": "50000000", "win_pkts": "500000"},
			map[string]float64{"usp-udp64-h2g": 2}},
		{"vec: no backend process, UML only",
			map[string]string{"test": "tcp", "dir": "g2h", "mbps": "5000", "win": "10", "uml_cpu": "19.5", "win_bytes": "6500000000"},
			map[string]float64{"uml-tcp-g2h": 1.95, "all-tcp-g2h": 0.375}},
		{"no bytes in the window: cores, no ratio",
			map[string]string{"test": "tcp", "dir": "g2h", "win": "10", "be_cpu": "1", "win_bytes": "0"},
			map[string]float64{"cpu-tcp-g2h": 0.1}},
		{"no window: nothing", map[string]string{"test": "tcp", "dir": "g2h", "win": "0", "be_cpu": "1", "win_bytes": "9"}, map[string]float64{}},
		{"bad numbers: nothing", map[string]string{"test": "tcp", "dir": "g2h", "win": "NaN", "be_cpu": "1"}, map[string]float64{}},
		{"negative CPU, infinite UML: left out", map[string]string{"test": "tcp", "dir": "g2h", "win": "1", "be_cpu": "-1", "uml_cpu": "Inf"}, map[string]float64{}},
	} {
		got := cpuDerived(c.kv)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			continue
		}
		for k, v := range c.want {
			if g, ok := got[k]; !ok || !near(g, v) {
				t.Errorf("%s: %s = %v, want %v (all: %v)", c.name, k, g, v, got)
			}
		}
	}
}

func TestCPUTable(t *testing.T) {
	lines := `UML-BENCH config=flint/big/indirect=on backend=flint test=tcp dir=g2h run=1 mbps=5000 retr=0 win=10 be_cpu=2.00 uml_cpu=9.00 win_bytes=6250000000 win_pkts=1
UML-BENCH config=flint/big/indirect=on backend=flint test=tcp dir=g2h run=2 mbps=4000 retr=0 win=10 be_cpu=3.00 uml_cpu=9.50 win_bytes=5000000000 win_pkts=1
UML-BENCH config=flint/big/indirect=on backend=flint test=udp64 dir=h2g run=1 pps=50000 win=5 be_cpu=0.50 uml_cpu=4 win_bytes=1 win_pkts=250000
UML-BENCH config=vec backend=vec test=tcp dir=g2h run=1 mbps=6000 retr=0 win=10 uml_cpu=19.00 win_bytes=0 win_pkts=1
`
	res, err := parse(strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := write(&out, res, []string{"flint/big/indirect=on", "vec"}); err != nil {
		t.Fatal(err)
	}
	wantAll(t, out.String(), []string{
		"| configuration | TCP g→h backend cores | cores per Gbit/s | TCP h→g backend cores |",
		// 0.2 and 0.3 cores; 2 CPU s for 50 Gbit and 3 for 40: 0.04 and 0.075 per
		// Gbit/s; 0.5 CPU s for 250000 packets: 2 µs each; UML 0.90 and 0.95.
		// Backend and UML: 11 CPU s for 50 Gbit, 12.5 for 40.
		"| flint/big/indirect=on | 0.25 (0.20-0.30) | 0.057 (0.040-0.075) | — | — | — | 2.0 (2.0-2.0) | 0.93 (0.90-0.95) | — | 0.266 (0.220-0.312) | — |\n",
		"| vec | — | — | — | — | — | — | 1.90 (1.90-1.90) | — | — | — |\n",
	})
	// Without CPU keys, no CPU table.
	res, _ = parse(strings.NewReader(sample))
	out.Reset()
	write(&out, res, []string{"vec"})
	if strings.Contains(out.String(), "backend cores") {
		t.Errorf("a CPU table without CPU figures:\n%s", out.String())
	}
}
