package e2e

import (
	"bufio"
	"cmp"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/vmm"
)

// netCase is one virtio-net configuration the network test boots.
type netCase struct {
	transport string // pci or mmio
	mode      string // RX mode the guest must end up in: mergeable, big or small
	opts      string // extra --net options that select it
	indirect  bool
	mtu       int
	// againMiB: after iperf3, a second upload and download of this size
	// (net-guest.sh flintnet.again), on a link that has carried traffic.
	againMiB int
	// l1CPUs, when set, runs the case in a nested host with that many vCPUs
	// (default 2), and cpus gives the guest that many (default 2).
	l1CPUs, cpus int
	// hostCPUs, when set, lets flint and the case's host side run on that many
	// CPUs only (net-case.sh --cpus: taskset), as a container's cpuset would;
	// flint then runs with GOMAXPROCS equal to it.
	hostCPUs int
	// packed: the device offers packed virtqueues (--net packed=on) and the
	// guest must negotiate them.
	packed bool
	// queues > 1: that many queue pairs (--net queues=N, multiqueue).
	queues int
}

func (c netCase) name() string {
	n := fmt.Sprintf("%s/%s/indirect=%s", c.transport, c.mode, onOff(c.indirect))
	if c.mtu != 1500 {
		n += fmt.Sprintf("/mtu=%d", c.mtu)
	}
	if c.l1CPUs > 0 {
		n += fmt.Sprintf("/l1cpus=%d", c.l1CPUs)
	}
	if c.hostCPUs > 0 {
		n += fmt.Sprintf("/flintcpus=%d", c.hostCPUs)
	}
	if c.packed {
		n += "/packed"
	}
	if c.queues > 1 {
		n += fmt.Sprintf("/queues=%d", c.queues)
	}
	return n
}

func (c netCase) spec() string {
	s := "tap=tap0,transport=" + c.transport
	if c.opts != "" {
		s += "," + c.opts
	}
	s += ",indirect=" + onOff(c.indirect)
	if c.mtu != 1500 {
		s += fmt.Sprintf(",mtu=%d", c.mtu)
	}
	if c.packed {
		s += ",packed=on"
	}
	if c.queues > 1 {
		s += fmt.Sprintf(",queues=%d", c.queues)
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// The --net options behind each RX mode of the Linux driver: mergeable buffers
// (MRG_RXBUF, the default), big packets (no MRG_RXBUF but guest TSO/UFO: 64 KiB page
// chains) and small buffers (neither). An MTU above 1500 also makes the driver use
// big packets without MRG_RXBUF.
var rxModeOpts = map[string]string{
	"mergeable": "",
	"big":       "mrg_rxbuf=off",
	"small":     "mrg_rxbuf=off,tso=off,ufo=off",
}

// packedReady turns on the packed column of the pairwise matrix: --net
// packed=on exists (issue 15), and the packed cases check that the guest
// negotiated VIRTIO_F_RING_PACKED.
const packedReady = true

func netCases() []netCase {
	// Transport x RX mode x indirect x packed, pairwise rather than the full
	// 24: six boots in which every value of each factor meets every value of
	// every other factor at least once (each RX mode and each indirect value
	// runs with and without packed rings, on each transport). A bug that needs
	// a particular pair of settings shows up; one that needs three at once is
	// what the unit tests and the UML harness's full RX-mode matrix are for.
	pairwise := []struct {
		transport, mode  string
		indirect, packed bool
	}{
		{"pci", "mergeable", true, false},
		{"pci", "big", false, true},
		{"pci", "small", true, true},
		{"mmio", "mergeable", false, true},
		{"mmio", "big", true, false},
		{"mmio", "small", false, false},
	}
	var cs []netCase
	for _, p := range pairwise {
		cs = append(cs, netCase{transport: p.transport, mode: p.mode, opts: rxModeOpts[p.mode],
			indirect: p.indirect, packed: p.packed && packedReady, mtu: 1500})
	}
	// Jumbo frames: mergeable buffers over PCI; over MMIO the small-buffer options,
	// with which the MTU alone turns on big packets.
	cs = append(cs,
		netCase{transport: "pci", mode: "mergeable", opts: "", indirect: true, mtu: 9000},
		netCase{transport: "mmio", mode: "big", opts: rxModeOpts["small"], indirect: true, mtu: 9000})
	// CPU scarcity (issue 9): flint confined to one CPU (GOMAXPROCS=1) with a
	// one-vCPU guest, where the guest's vCPU thread and flint's device goroutines
	// take turns on one CPU and one Go P. MMIO, whose interrupt costs two exits
	// (status read and acknowledgement), with an upload and a download after
	// iperf3. The nested host keeps its second vCPU: a one-vCPU nested host is
	// lost by the emulator itself (CI, 2026-12-06: 6 of 6 such hosts went silent,
	// and QEMU as the guest's VMM loses them too), so that variant lives in the
	// soak (scripts/soak-net.sh), not in make test.
	cs = append(cs, netCase{transport: "mmio", mode: "mergeable", opts: "", indirect: true, mtu: 1500,
		againMiB: 16, cpus: 1, hostCPUs: 1})
	// Multiqueue (issue 15): two pairs for a two-vCPU guest over PCI (an
	// MSI-X vector per queue), iperf3 with 8 flows so both pairs carry
	// traffic, and the second streams with the pair count taken down to one
	// and back while each runs (checkMQ).
	cs = append(cs, netCase{transport: "pci", mode: "mergeable", opts: "", indirect: true, mtu: 1500,
		queues: 2, cpus: 2, againMiB: 32})
	return cs
}

// Feature bits the test checks in the guest's negotiated set
// (/sys/class/net/eth0/device/features: one '0'/'1' per bit, bit 0 first).
const (
	featGuestTSO4 = 7
	featGuestTSO6 = 8
	featGuestECN  = 9
	featGuestUFO  = 10
	featMrgRxbuf  = 15
	featIndirect  = 28
	featVersion1  = 32
	featPacked    = 34
)

// netMarker is one "NET-... key=value ..." line.
type netMarker struct {
	kind string
	kv   map[string]string
	line string
}

// Not anchored: an L1 kernel message can precede a guest line on the same console.
var netMarkerRE = regexp.MustCompile(`(NET-[A-Z0-9-]+)(?: (.*))?$`)

// parseNet returns the NET-* lines of a case's output by kind, in order.
func parseNet(out string) map[string][]netMarker {
	m := map[string][]netMarker{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		g := netMarkerRE.FindStringSubmatch(line)
		if g == nil || strings.HasSuffix(g[1], "-OUT") || strings.HasSuffix(g[1], "-DMESG") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(g[2]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		m[g[1]] = append(m[g[1]], netMarker{kind: g[1], kv: kv, line: line})
	}
	return m
}

// netEnvInt reads a positive integer from the environment, or def.
func netEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// requireNetTools skips (or under CI fails) unless the network tools are here: the
// nested host gets copies of them, the direct path uses them as they are.
func requireNetTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"iperf3", "ping", "ip", "ldd", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := exec.LookPath("/usr/sbin/" + tool); err != nil {
				missing = append(missing, tool)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing tools %v (Debian packages: apt-get install iperf3 iputils-ping iproute2 ethtool)", missing)
	if ciMode() {
		t.Fatal(msg + "; CI is set, so this is a failure")
	}
	t.Skip(msg)
}

// tunModule finds the TAP driver of the nested host's kernel (the amd64 flavour):
// its init loads only kvm_amd, and TAPs need /dev/net/tun.
func tunModule(t *testing.T, cache string) string {
	t.Helper()
	moddir := filepath.Join(cache, "kernels", "amd64", "modules")
	dep, err := os.ReadFile(filepath.Join(moddir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(dep), "\n") {
		path, deps, ok := strings.Cut(line, ":")
		if ok && strings.HasSuffix(path, "/tun.ko") {
			if strings.TrimSpace(deps) != "" {
				t.Fatalf("tun.ko has dependencies (%s); net-case.sh loads it alone", deps)
			}
			return filepath.Join(moddir, path)
		}
	}
	t.Fatalf("no uncompressed tun.ko in %s/modules.dep", moddir)
	return ""
}

// TestStockKernelNetwork boots the stock Debian cloud kernel with a virtio-net
// interface over virtio-pci and over virtio-mmio, in each RX mode of the Linux driver
// (mergeable, big, small), with indirect descriptors on and off, and with jumbo
// frames. For each case, scripts/net-case.sh creates a network namespace (in the
// nested host, or on this machine with hardware virtualization), runs flint inside it
// so that flint creates the TAP there, and serves the guest; the guest side is
// scripts/net-guest.sh. Per case it checks: the guest's interface uses virtio_net on
// the requested transport with the requested features (so the RX mode is the one
// intended), comes up, pings the host and answers the host's ping, a TCP stream each
// way arrives with the same size
// and SHA-256, iperf3 runs each way (FLINT_E2E_NET_IPERF seconds, default 3), the
// guest counts no errors or drops, and with MTU 9000 both sides see MTU 9000 and a
// ping with DF set and an 8972-byte payload goes through both ways.
//
// Streams are 64 MiB of random bytes each way in every case (FLINT_E2E_NET_MIB=N
// sends N MiB). A case in which the nested emulation lost the guest's vCPU state
// (see rerunLostStates) runs once more in a fresh nested host, loudly.
// FLINT_E2E_NET_ONLY (a regexp) limits the cases, for development.
func TestStockKernelNetwork(t *testing.T) {
	e := setup(t)
	requireNetTools(t)
	if e.direct && os.Geteuid() != 0 {
		msg := "the network test creates network namespaces and TAPs: run it as root"
		if ciMode() {
			t.Fatal(msg + "; CI is set, so this is a failure")
		}
		t.Skip(msg)
	}
	allMiB := netEnvInt(t, "FLINT_E2E_NET_MIB", 0)
	iperfSecs := netEnvInt(t, "FLINT_E2E_NET_IPERF", 3)
	sizeOf := func(c netCase) int {
		switch {
		case allMiB > 0:
			return allMiB
		case c.l1CPUs == 1 || c.hostCPUs == 1:
			return 16 // one CPU for flint moves ~1-4 MB/s
		}
		return 64
	}
	cases := netCases()
	// Development and soak knobs (tests/doc.go): every case in a nested host
	// with N vCPUs, a guest with N vCPUs, a second pair of N-MiB streams.
	for i := range cases {
		c := &cases[i]
		if n := netEnvInt(t, "FLINT_E2E_L1_CPUS", 0); n > 0 {
			c.l1CPUs = n
		}
		if n := netEnvInt(t, "FLINT_E2E_NET_CPUS", 0); n > 0 {
			c.cpus = n
		}
		if n := netEnvInt(t, "FLINT_E2E_NET_AGAIN", 0); n > 0 {
			c.againMiB = n
		}
		if n := netEnvInt(t, "FLINT_E2E_HOST_CPUS", 0); n > 0 {
			c.hostCPUs = n
		}
	}
	if re := os.Getenv("FLINT_E2E_NET_ONLY"); re != "" {
		only, err := regexp.Compile(re)
		if err != nil {
			t.Fatalf("FLINT_E2E_NET_ONLY: %v", err)
		}
		var keep []netCase
		for _, c := range cases {
			if only.MatchString(c.name()) {
				keep = append(keep, c)
			}
		}
		cases = keep
		if len(cases) == 0 {
			t.Fatalf("FLINT_E2E_NET_ONLY=%q matches no case", re)
		}
	}

	rig := newNetRig(t, e, iperfSecs)
	var boots []boot
	for _, c := range cases {
		boots = append(boots, rig.boot(c, sizeOf(c)))
	}
	// One nested host per L1 size (a direct run ignores l1CPUs).
	results := map[string]*result{}
	for _, l1 := range l1Sizes(cases) {
		var group []boot
		for i, c := range cases {
			if c.l1CPUs == l1 {
				group = append(group, boots[i])
			}
		}
		e.l1CPUs = l1
		res, err := e.runBoots(t, group)
		if err != nil {
			t.Error(err)
		}
		maps.Copy(results, res)
	}
	var summary []string
	for i, b := range boots {
		c := cases[i]
		t.Run(b.name, func(t *testing.T) {
			r := finished(t, results, b.name)
			fe := &firstError{T: t}
			line := checkNetCase(fe, c, b, r, sizeOf(c), iperfSecs)
			summary = append(summary, fmt.Sprintf("%-34s %3d MiB %s", b.name, sizeOf(c), line))
			if t.Failed() {
				// The summary is what a CI excerpt shows: it says why, and
				// where the case stopped.
				summary = append(summary, "    FAILED: "+fe.first)
				for _, l := range failureDigest(r.output) {
					summary = append(summary, "    "+l)
				}
				summary = append(summary, "    "+evidence(r.evidenceText()))
				logFailedOutput(t, "FAILED: "+fe.first, r)
			}
		})
	}
	t.Logf("summary (wall per case, guest-measured stream rates, iperf3 receiver rates):\n%s",
		strings.Join(summary, "\n"))
}

// iperfError is iperf3's own word on why a run in direction dir failed:
// the last of its output lines in the guest's log that says "error", or
// else its last line, as "; iperf3 said: ..." ("" if it printed nothing).
func iperfError(output, dir string) string {
	prefix := "NET-IPERF-OUT " + dir + " "
	var last, lastErr string
	for _, l := range strings.Split(output, "\n") {
		i := strings.Index(l, prefix)
		if i < 0 {
			continue
		}
		l = strings.TrimSpace(l[i+len(prefix):])
		if l == "" {
			continue
		}
		last = l
		if strings.Contains(l, "error") {
			lastErr = l
		}
	}
	if lastErr != "" {
		last = lastErr
	}
	if last == "" {
		return ""
	}
	return "; iperf3 said: " + clip(last, 160)
}

// netRig is what every network case's boot shares: the guest kernel and image, the
// host side script and tools, the per-case timeout.
type netRig struct {
	kernel, initrd, netCase string
	hostFiles               []string // net-case.sh --tools DIR --tun-ko PATH (nested host)
	iperfSecs               int
	timeout                 time.Duration
}

// newNetRig builds the guest image and, for the nested host, the host tools (with
// QEMU when FLINT_E2E_VMM=qemu).
func newNetRig(t *testing.T, e *env, iperfSecs int) *netRig {
	t.Helper()
	kernels := e.kernels(t)
	dir := t.TempDir()
	guestTools := filepath.Join(dir, "guest-tools")
	e.script(t, "mknet-tools.sh", "-o", guestTools, "iperf3", "ping", "ethtool")
	r := &netRig{
		kernel: kernels["cloud"],
		initrd: e.initramfs(t, "net",
			"--script", filepath.Join(e.root, "scripts", "net-guest.sh"),
			"--modules", filepath.Join(e.cache, "kernels", "cloud", "modules"),
			"--load", "virtio_pci virtio_mmio virtio_net",
			"--extra", guestTools),
		netCase:   filepath.Join(e.root, "scripts", "net-case.sh"),
		iperfSecs: iperfSecs,
		// Transfers and iperf3 come on top of a boot.
		timeout: e.bootTimeout(t) + 120*time.Second + 2*time.Duration(iperfSecs)*time.Second,
	}
	if !e.direct {
		hostTools := filepath.Join(dir, "host-tools")
		tools := []string{"iperf3", "ping", "ip"}
		if useQEMU(t, e) {
			tools = append(tools, "qemu-system-x86_64")
		}
		e.script(t, "mknet-tools.sh", append([]string{"-o", hostTools}, tools...)...)
		r.hostFiles = []string{"--tools", hostTools, "--tun-ko", tunModule(t, e.cache)}
	}
	return r
}

// boot is case c's boot, sending sizeMiB each way: net-case.sh runs flint in a
// network namespace with the TAP, net-guest.sh is the guest's side.
func (r *netRig) boot(c netCase, sizeMiB int) boot {
	bigping := 0
	if c.mtu > 1500 {
		bigping = c.mtu - 28 // IPv4 and ICMP headers
	}
	wrap := []string{"sh", r.netCase, "--name", c.name(), "--net", c.spec(),
		"--size", strconv.Itoa(sizeMiB), "--bigping", strconv.Itoa(bigping), "--again", strconv.Itoa(c.againMiB),
		"--cpus", strconv.Itoa(c.hostCPUs),
		"--flint-timeout", strconv.Itoa(int((r.timeout - 30*time.Second) / time.Second))}
	files := []string{r.netCase}
	wrap = append(wrap, r.hostFiles...)
	if len(r.hostFiles) > 0 {
		files = append(files, r.hostFiles[1], r.hostFiles[3])
	}
	wrap = append(wrap, "--")
	return boot{
		name:   c.name(),
		kernel: r.kernel,
		initrd: r.initrd,
		cpus:   cmp.Or(c.cpus, 2),
		memMiB: 512,
		// nokaslr: RIPs in a stall dump (net-case.sh) match System.map.
		cmdline: fmt.Sprintf("%s nokaslr flintnet.size=%d flintnet.iperf=%d flintnet.bigping=%d flintnet.again=%d flintnet.queues=%d",
			guestCmdline(), sizeMiB, r.iperfSecs, bigping, c.againMiB, max(c.queues, 1)),
		timeout: r.timeout,
		wrap:    wrap,
		files:   files,
		// The guest prints a heartbeat every 10 s (net-guest.sh).
		quiet: 120 * time.Second,
	}
}

// useQEMU reports whether FLINT_E2E_VMM=qemu asks for QEMU in place of flint as
// the guests' VMM in the nested host (scripts/qemu-l2.sh), to measure the nested
// host's own loss rate with the same cases; it then points e.flint at the wrapper.
func useQEMU(t *testing.T, e *env) bool {
	switch v := os.Getenv("FLINT_E2E_VMM"); v {
	case "", "flint":
		return false
	case "qemu":
		if e.direct {
			t.Fatal("FLINT_E2E_VMM=qemu compares VMMs inside the nested host; this machine boots guests directly")
		}
		e.flint = filepath.Join(e.root, "scripts", "qemu-l2.sh")
		t.Logf("guest VMM: QEMU (FLINT_E2E_VMM=qemu), not flint")
		return true
	default:
		t.Fatalf("FLINT_E2E_VMM=%q: want flint or qemu", v)
		return false
	}
}

// l1Sizes returns the distinct nested-host sizes of cases, in case order.
func l1Sizes(cases []netCase) []int {
	var sizes []int
	for _, c := range cases {
		if !slices.Contains(sizes, c.l1CPUs) {
			sizes = append(sizes, c.l1CPUs)
		}
	}
	return sizes
}

// reporter is the part of *testing.T that checkNetCase uses (its own tests record).
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// checkNetCase asserts everything one case printed and returns a summary line.
func checkNetCase(t reporter, c netCase, b boot, r *result, sizeMiB, iperfSecs int) string {
	t.Helper()
	m := parseNet(r.output)
	one := func(kind string) (netMarker, bool) { return lastNet(m, kind) }
	need := func(kind string) netMarker {
		x, ok := one(kind)
		if !ok {
			t.Errorf("no %s line", kind)
		}
		return x
	}
	ok := func(kind string) netMarker {
		x, found := one(kind)
		if found && x.kv["result"] != "ok" {
			t.Errorf("%s failed: %s", kind, x.line)
		} else if !found {
			t.Errorf("no %s line", kind)
		}
		return x
	}
	t.Logf("flint exit status %d after %.1fs; --net %s", r.rc, r.elapsed.Seconds(), c.spec())
	if x, found := one("NET-HOST-SETUP"); found {
		t.Errorf("host side setup failed: %s", x.line)
		return "host side setup failed"
	}
	switch {
	case r.timedOut:
		t.Errorf("case did not finish within %v (killed, status %d)", b.timeout, r.rc)
	case r.rc != 0:
		t.Errorf("exit status %d, want 0 (flint's, through net-case.sh)", r.rc)
	}

	if c.hostCPUs > 0 {
		checkHostCPUs(t, c.hostCPUs, m, r.output)
	}

	// The TAP flint created, and the interface the guest got.
	tap := ok("NET-HOST-TAP")
	if got := tap.kv["mtu"]; got != strconv.Itoa(c.mtu) {
		t.Errorf("host TAP MTU %q, want %d", got, c.mtu)
	}
	gi := ok("NET-GUEST-IF")
	wantBus := map[string]string{"pci": "pci", "mmio": "platform"}[c.transport]
	if gi.kv["driver"] != "virtio_net" || gi.kv["bus"] != wantBus {
		t.Errorf("guest interface: driver %q on bus %q, want virtio_net on %q", gi.kv["driver"], gi.kv["bus"], wantBus)
	}
	if got := gi.kv["mtu"]; got != strconv.Itoa(c.mtu) {
		t.Errorf("guest eth0 MTU %q, want %d (from the device's MTU field)", got, c.mtu)
	}
	feats := gi.kv["features"]
	bit := func(n int) bool { return n < len(feats) && feats[n] == '1' }
	if len(feats) < 64 {
		t.Errorf("guest features %q: want 64 bits", feats)
	} else {
		want := map[int]bool{
			featMrgRxbuf:  !strings.Contains(c.opts, "mrg_rxbuf=off"),
			featGuestTSO4: !strings.Contains(c.opts, "tso=off"),
			featGuestUFO:  !strings.Contains(c.opts, "ufo=off"),
			featIndirect:  c.indirect,
			featVersion1:  true,
			featPacked:    c.packed,
		}
		names := map[int]string{featMrgRxbuf: "MRG_RXBUF", featGuestTSO4: "GUEST_TSO4",
			featGuestUFO: "GUEST_UFO", featIndirect: "RING_INDIRECT_DESC", featVersion1: "VERSION_1",
			featPacked: "RING_PACKED"}
		for n, w := range want {
			if bit(n) != w {
				t.Errorf("guest negotiated %s=%v, want %v (features %s)", names[n], bit(n), w, feats)
			}
		}
		// The Linux driver's choice (virtnet_probe): mergeable with MRG_RXBUF, else
		// big packets with any guest GSO feature or an MTU above 1500, else small.
		mode := "small"
		switch {
		case bit(featMrgRxbuf):
			mode = "mergeable"
		case bit(featGuestTSO4) || bit(featGuestTSO6) || bit(featGuestECN) || bit(featGuestUFO) || c.mtu > 1500:
			mode = "big"
		}
		if mode != c.mode {
			t.Errorf("guest RX mode %s, want %s (features %s)", mode, c.mode, feats)
		}
	}
	ok("NET-GUEST-UP")

	// Pings both ways.
	hp := ok("NET-HOST-PING")
	ok("NET-GUEST-HOSTPING")
	gp := ok("NET-GUEST-PING")
	if !strings.Contains(gp.line, "3_packets_received") {
		t.Errorf("guest ping: %s, want 3 replies", gp.line)
	}
	if !strings.Contains(hp.line, "3_received") {
		t.Errorf("host ping: %s, want 3 replies", hp.line)
	}

	// The streams: the same size and checksum at both ends.
	stream := func(dir, sent, recv string, mib int) (netMarker, netMarker) {
		want := strconv.Itoa(mib << 20)
		var s, r netMarker
		if strings.HasPrefix(sent, "NET-HOST") {
			s, r = need(sent), ok(recv)
		} else {
			s, r = ok(sent), need(recv)
		}
		if s.kv["bytes"] != want || r.kv["bytes"] != want {
			t.Errorf("%s: %q bytes sent, %q received, want %s", dir, s.kv["bytes"], r.kv["bytes"], want)
		}
		if s.kv["sha256"] == "" || s.kv["sha256"] != r.kv["sha256"] {
			t.Errorf("%s: sha256 sent %q, received %q", dir, s.kv["sha256"], r.kv["sha256"])
		}
		return s, r
	}
	gs, _ := stream("guest to host", "NET-G2H-SENT", "NET-HOST-G2H-RECV", sizeMiB)
	_, hr := stream("host to guest", "NET-HOST-H2G-SENT", "NET-H2G-RECV", sizeMiB)
	if c.againMiB > 0 {
		stream("guest to host, second stream", "NET-G2H2-SENT", "NET-HOST-G2H2-RECV", c.againMiB)
		stream("host to guest, second stream", "NET-HOST-H2G2-SENT", "NET-H2G2-RECV", c.againMiB)
	}
	rate := func(x netMarker) string {
		s, err := strconv.ParseFloat(x.kv["secs"], 64)
		if err != nil || s <= 0 {
			return "?"
		}
		return fmt.Sprintf("%.0f MB/s", float64(sizeMiB)*1.048576/s)
	}

	// iperf3, both directions.
	iperf := map[string]string{}
	if iperfSecs > 0 {
		seen := map[string]bool{}
		for _, x := range m["NET-IPERF"] {
			seen[x.kv["dir"]] = true
			if x.kv["result"] != "ok" {
				t.Errorf("iperf3 %s failed: %s%s", x.kv["dir"], x.line, iperfError(r.output, x.kv["dir"]))
				continue
			}
			if v, err := strconv.ParseFloat(x.kv["mbps"], 64); err != nil || v <= 0 {
				t.Errorf("iperf3 %s: no receiver rate: %s", x.kv["dir"], x.line)
				continue
			}
			iperf[x.kv["dir"]] = x.kv["mbps"]
		}
		for _, dir := range []string{"g2h", "h2g"} {
			if !seen[dir] {
				t.Errorf("iperf3 %s did not run (no NET-IPERF dir=%s line)", dir, dir)
			}
		}
	}

	// Jumbo frames: a DF ping that fits only in one 9000-byte frame, both ways.
	if c.mtu > 1500 {
		size := strconv.Itoa(c.mtu - 28)
		for _, kind := range []string{"NET-HOST-BIGPING", "NET-GUEST-BIGPING"} {
			x := ok(kind)
			if x.kv["size"] != size {
				t.Errorf("%s: payload %q, want %s", kind, x.kv["size"], size)
			}
		}
	}

	st := need("NET-GUEST-STATS")
	for _, k := range []string{"rx_errors", "tx_errors", "rx_dropped", "tx_dropped"} {
		if v := st.kv[k]; v != "0" {
			t.Errorf("guest eth0 %s = %q, want 0 (%s)", k, v, st.line)
		}
	}
	need("NET-GUEST-DONE")
	mq := ""
	if c.queues > 1 {
		mq = "  " + checkMQ(t, c, m, r.output)
	}
	return fmt.Sprintf("%5.1fs  g2h %s  h2g %s  iperf3 g2h %s h2g %s Mbit/s%s", r.elapsed.Seconds(),
		rate(gs), rate(hr), orQ(iperf["g2h"]), orQ(iperf["h2g"]), mq)
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// firstError is the *testing.T a case is checked with; it keeps the first
// error for the summary.
type firstError struct {
	*testing.T
	first string
}

func (f *firstError) Errorf(format string, args ...any) {
	f.T.Helper()
	if f.first == "" {
		f.first = fmt.Sprintf(format, args...)
	}
	f.T.Errorf(format, args...)
}

// failureDigest picks from a failed case's output the few lines that say
// where it stopped: the guest's last step and heartbeat, a stall and the
// vCPU dumps it took, kernel errors, and a nested-host loss.
func failureDigest(out string) []string {
	var lastStep, lastBeat string
	var keep []string
	count := map[string]int{}
	note := func(kind, l string, max int) {
		if count[kind] < max {
			keep = append(keep, l)
		}
		count[kind]++
	}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.Contains(l, "NET-GUEST-BEAT"):
			lastBeat = l
		case strings.Contains(l, "NET-HOST-STALL ") && !strings.Contains(l, "kernel stacks"):
			note("stall", l, 2)
		case strings.Contains(l, "dump: vCPU"), strings.Contains(l, vmm.ImpossibleStateMsg):
			note("dump", l, 4)
		case strings.Contains(l, "dump: virtio queue"), strings.Contains(l, "dump: virtio device"):
			note("queues", l, 8) // a net device's rx, tx (and ctrl) queues in two dumps
		case strings.Contains(l, "nested host lost"), strings.Contains(l, "Kernel panic"),
			strings.Contains(l, "BUG:"), strings.Contains(l, "soft lockup"), strings.Contains(l, "rcu: INFO"),
			strings.Contains(l, "virtio_net") && strings.Contains(l, "rror"):
			note("kernel", l, 4)
		case netStepRE.MatchString(l):
			lastStep = l
		}
	}
	if lastStep != "" {
		keep = append([]string{"guest's last step: " + lastStep}, keep...)
	}
	if lastBeat != "" {
		keep = append(keep, "guest's last heartbeat: "+lastBeat)
	}
	for i, l := range keep {
		if len(l) > 400 {
			keep[i] = l[:400] + " ..."
		}
	}
	return keep
}

// netStepRE matches the guest's step lines, output included.
var netStepRE = regexp.MustCompile(`NET-(GUEST-[A-Z]+|G2H-SENT|H2G-RECV|IPERF)(-OUT)?( |$)`)

// gomaxprocsRE finds flint's "starting vCPUs" log line's GOMAXPROCS.
var gomaxprocsRE = regexp.MustCompile(`msg="starting vCPUs" vcpus=\d+ gomaxprocs=(\d+)`)

// checkHostCPUs asserts that a case confined to n CPUs was: net-case.sh pinned
// itself to CPUs 0..n-1, and flint ran with GOMAXPROCS n (else the case would
// pass without testing CPU scarcity).
func checkHostCPUs(t reporter, n int, m map[string][]netMarker, out string) {
	t.Helper()
	want := "0"
	if n > 1 {
		want = fmt.Sprintf("0-%d", n-1)
	}
	if x, found := lastNet(m, "NET-HOST-CPUS"); !found {
		t.Errorf("no NET-HOST-CPUS line: net-case.sh --cpus %d did not confine the host side", n)
	} else if x.kv["allowed"] != want {
		t.Errorf("host side on CPUs %q, want %q: %s", x.kv["allowed"], want, x.line)
	}
	g := gomaxprocsRE.FindStringSubmatch(out)
	if g == nil {
		t.Errorf("no flint \"starting vCPUs\" log line with gomaxprocs")
	} else if g[1] != strconv.Itoa(n) {
		t.Errorf("flint ran with GOMAXPROCS %s, want %d (the CPUs it was confined to)", g[1], n)
	}
}

// lastNet returns the last NET-* line of a kind.
func lastNet(m map[string][]netMarker, kind string) (netMarker, bool) {
	l := m[kind]
	if len(l) == 0 {
		return netMarker{kv: map[string]string{}}, false
	}
	return l[len(l)-1], true
}
