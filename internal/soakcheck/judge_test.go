package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	shaA = "246eea05518e5ccd975d64b53d479b11fe1bc33ffb49c06d8b94c83dc1028e6f"
	shaB = "7214fc2677293e6e2bc039496dbc3368e5e7bb40efbe52240f43e32820a5f82f"
)

// soakLines is a passing soak: 40 samples 3 s apart whose own RSS is
// ownAt, whose fds swing with the connection (fdsAt) and whose shared pages
// of the guest's memory come and go, two test boots and two bench boots.
func soakLines(ownAt, fdsAt func(i int) int) string {
	var b strings.Builder
	fmt.Fprintln(&b, "SOAK-START minutes=2 secs=20 size_bytes=1048576 interval=3 warmup=60 commit=abc load=1/1/1")
	for i := range 40 {
		shmem := swing(0, 200000)(i) + 1000*i
		fmt.Fprintf(&b, "SOAK-SAMPLE ms=%d rss_kib=%d fds=%d threads=9 shmem_kib=%d\n", i*3000, ownAt(i)+shmem, fdsAt(i), shmem)
	}
	fmt.Fprintln(&b, "UML-CASE-START backend=flint mode=soak")
	for k := 1; k <= 4; k++ {
		fmt.Fprintf(&b, "UML-HOST-BOOT boot=%d rc=0 secs=17 killed=0\n", k)
		if k%2 == 1 {
			fmt.Fprintf(&b, "UML-GUEST-G2H result=ok bytes=1048576 sha256=%s secs=0.4 boot=%d\n", shaA, k)
			fmt.Fprintf(&b, "UML-GUEST-H2G result=ok bytes=1048576 sha256=%s secs=0.3 boot=%d\n", shaB, k)
			fmt.Fprintf(&b, "UML-CONSOLE boot=%d UML-GUEST-G2H result=ok bytes=1 sha256=x\n", k)
			fmt.Fprintf(&b, "UML-HOST-H2G boot=%d bytes=1048576 sha256=%s\n", k, shaB)
			fmt.Fprintf(&b, "UML-HOST-G2H boot=%d bytes=1048576 sha256=%s\n", k, shaA)
			continue
		}
		for _, d := range []string{"g2h", "h2g"} {
			fmt.Fprintf(&b, "UML-BENCH backend=flint test=tcp dir=%s run=1 mbps=2000 retr=0 bytes=5242880000 boot=%d\n", d, k)
		}
	}
	fmt.Fprintln(&b, "UML-HOST-BACKEND running=yes connections=4 warnings=0")
	fmt.Fprintln(&b, "UML-CASE-END")
	fmt.Fprintln(&b, "SOAK-END rc=0 secs=130 load=1/1/1")
	return b.String()
}

func swing(lo, hi int) func(int) int {
	return func(i int) int {
		if i%5 < 3 {
			return hi
		}
		return lo
	}
}

func judgeString(t *testing.T, in string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	rc := run(strings.NewReader(in), &out, time.Minute, 0.05)
	return rc, out.String()
}

func TestPass(t *testing.T) {
	rc, out := judgeString(t, soakLines(swing(11000, 11500), swing(12, 18)))
	if rc != 0 || !strings.Contains(out, "SOAK-VERDICT result=pass") {
		t.Fatalf("rc %d, want a pass:\n%s", rc, out)
	}
	for _, want := range []string{
		"SOAK-RSS-KIB first=211500 last=50000 min=14000 max=248500 growth_pct=6.4", // reported, not judged
		"SOAK-OWN-RSS-KIB first=11500 last=11000 min=11000 max=11500 growth_pct=0.0",
		"SOAK-FDS first=18 last=12 min=12 max=18",
		"boots=4 test_boots=2 streams_ok=4 streams_bad=0 iperf_runs=4 iperf_fail=0 iperf_mib=20000",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestFailures: each way a soak can go wrong is named.
func TestFailures(t *testing.T) {
	good := soakLines(swing(11000, 11500), swing(12, 18))
	leak := func(base, per int) func(int) int { return func(i int) int { return base + per*i } }
	for _, c := range []struct {
		name, in, want string
	}{
		{"rss grows", soakLines(leak(10000, 100), swing(12, 18)), "RSS (VmRSS less the guest's shared pages) grew"},
		{"fd leak", soakLines(swing(11000, 11500), leak(12, 1)), "fd count grew"},
		{"corrupt g2h", strings.Replace(good, "UML-HOST-G2H boot=3 bytes=1048576 sha256="+shaA, "UML-HOST-G2H boot=3 bytes=1048576 sha256="+shaB, 1), "boot 3: guest->host stream"},
		{"short h2g", strings.Replace(good, "UML-GUEST-H2G result=ok bytes=1048576 sha256="+shaB+" secs=0.3 boot=1", "UML-GUEST-H2G result=ok bytes=1000 sha256="+shaB+" secs=0.3 boot=1", 1), "boot 1: host->guest stream"},
		{"iperf fail", strings.Replace(good, "dir=h2g run=1 mbps=2000 retr=0 bytes=5242880000 boot=4", "dir=h2g run=1 result=fail error=refused boot=4", 1), "iperf3 tcp h2g (boot 4) gave no figures"},
		{"backend died", strings.Replace(good, "running=yes", "running=no", 1), "exited during the soak"},
		{"lost connection", strings.Replace(good, "connections=4", "connections=3", 1), "served 3 connections, want 4"},
		{"timeout", strings.Replace(good, "UML-CASE-END", "UML-HOST-TIMEOUT boot=4 secs=120\nUML-CASE-END", 1), "boot 4 overran"},
		{"unfinished", strings.Replace(good, "SOAK-END rc=0 secs=130 load=1/1/1\n", "", 1), "no SOAK-END"},
		{"case failed", strings.Replace(good, "SOAK-END rc=0", "SOAK-END rc=1", 1), "exited with status 1"},
		{"too few samples", firstSamples(good, 25), "5 samples after the 1m0s warm-up"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc, out := judgeString(t, c.in)
			if rc != 1 || !strings.Contains(out, "SOAK-VERDICT result=fail") || !strings.Contains(out, c.want) {
				t.Fatalf("rc %d, want a fail naming %q:\n%s", rc, c.want, out)
			}
		})
	}
}

// firstSamples drops every SOAK-SAMPLE line of in after the first n.
func firstSamples(in string, n int) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(in, "\n") {
		if strings.HasPrefix(l, "SOAK-SAMPLE ") {
			if n == 0 {
				continue
			}
			n--
		}
		b.WriteString(l)
	}
	return b.String()
}

func TestBadSample(t *testing.T) {
	for in, want := range map[string]string{
		"SOAK-SAMPLE ms=1 rss_kib=-5 fds=3 shmem_kib=0": `rss_kib=\"-5\" is not a count`,
		"SOAK-SAMPLE ms=1 rss_kib=5 fds=3":              `shmem_kib=\"\" is not a count`,
		"SOAK-SAMPLE ms=1 rss_kib=5 fds=3 shmem_kib=6":  `shmem_kib=6 is more than rss_kib=5`,
	} {
		rc, out := judgeString(t, "SOAK-START\n"+in+"\n")
		if rc != 1 || !strings.Contains(out, want) {
			t.Errorf("%s: rc %d, want a failure naming %s:\n%s", in, rc, want, out)
		}
	}
}
