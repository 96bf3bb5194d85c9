package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
)

// qemuVUCase is what TestQEMUVhostUser asks scripts/qemu-vu-case.sh for:
// the guest's pair count in each phase ("R2": virtio_net bound again
// first, then 2 pairs; "D1": 1 pair set while the phase's guest-to-host
// flows run), and flows of sizeMiB each way in every phase.
type qemuVUCase struct {
	queues, flows, sizeMiB int
	phases                 []string
	packed                 bool // packed virtqueues (net-backend --packed on, virtio-net-pci packed=on)
}

// qemuVU runs with packed rings: vhost-user's split rings are what the
// UML cases drive (UML breaks packed ones), so QEMU is where packed rings
// over vhost-user, their positions across each restart (GET_VRING_BASE,
// SET_VRING_BASE) included, are tested.
var qemuVU = qemuVUCase{queues: 2, flows: 2, sizeMiB: 4, phases: []string{"2", "1", "2", "D1", "D2", "R2"}, packed: true}

func (c qemuVUCase) args(flint string) []string {
	packed := "off"
	if c.packed {
		packed = "on"
	}
	return []string{"--flint", flint, "--queues", strconv.Itoa(c.queues), "--flows", strconv.Itoa(c.flows),
		"--size", strconv.Itoa(c.sizeMiB), "--phases", strings.Join(c.phases, ","), "--packed", packed, "--timeout", "150"}
}

// pairs is phase i's pair count and whether the driver was bound again
// before it.
func (c qemuVUCase) pairs(i int) (int, bool) {
	n, _ := strconv.Atoi(strings.TrimLeft(c.phases[i], "RD"))
	return n, strings.HasPrefix(c.phases[i], "R")
}

// TestQEMUVhostUser drives `flint net-backend --queues 2 --packed on`
// with Debian's QEMU (TCG) as the vhost-user frontend: QEMU keeps the
// virtio-net control queue itself, negotiates MQ without CTRL_VQ and
// enables only the rings of the pairs its guest uses, all of them packed
// (virtio-net-pci packed=on; both ends must report RING_PACKED). The stock cloud kernel's
// virtio_net (virtio-net-pci, mq=on) goes through six phases: two
// pairs, one (ethtool -L), two again, one and two again changed while
// traffic flows, and two after the driver was bound again (QEMU stops
// the vhost-user device and sets it up again, as across a guest reboot);
// in each it pings the host and
// sends two flows each way at once (pinned to its two CPUs) with
// SHA-256 sums at both ends. scripts/qemu-vu-case.sh reports what each
// end saw; checkQEMUVU is the verdict. It skips without root,
// /dev/net/tun, QEMU, the cached cloud kernel or a tool, or fails when
// the run requires everything (testenv.RequireAll).
func TestQEMUVhostUser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short (see doc.go)")
	}
	root := repoRoot(t)
	cache := os.Getenv("FLINT_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache")
	}
	// Everything missing, in one message.
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, TAP devices)")
	}
	need := []string{"/dev/net/tun", filepath.Join(cache, "kernels/cloud/vmlinuz"), filepath.Join(cache, "kernels/cloud/modules/modules.dep")}
	for _, f := range need {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "bash", "busybox", "ip", "cpio", "gzip", "ethtool", "setsid", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		testenv.SkipOrFail(t, "QEMU vhost-user case: missing "+strings.Join(missing, ", ")+
			" (make setup installs the tools, scripts/fetch-kernels.sh the kernels)")
	}
	flint := buildFlint(t, root)
	t0 := time.Now()
	out, err := runUMLScript(t, root, cache, 4*time.Minute, "qemu-vu-case.sh", qemuVU.args(flint)...)
	bad := checkQEMUVU(qemuVU, out)
	if err != nil {
		bad = append(bad, "qemu-vu-case.sh: "+err.Error())
	}
	if len(bad) > 0 {
		t.Fatalf("QEMU vhost-user case failed:\n  %s\noutput:\n%s", strings.Join(bad, "\n  "), out)
	}
	t.Logf("QEMU vhost-user case: ok in %v", time.Since(t0).Round(100*time.Millisecond))
}

// qvuLines are the QVU-* lines of a transcript by kind, each as its
// key=value fields (the first of a repeated key wins).
type qvuLines map[string][]map[string]string

func parseQVU(out string) qvuLines {
	ls := qvuLines{}
	for _, raw := range strings.Split(out, "\n") {
		f := strings.Fields(raw)
		if len(f) == 0 || !strings.HasPrefix(f[0], "QVU-") {
			continue
		}
		kv := map[string]string{}
		for _, x := range f[1:] {
			k, v, ok := strings.Cut(x, "=")
			if _, dup := kv[k]; ok && !dup {
				kv[k] = v
			}
		}
		ls[f[0]] = append(ls[f[0]], kv)
	}
	return ls
}

// one returns the first line of kind whose fields include match.
func (ls qvuLines) one(kind string, match ...string) (map[string]string, bool) {
next:
	for _, kv := range ls[kind] {
		for i := 0; i+1 < len(match); i += 2 {
			if kv[match[i]] != match[i+1] {
				continue next
			}
		}
		return kv, true
	}
	return nil, false
}

// Virtio-net feature bits the guest must have negotiated with QEMU.
const (
	qvuFeatCtrlVQ = 17
	qvuFeatMQ     = 22
	qvuFeatPacked = 34 // VIRTIO_F_RING_PACKED
)

// checkQEMUVU is the verdict on a qemu-vu-case.sh transcript: every
// problem found, none if the case passed.
func checkQEMUVU(c qemuVUCase, out string) []string {
	ls := parseQVU(out)
	var bad []string
	badf := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	if a, ok := ls.one("QVU-HOST-ABORT"); ok {
		badf("the case was not set up: %s", a["reason"])
	}
	if _, ok := ls.one("QVU-CASE-END"); !ok {
		badf("the script did not finish (no QVU-CASE-END)")
	}
	if q, ok := ls.one("QVU-HOST-QEMU"); !ok || q["timeout"] != "0" {
		badf("QEMU did not end by itself: %v", q)
	}
	if be, ok := ls.one("QVU-HOST-BACKEND"); !ok || be["running"] != "yes" || be["connections"] != "1" || be["warnings"] != "0" || be["errors"] != "0" {
		badf("backend: %v (want running, one connection, no warnings or errors)", be)
	}
	if g, ok := ls.one("QVU-GUEST-IF", "result", "ok"); !ok {
		badf("the guest has no eth0")
	} else if f := g["features"]; len(f) <= qvuFeatPacked || f[qvuFeatMQ] != '1' || f[qvuFeatCtrlVQ] != '1' {
		badf("guest features %q: MQ and CTRL_VQ (QEMU's) not negotiated", f)
	} else if (f[qvuFeatPacked] == '1') != c.packed {
		badf("guest features %q: packed rings negotiated %v, want %v", f, f[qvuFeatPacked] == '1', c.packed)
	}
	checkQVUBackendLog(c, out, badf)
	if _, ok := ls.one("QVU-GUEST-DONE"); !ok {
		badf("the guest script did not finish (no QVU-GUEST-DONE)")
	}
	h2g, _ := ls.one("QVU-HOST-H2G")
	want := strconv.Itoa(c.sizeMiB << 20)
	if h2g["bytes"] != want {
		badf("host's h2g file: %v", h2g)
	}
	prev := map[string]int{}
	for i := range c.phases {
		p := strconv.Itoa(i + 1)
		pairs, rebind := c.pairs(i)
		if rebind {
			if _, ok := ls.one("QVU-GUEST-REBIND", "phase", p, "operstate", "up"); !ok {
				badf("phase %s: virtio_net not bound again, or eth0 not up", p)
			}
			prev = map[string]int{} // a new eth0: its counters start at 0
		}
		if mq, ok := ls.one("QVU-GUEST-MQ", "phase", p); !ok || mq["rc"] != "0" || mq["combined"] != strconv.Itoa(pairs) {
			badf("phase %s: ethtool -L eth0 combined %d: %v", p, pairs, mq)
		}
		if _, ok := ls.one("QVU-GUEST-PING", "phase", p, "result", "ok"); !ok {
			badf("phase %s: the guest's ping of the host failed", p)
		}
		for k := range c.flows {
			fl := strconv.Itoa(k)
			sent, _ := ls.one("QVU-GUEST-G2H", "phase", p, "flow", fl)
			got, _ := ls.one("QVU-HOST-G2H", "phase", p, "flow", fl)
			if sent["rc"] != "0" || sent["bytes"] != want || got["bytes"] != want || got["sha256"] != sent["sha256"] {
				badf("phase %s flow %s guest to host: sent %v, received %v", p, fl, sent, got)
			}
			recv, _ := ls.one("QVU-GUEST-H2G", "phase", p, "flow", fl)
			if recv["rc"] != "0" || recv["bytes"] != want || recv["sha256"] != h2g["sha256"] {
				badf("phase %s flow %s host to guest: received %v, sent %v", p, fl, recv, h2g)
			}
		}
		// The counters are cumulative; a queue not in use is not listed.
		st, _ := ls.one("QVU-GUEST-QSTATS", "phase", p)
		for q := range pairs {
			for _, dir := range []string{"rx", "tx"} {
				key := fmt.Sprintf("%s_queue_%d_packets", dir, q)
				n, err := strconv.Atoi(st[key])
				if err != nil || n <= prev[key] {
					badf("phase %s (%d pairs): %s %q, %d before: pair %d carried no %s", p, pairs, key, st[key], prev[key], q+1, dir)
				}
				prev[key] = n
			}
		}
	}
	return bad
}

// checkQVUBackendLog: the backend ran with MQ negotiated on all the
// rings of the pairs in use, and restarted at every change of the pair
// count (its log's last lines, QVU-BACKEND-LOG).
func checkQVUBackendLog(c qemuVUCase, out string, badf func(string, ...any)) {
	rings := map[string]bool{}
	restarts := 0
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "QVU-BACKEND-LOG ") {
			continue
		}
		if strings.Contains(l, "rings changed while the device runs") {
			restarts++
		}
		if !strings.Contains(l, `msg="vhost-user device started"`) {
			continue
		}
		kv := parseQVU("QVU-X " + strings.TrimPrefix(l, "QVU-BACKEND-LOG "))["QVU-X"][0]
		f, err := strconv.ParseUint(kv["features"], 0, 64)
		if err != nil || f&(1<<qvuFeatMQ) == 0 || f&(1<<qvuFeatCtrlVQ) != 0 {
			badf("backend started with features %q: want MQ without CTRL_VQ (QEMU's)", kv["features"])
		}
		if (f&(1<<qvuFeatPacked) != 0) != c.packed {
			badf("backend started with features %q: packed rings %v, want %v", kv["features"], f&(1<<qvuFeatPacked) != 0, c.packed)
		}
		rings[kv["rings"]] = true
	}
	changes := 0
	for i := range c.phases {
		p, _ := c.pairs(i)
		if prev, _ := c.pairs(max(i-1, 0)); p != prev {
			changes++
		}
		if n := strconv.Itoa(2 * p); !rings[n] {
			badf("the backend never ran on %s rings (%d pairs); it ran on %v", n, p, rings)
		}
	}
	if restarts < changes {
		badf("the backend restarted %d times for %d changes of the pair count", restarts, changes)
	}
}

// TestCheckQEMUVU: a passing transcript (testdata/qemuvu/pass.txt, from
// a run here, console lines left out) is accepted, and each corruption
// below is caught.
func TestCheckQEMUVU(t *testing.T) {
	b, err := os.ReadFile("testdata/qemuvu/pass.txt")
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	if bad := checkQEMUVU(qemuVU, good); len(bad) != 0 {
		t.Fatalf("passing transcript rejected: %v", bad)
	}
	for name, edit := range map[string][2]string{
		"g2h checksum":       {"QVU-HOST-G2H phase=2 flow=1 bytes=4194304 sha256=3", "QVU-HOST-G2H phase=2 flow=1 bytes=4194304 sha256=c"},
		"h2g short":          {"QVU-GUEST-H2G phase=3 flow=0 rc=0 bytes=4194304", "QVU-GUEST-H2G phase=3 flow=0 rc=0 bytes=4194000"},
		"h2g failed":         {"QVU-GUEST-H2G phase=1 flow=1 rc=0", "QVU-GUEST-H2G phase=1 flow=1 rc=1"},
		"ping":               {"QVU-GUEST-PING phase=2 result=ok", "QVU-GUEST-PING phase=2 result=fail"},
		"pair count":         {"QVU-GUEST-MQ phase=2 want=1 combined=1", "QVU-GUEST-MQ phase=2 want=1 combined=2"},
		"change failed":      {"QVU-GUEST-MQ phase=4 want=1 combined=1 rc=0", "QVU-GUEST-MQ phase=4 want=1 combined=1 rc=1"},
		"pair 2 idle":        {"rx_queue_1_packets=143", "rx_queue_1_packets=61"},
		"pair 2 sent none":   {"tx_queue_1_packets=116", "tx_queue_1_packets=0"},
		"no rebind":          {"QVU-GUEST-REBIND phase=6 device=virtio0 operstate=up", "QVU-GUEST-REBIND phase=6 device=virtio0 operstate=down"},
		"no MQ":              {"features=1110010111111111111100110000110010100000", "features=1110010111111111111100010000110010100000"},
		"guest not packed":   {"features=1110010111111111111100110000110010100000", "features=1110010111111111111100110000110010000000"},
		"backend died":       {"running=yes", "running=no"},
		"backend warned":     {"warnings=0", "warnings=1"},
		"backend no MQ":      {"rings=4 features=0x53040ff83", "rings=4 features=0x53000ff83"},
		"backend not packed": {"features=0x53040ff83", "features=0x13040ff83"},
		"never two pairs":    {"rings=4 features", "rings=5 features"},
		"no restarts":        {"rings changed while", "rings stayed while"},
		"qemu timed out":     {"timeout=0", "timeout=1"},
		"guest unfinished":   {"QVU-GUEST-DONE\n", ""},
		"script unfinished":  {"QVU-CASE-END\n", ""},
		"setup aborted":      {"QVU-CASE-END", "QVU-HOST-ABORT reason=backend-exited\nQVU-CASE-END"},
	} {
		if !strings.Contains(good, edit[0]) {
			t.Fatalf("%s: %q not in the transcript", name, edit[0])
		}
		if bad := checkQEMUVU(qemuVU, strings.Replace(good, edit[0], edit[1], -1)); len(bad) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}
