package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// netGood is what a passing case printed (mmio, small-buffer options, MTU 9000,
// 64 MiB, recorded in the nested host), less the -OUT and -DMESG lines. One line
// carries an L1 kernel message in front, as the shared console sometimes does.
const netGood = `NET-HOST-H2G-SENT bytes=67108864 sha256=32a902661f03ffc2da81c3faa6e263bed1f6ae16257d079a11cd23ee34e15373
NET-HOST-TAP result=ok secs=0.2 mtu=9000 addr=10.0.2.1/24
NET-GUEST-START addr=10.0.2.15/24 host=10.0.2.1 size=64 iperf=3 bigping=8972
NET-GUEST-IF result=ok dev=eth0 driver=virtio_net bus=platform parent=LNRO0005:00 mtu=9000 mac=52:54:00:4a:63:d6 features=1101010000000000100000000000110010000000000000000000000000000000
NET-GUEST-UP result=ok operstate=up inet=10.0.2.15/24
NET-GUEST-HOSTPING result=ok secs=5.12 msg=host-ping=ok host-bigping=ok
<6>[   42.000001] tun: Universal TUN/TAP device driver, 1.6NET-GUEST-PING result=ok 3_packets_received
NET-G2H-SENT result=ok rc=0 bytes=67108864 sha256=8882b40f95e1251d7c875670627465fc2ec9740d32ca5d4c9f67163e9eb6c07b secs=3.98
NET-H2G-RECV result=ok rc=0 bytes=67108864 sha256=32a902661f03ffc2da81c3faa6e263bed1f6ae16257d079a11cd23ee34e15373 secs=3.99
NET-IPERF-OUT g2h [  5]   0.00-3.01   sec  42.6 MBytes   115 Mbits/sec                  receiver
NET-IPERF result=ok dir=g2h mbps=115
NET-IPERF result=ok dir=h2g mbps=264
NET-GUEST-BIGPING result=ok size=8972 mtu=9000
NET-GUEST-STATS rx_packets=22149 tx_packets=13350 rx_bytes=171586000 tx_bytes=112901548 rx_errors=0 tx_errors=0 rx_dropped=0 tx_dropped=0
NET-GUEST-DONE
NET-HOST-PING result=ok after=10.7s 3_received
NET-HOST-BIGPING result=ok size=8972 3_received
NET-HOST-G2H-RECV bytes=67108864 sha256=8882b40f95e1251d7c875670627465fc2ec9740d32ca5d4c9f67163e9eb6c07b
NET-HOST-IPERF3 [  5]   0.00-3.11   sec  42.6 MBytes   115 Mbits/sec                  receiver
NET-HOST-FLINT rc=0
`

var netGoodCase = netCase{transport: "mmio", mode: "big", opts: rxModeOpts["small"], indirect: true, mtu: 9000}

// recorder collects what checkNetCase reports.
type recorder struct{ errs []string }

func (r *recorder) Helper()                      {}
func (r *recorder) Logf(string, ...any)          {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }

func checkOutput(c netCase, out string, rc int) []string {
	var rec recorder
	checkNetCase(&rec, c, boot{name: c.name()}, &result{output: out, rc: rc}, 64, 3)
	return rec.errs
}

// TestCheckNetCase shows that each assertion of the network test fails when the
// behaviour it stands for breaks, and that a good run passes.
func TestCheckNetCase(t *testing.T) {
	if errs := checkOutput(netGoodCase, netGood, 0); len(errs) > 0 {
		t.Fatalf("good output rejected: %q", errs)
	}
	feats := "1101010000000000100000000000110010000000000000000000000000000000"
	flip := func(n int) string {
		b := []byte(feats)
		b[n] ^= 1
		return string(b)
	}
	bad := []struct {
		name, old, new string
		c              *netCase
		rc             int
	}{
		{name: "flint failed", rc: 1},
		{name: "host setup failed", old: "NET-HOST-TAP result=ok", new: "NET-HOST-SETUP result=fail reason=x\nNET-HOST-TAP result=ok"},
		{name: "no TAP", old: "NET-HOST-TAP result=ok", new: "NET-HOST-TAP result=fail"},
		{name: "TAP MTU", old: "secs=0.2 mtu=9000", new: "secs=0.2 mtu=1500"},
		{name: "wrong bus", old: "bus=platform", new: "bus=pci"},
		{name: "wrong driver", old: "driver=virtio_net", new: "driver=e1000"},
		{name: "guest MTU", old: "mtu=9000 mac", new: "mtu=1500 mac"},
		{name: "MRG_RXBUF negotiated", old: feats, new: flip(featMrgRxbuf)},
		{name: "INDIRECT missing", old: feats, new: flip(featIndirect)},
		{name: "GUEST_TSO4 on", old: feats, new: flip(featGuestTSO4)},
		{name: "not VERSION_1", old: feats, new: flip(featVersion1)},
		{name: "RING_PACKED unasked", old: feats, new: flip(featPacked)},
		{name: "case wants packed", c: &netCase{transport: "mmio", mode: "big", opts: rxModeOpts["small"], indirect: true, mtu: 9000, packed: true}},
		{name: "features cut", old: feats, new: feats[:20]},
		{name: "case wants small mode", c: &netCase{transport: "mmio", mode: "small", opts: rxModeOpts["small"], indirect: true, mtu: 9000}},
		{name: "no interface", old: "NET-GUEST-IF result=ok", new: "NET-GUEST-IF result=fail"},
		{name: "link down", old: "NET-GUEST-UP result=ok", new: "NET-GUEST-UP result=fail"},
		{name: "host ping failed", old: "NET-HOST-PING result=ok after=10.7s 3_received", new: "NET-HOST-PING result=fail after=10.7s 0_received"},
		{name: "host ping lost replies", old: "after=10.7s 3_received", new: "after=10.7s 2_received"},
		{name: "guest never told", old: "NET-GUEST-HOSTPING result=ok", new: "NET-GUEST-HOSTPING result=fail"},
		{name: "guest ping failed", old: "NET-GUEST-PING result=ok 3_packets_received", new: "NET-GUEST-PING result=fail 0_packets_received"},
		{name: "g2h corrupted", old: "NET-HOST-G2H-RECV bytes=67108864 sha256=8882", new: "NET-HOST-G2H-RECV bytes=67108864 sha256=9882"},
		{name: "g2h short", old: "NET-HOST-G2H-RECV bytes=67108864", new: "NET-HOST-G2H-RECV bytes=67108000"},
		{name: "g2h lost", old: "NET-HOST-G2H-RECV bytes=67108864 sha256=8882b40f95e1251d7c875670627465fc2ec9740d32ca5d4c9f67163e9eb6c07b", new: "NET-HOST-G2H-RECV result=fail reason=nothing-received"},
		{name: "g2h send failed", old: "NET-G2H-SENT result=ok rc=0", new: "NET-G2H-SENT result=fail rc=1"},
		{name: "h2g corrupted", old: "NET-H2G-RECV result=ok rc=0 bytes=67108864 sha256=32a9", new: "NET-H2G-RECV result=ok rc=0 bytes=67108864 sha256=42a9"},
		{name: "h2g short", old: "NET-H2G-RECV result=ok rc=0 bytes=67108864", new: "NET-H2G-RECV result=ok rc=0 bytes=1048576"},
		{name: "iperf3 failed", old: "NET-IPERF result=ok dir=h2g mbps=264", new: "NET-IPERF result=fail dir=h2g mbps=none"},
		{name: "iperf3 missing", old: "NET-IPERF result=ok dir=g2h mbps=115\n", new: ""},
		{name: "host bigping failed", old: "NET-HOST-BIGPING result=ok", new: "NET-HOST-BIGPING result=fail"},
		{name: "guest bigping failed", old: "NET-GUEST-BIGPING result=ok", new: "NET-GUEST-BIGPING result=fail"},
		{name: "no guest bigping", old: "NET-GUEST-BIGPING result=ok size=8972 mtu=9000\n", new: ""},
		{name: "rx drops", old: "rx_dropped=0", new: "rx_dropped=3"},
		{name: "tx errors", old: "tx_errors=0", new: "tx_errors=1"},
		{name: "guest script cut off", old: "NET-GUEST-DONE\n", new: ""},
		// A case with a second pair of streams (againMiB) needs them.
		{name: "second streams missing", c: &netCase{transport: "mmio", mode: "big", opts: rxModeOpts["small"], indirect: true, mtu: 9000, againMiB: 16}},
	}
	for _, b := range bad {
		t.Run(strings.ReplaceAll(b.name, " ", "_"), func(t *testing.T) {
			out := netGood
			if b.old != "" {
				if !strings.Contains(out, b.old) {
					t.Fatalf("fixture lacks %q", b.old)
				}
				out = strings.Replace(out, b.old, b.new, 1)
			}
			c := netGoodCase
			if b.c != nil {
				c = *b.c
			}
			errs := checkOutput(c, out, b.rc)
			if len(errs) == 0 {
				t.Errorf("accepted")
			}
			t.Logf("rejected with: %q", errs)
		})
	}
}

// TestCheckNetCaseSecondStreams: the second upload and download
// (againMiB) are checked like the first pair, at their own size.
func TestCheckNetCaseSecondStreams(t *testing.T) {
	c := netGoodCase
	c.againMiB = 16
	const g2h, h2g = "aaaa", "bbbb"
	good := netGood + "NET-G2H2-SENT result=ok rc=0 bytes=16777216 sha256=" + g2h + " secs=9.1\n" +
		"NET-HOST-G2H2-RECV bytes=16777216 sha256=" + g2h + "\n" +
		"NET-HOST-H2G2-SENT bytes=16777216 sha256=" + h2g + "\n" +
		"NET-H2G2-RECV result=ok rc=0 bytes=16777216 sha256=" + h2g + " secs=2.0\n"
	if errs := checkOutput(c, good, 0); len(errs) > 0 {
		t.Fatalf("good output rejected: %q", errs)
	}
	for name, m := range map[string][2]string{
		"upload failed":      {"NET-G2H2-SENT result=ok", "NET-G2H2-SENT result=fail"},
		"upload corrupted":   {"NET-HOST-G2H2-RECV bytes=16777216 sha256=aaaa", "NET-HOST-G2H2-RECV bytes=16777216 sha256=cccc"},
		"download short":     {"NET-H2G2-RECV result=ok rc=0 bytes=16777216", "NET-H2G2-RECV result=ok rc=0 bytes=1048576"},
		"download never ran": {"NET-H2G2-RECV result=ok rc=0 bytes=16777216 sha256=bbbb secs=2.0\n", ""},
	} {
		if errs := checkOutput(c, strings.Replace(good, m[0], m[1], 1), 0); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNetCases pins the case list: both transports, three RX modes, indirect on and
// off, packed on and off, every pair of those values in some case; jumbo frames on
// each transport; --net specs as flint parses them.
func TestNetCases(t *testing.T) {
	cs := netCases()
	if len(cs) < 9 {
		t.Fatalf("%d cases, want at least 9", len(cs))
	}
	checkPairwise(t, cs)
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.name()] {
			t.Errorf("case %s twice", c.name())
		}
		seen[c.name()] = true
	}
	want := map[string]string{
		"pci/mergeable/indirect=on":          "tap=tap0,transport=pci,indirect=on",
		"mmio/small/indirect=off":            "tap=tap0,transport=mmio,mrg_rxbuf=off,tso=off,ufo=off,indirect=off",
		"pci/big/indirect=off/packed":        "tap=tap0,transport=pci,mrg_rxbuf=off,indirect=off,packed=on",
		"mmio/big/indirect=on/mtu=9000":      "tap=tap0,transport=mmio,mrg_rxbuf=off,tso=off,ufo=off,indirect=on,mtu=9000",
		"pci/mergeable/indirect=on/mtu=9000": "tap=tap0,transport=pci,indirect=on,mtu=9000",
		// Flint on one CPU with a one-vCPU guest, with the second pair of streams.
		"mmio/mergeable/indirect=on/flintcpus=1": "tap=tap0,transport=mmio,indirect=on",
	}
	for _, c := range cs {
		if w, ok := want[c.name()]; ok && c.spec() != w {
			t.Errorf("%s: spec %q, want %q", c.name(), c.spec(), w)
		}
		delete(want, c.name())
	}
	if len(want) > 0 {
		t.Errorf("missing cases %v", want)
	}
	if got := l1Sizes(cs); !slices.Equal(got, []int{0}) {
		t.Errorf("nested host sizes %v, want [0]: every case shares the default nested host", got)
	}
	for _, c := range cs {
		if c.hostCPUs == 1 && (c.cpus != 1 || c.againMiB == 0) {
			t.Errorf("%s: guest vCPUs %d, second streams %d MiB; want 1 and some", c.name(), c.cpus, c.againMiB)
		}
	}
}

// checkPairwise fails unless every value of each factor (transport, RX mode,
// indirect, packed) meets every value of every other factor in some 1500-byte
// MTU case with one queue pair and unconstrained CPUs.
func checkPairwise(t *testing.T, cs []netCase) {
	t.Helper()
	factors := []struct {
		name   string
		values []string
		of     func(netCase) string
	}{
		{"transport", []string{"pci", "mmio"}, func(c netCase) string { return c.transport }},
		{"mode", []string{"mergeable", "big", "small"}, func(c netCase) string { return c.mode }},
		{"indirect", []string{"on", "off"}, func(c netCase) string { return onOff(c.indirect) }},
	}
	if packedReady {
		factors = append(factors, struct {
			name   string
			values []string
			of     func(netCase) string
		}{"packed", []string{"on", "off"}, func(c netCase) string { return onOff(c.packed) }})
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if c.mtu != 1500 || c.queues > 1 || c.hostCPUs > 0 {
			continue
		}
		for i, a := range factors {
			for _, b := range factors[i+1:] {
				seen[a.name+"="+a.of(c)+","+b.name+"="+b.of(c)] = true
			}
		}
	}
	for i, a := range factors {
		for _, b := range factors[i+1:] {
			for _, va := range a.values {
				for _, vb := range b.values {
					if k := a.name + "=" + va + "," + b.name + "=" + vb; !seen[k] {
						t.Errorf("no case with %s", k)
					}
				}
			}
		}
	}
}

// TestFailureDigest: a stalled case's summary names the guest's last step,
// the stall, the vCPU dumps and the last heartbeat, and nothing from a
// passing run's routine lines.
func TestFailureDigest(t *testing.T) {
	out := strings.Join([]string{
		"NET-G2H-SENT result=ok rc=0 bytes=67108864 sha256=88 secs=3.98",
		"NET-GUEST-BEAT t=40.1 rx_packets=10 tx_packets=20 irqs=virtio0-input.0=5",
		"NET-IPERF-OUT g2h Connecting to host 10.0.2.1, port 5201",
		"NET-GUEST-BEAT t=50.1 rx_packets=11 tx_packets=21 irqs=virtio0-input.0=6",
		"NET-HOST-STALL flint pid 7 still running after 376s, 3s without a packet through tap0; vCPU state dumps (SIGUSR1, twice):",
		`level=WARN msg="dump: vCPU" vcpu=0 rip=0xffffffff81000000`,
		`level=WARN msg="dump: virtio queue" dev=net0 tap=tap0 transport=mmio q=1 name=tx avail_idx=9 used_idx=7 engine=waiting-kick`,
		"NET-HOST-STALL its threads' kernel stacks:",
		"NET-HOST-FLINT rc=2",
	}, "\n")
	got := strings.Join(failureDigest(out), "\n")
	for _, want := range []string{
		"guest's last step: NET-IPERF-OUT g2h Connecting",
		"NET-HOST-STALL flint pid 7",
		"dump: vCPU",
		"q=1 name=tx avail_idx=9 used_idx=7 engine=waiting-kick",
		"guest's last heartbeat: NET-GUEST-BEAT t=50.1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("digest lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "kernel stacks") || strings.Contains(got, "t=40.1") {
		t.Errorf("digest has routine lines:\n%s", got)
	}
	if d := failureDigest(netGood); len(d) != 1 || !strings.Contains(d[0], "NET-GUEST-DONE") {
		t.Errorf("digest of a passing run = %q, want only its last step", d)
	}
}

// TestCheckHostCPUs: a case confined to one CPU fails unless both the host side
// and flint's GOMAXPROCS show the confinement.
func TestCheckHostCPUs(t *testing.T) {
	good := "NET-HOST-CPUS allowed=0 online=2\n" +
		`time=x level=INFO msg="starting vCPUs" vcpus=1 gomaxprocs=1` + "\n"
	for name, tc := range map[string]struct {
		out  string
		errs int
	}{
		"confined":       {good, 0},
		"not pinned":     {`level=INFO msg="starting vCPUs" vcpus=1 gomaxprocs=1` + "\n", 1},
		"other CPUs":     {strings.Replace(good, "allowed=0", "allowed=0-1", 1), 1},
		"two Ps":         {strings.Replace(good, "gomaxprocs=1", "gomaxprocs=2", 1), 1},
		"no flint line":  {"NET-HOST-CPUS allowed=0 online=2\n", 1},
		"nothing at all": {"", 2},
	} {
		var rec recorder
		checkHostCPUs(&rec, 1, parseNet(tc.out), tc.out)
		if len(rec.errs) != tc.errs {
			t.Errorf("%s: %d errors %q, want %d", name, len(rec.errs), rec.errs, tc.errs)
		}
	}
}

// TestIperfError: a failed iperf3 run's message carries iperf3's own error
// line for that direction (not the other direction's), or its last line.
func TestIperfError(t *testing.T) {
	out := strings.Join([]string{
		"NET-IPERF-OUT g2h iperf3: error - g2h's own",
		"NET-IPERF-OUT h2g Connecting to host 10.0.2.1, port 5201",
		"NET-IPERF-OUT h2g iperf3: error - the server is busy running a test. try again later",
		"NET-IPERF-OUT h2g ",
		"NET-IPERF result=fail dir=h2g mbps=none",
		"NET-IPERF-OUT x2y Connecting to host 10.0.2.1, port 5201",
	}, "\n")
	if got, want := iperfError(out, "h2g"), "; iperf3 said: iperf3: error - the server is busy running a test. try again later"; got != want {
		t.Errorf("h2g: %q, want %q", got, want)
	}
	if got, want := iperfError(out, "x2y"), "; iperf3 said: Connecting to host 10.0.2.1, port 5201"; got != want {
		t.Errorf("no error line: %q, want %q", got, want)
	}
	if got := iperfError(out, "none"); got != "" {
		t.Errorf("no output: %q", got)
	}
}
