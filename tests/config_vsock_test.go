package e2e

// The vsock case of TestConfigLaunches: its config, its checks, and the
// case filter.

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The probe's defaults (internal/vsockprobe: DefaultConns, DefaultSize),
// which both sides run with.
const (
	vsProbeConns = 3
	vsProbeSize  = 512 << 10
)

// vsockConfig is the vsock case's VM: a vsock device on PCI (the default
// transport), an entropy device with a rate limiter on MMIO, no drives.
func vsockConfig(bootSource obj, flintTimeout string) obj {
	return obj{
		"boot-source":    bootSource,
		"machine-config": obj{"vcpu_count": 2, "mem_size_mib": 256},
		"vsock":          obj{"guest_cid": 3, "uds_path": "@VSOCK@"},
		// 64 KiB per 100 ms: far more than the guest reads, so it only
		// has to be accepted and wired.
		"entropy": obj{"rate_limiter": obj{"bandwidth": obj{"size": 65536, "refill_time": 100}}},
		"flint":   obj{"timeout": flintTimeout, "entropy": obj{"transport": "mmio"}},
	}
}

// onlyCases keeps the boots FLINT_E2E_CFG_ONLY matches, with the boots
// they need.
func onlyCases(t *testing.T, boots []boot) []boot {
	t.Helper()
	only := os.Getenv("FLINT_E2E_CFG_ONLY")
	if only == "" {
		return boots
	}
	re, err := regexp.Compile(only)
	if err != nil {
		t.Fatalf("FLINT_E2E_CFG_ONLY=%q: %v", only, err)
	}
	pick := map[string]bool{}
	for _, b := range boots {
		if re.MatchString(b.name) {
			pick[b.name] = true
		}
	}
	out := withNeeds(boots, pick)
	t.Logf("FLINT_E2E_CFG_ONLY=%q: running %s", only, names(out))
	return out
}

// copyInto copies the file src to dst (mode 0755), creating dst's
// directory.
func copyInto(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst[:strings.LastIndexByte(dst, '/')], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// vsEnd is one end of one probe connection.
type vsEnd struct {
	sent, recv       int
	sentSHA, recvSHA string
	kind, result     string
	line             string
}

// checkVsock checks the vsock case: both devices bound on their
// transports, entropy read, every normal connection's data intact both
// ways on both ends, the vanishing connections reported by the end that
// stayed, refusals both ways, both probes done, and uds_path removed.
func checkVsock(t reporter, m map[string][]cfgLine) {
	t.Helper()
	drivers := map[string]cfgLine{}
	for _, l := range m["CFG-VIRTIO"] {
		drivers[l.kv["dev"]] = l
		t.Logf("device: %s", l.line)
	}
	for dev, want := range map[string][2]string{"vsock": {"vmw_vsock_virtio_transport", "pci"}, "rng": {"virtio_rng", "platform"}} {
		if l := drivers[dev]; l.kv["driver"] != want[0] || l.kv["bus"] != want[1] {
			t.Errorf("%s device: %q, want driver %s on %s", dev, l.line, want[0], want[1])
		}
	}
	rng := last(m, "CFG-RNG")
	t.Logf("entropy: %s", rng.line)
	if !strings.HasPrefix(rng.kv["current"], "virtio_rng") || rng.kv["bytes"] != "64" {
		t.Errorf("entropy: %q, want virtio_rng as the current source and 64 bytes read", rng.line)
	}
	ends := map[string]vsEnd{}
	for _, l := range m["CFG-VSOCK"] {
		sent, _ := strconv.Atoi(l.kv["sent"])
		recv, _ := strconv.Atoi(l.kv["recv"])
		k := l.kv["side"] + "/" + l.kv["init"] + "/" + l.kv["id"]
		ends[k] = vsEnd{sent, recv, l.kv["sent_sha"], l.kv["recv_sha"], l.kv["kind"], l.kv["result"], l.line}
		if l.kv["id"] == "" {
			t.Errorf("probe failure: %s", l.line)
		}
	}
	for _, init := range []string{"host", "guest"} {
		for id := 0; id <= vsProbeConns; id++ {
			g, h := ends[fmt.Sprintf("guest/%s/%d", init, id)], ends[fmt.Sprintf("host/%s/%d", init, id)]
			if id == vsProbeConns { // the opener vanishes mid-stream
				opener, stayer := h, g
				if init == "guest" {
					opener, stayer = g, h
				}
				t.Logf("vanishing connection opened by the %s: %s | %s", init, opener.line, stayer.line)
				if opener.result != "vanished" || stayer.line == "" || stayer.result == "ok" || stayer.recv >= vsProbeSize {
					t.Errorf("vanishing connection opened by the %s: opener %q, other end %q; want vanished and a short or failed transfer",
						init, opener.line, stayer.line)
				}
				continue
			}
			if g.result != "ok" || h.result != "ok" || g.sent != vsProbeSize || h.sent != vsProbeSize ||
				g.recv != vsProbeSize || h.recv != vsProbeSize || g.sentSHA != h.recvSHA || h.sentSHA != g.recvSHA {
				t.Errorf("connection %d opened by the %s:\n  guest %s\n  host  %s\nwant %d bytes each way with the SHA-256 each end sent received by the other",
					id, init, g.line, h.line, vsProbeSize)
			}
		}
	}
	for _, side := range []string{"guest", "host"} {
		var refused, done string
		for _, l := range m["CFG-VSOCK-REFUSED"] {
			if l.kv["side"] == side {
				refused = l.kv["result"]
			}
		}
		for _, l := range m["CFG-VSOCK-DONE"] {
			if l.kv["side"] == side {
				done = l.kv["result"]
			}
		}
		if refused != "ok" || done != "ok" {
			t.Errorf("%s side: refused port %q, done %q; want ok and ok", side, refused, done)
		}
	}
	checkKV(t, m, "CFG-HOST-VSOCK", "gone", "1")
	if _, ok := m["CFG-GUEST-DONE"]; !ok {
		t.Errorf("no CFG-GUEST-DONE line: the guest's script did not finish")
	}
}
