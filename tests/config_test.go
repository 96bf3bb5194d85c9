package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/vmm"
)

// cfgLine is one "CFG-... key=value ..." line of a config case.
type cfgLine struct {
	kv   map[string]string
	line string
}

// Not anchored: an L1 kernel message can precede a line on the same console.
var (
	cfgLineRE = regexp.MustCompile(`(CFG-[A-Z0-9-]+)(?: (.*))?$`)
	cfgAPIRE  = regexp.MustCompile(`CFG-API i=(\d+) (\S+) (\S+) code=(\S+) body=(.*)$`)
)

// parseCfg returns the CFG-* lines of a case's output by kind, in order.
func parseCfg(out string) map[string][]cfgLine {
	m := map[string][]cfgLine{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		g := cfgLineRE.FindStringSubmatch(line)
		if g == nil || g[1] == "CFG-HOST-CONFIG" {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(g[2]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		m[g[1]] = append(m[g[1]], cfgLine{kv: kv, line: line})
	}
	return m
}

// apiReply is one request config-case.sh sent over the API socket.
type apiReply struct {
	method, path, code, body string
}

// parseAPI returns the CFG-API lines of a case by request number.
func parseAPI(out string) map[int]apiReply {
	m := map[int]apiReply{}
	for _, line := range strings.Split(out, "\n") {
		g := cfgAPIRE.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if g == nil {
			continue
		}
		i, _ := strconv.Atoi(g[1])
		m[i] = apiReply{method: g[2], path: g[3], code: g[4], body: strings.TrimSpace(g[5])}
	}
	return m
}

// randomToken returns n random bytes in hex.
func randomToken(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// mkExt4 builds an ext4 image of sizeMiB with Debian's e2fsprogs (mkfs.ext4 -d) that
// holds one file, marker, with the given content.
func mkExt4(t *testing.T, path string, sizeMiB int, marker string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(marker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mkfsExt4(), "-q", "-F", "-L", "flintcfg", "-d", dir, path, fmt.Sprintf("%dM", sizeMiB))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", path, err, out)
	}
}

// mkfsExt4 finds mkfs.ext4 (in /usr/sbin on Debian, not on every user's PATH).
func mkfsExt4() string {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p
	}
	return "/usr/sbin/mkfs.ext4"
}

// writeJSON writes v as indented JSON to dir/name and returns the path.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// obj is a JSON object in a config file or API body.
type obj = map[string]any

// cfgAPIRequests is what the api case sends over the socket (see config-case.sh),
// in the order checkAPI expects.
var cfgAPIRequests = []string{
	"GET /",
	`PUT /machine-config {"vcpu_count": 2, "mem_size_mib": 256, "vcpu_bogus": 1}`,
	`PUT /boot-source {"kernel_image_path": "@KERNEL@", "initrd_path": "@INITRD@", "boot_args": "@CMDLINE@"}`,
	`PUT /machine-config {"vcpu_count": 2, "mem_size_mib": 256}`,
	"GET /machine-config",
	`PUT /drives/rootfs {"drive_id": "rootfs", "path_on_host": "@ROOT@", "is_root_device": true, "is_read_only": false}`,
	`PUT /actions {"action_type": "InstanceStart"}`,
	"GET /",
	"GET /vm/config",
	"await CFG-API-READY",
	`PUT /actions {"action_type": "SendCtrlAltDel"}`,
}

// The guest MAC the config-file case gives eth0.
const cfgGuestMAC = "52:54:00:c0:f1:9e"

// TestConfigLaunches boots the stock Debian cloud kernel from Firecracker-style
// config files and over the API socket, all in one nested host (or directly with
// hardware virtualization). The host side of each case is scripts/config-case.sh,
// which turns the test's config template into a config file and runs
// `flint run --config` (or `flint run --api-sock` and curl --unix-socket); the guest
// side is scripts/config-guest.sh. The ext4 images are built here with mkfs.ext4 -d.
//
//   - config/write: vm.json with 2 vCPUs, 256 MiB, a read-write root drive over PCI
//     with packed virtqueues ("packed": true; the guest negotiated RING_PACKED)
//     (an ext4 image with a marker file), a read-only drive over MMIO and a network
//     interface with a guest MAC. The guest sees 2 vCPUs, root=/dev/vda on its
//     command line, virtio_blk disks on the right buses, the marker; it writes a
//     random token to the root disk and unmounts it. The read-only drive is read-only
//     in the guest, a raw write and a read-write mount fail, its marker reads back and
//     its image is byte-for-byte unchanged; eth0 has the configured MAC.
//   - config/read: a second boot with the same image (root drive over MMIO this time,
//     packed again, 1 vCPU): the token is there, exactly.
//   - api: flint run --api-sock; GET / says "Not started"; a PUT /machine-config with
//     an unknown key is a 400 whose fault_message names the key; PUT /boot-source,
//     /machine-config, /drives/rootfs and /actions InstanceStart succeed; GET / says
//     "Running" and GET /vm/config shows the drive; the guest reads the token from
//     the root drive; PUT /actions SendCtrlAltDel ends the guest and flint exits 0.
//   - ratelimit: a config with two interfaces, one with tx_rate_limiter and
//     rx_rate_limiter (different rates, so that swapped directions fail) and one
//     without; iperf3 in the guest to the nested host each way over both: the
//     limited rates are within 10% of the configured bandwidths, and the unlimited
//     ones clearly above them (else the measurement would prove nothing).
//     Skipped, saying so, while flint refuses rate limiters on interfaces.
//   - vsock: a config with a vsock device (PCI) and an entropy device (MMIO, with a
//     rate limiter), no drives. The guest loads vmw_vsock_virtio_transport and
//     virtio_rng, reads /dev/hwrng, and runs internal/vsockprobe against the same
//     program on the host side (config-case.sh --vsock): connections both ways at
//     once (CONNECT <port> on uds_path, and <uds_path>_<port>), random data both
//     ways on each with SHA-256 compared on both ends, one connection each way
//     whose opener vanishes mid-stream (flint survives, the others complete), and a
//     port nobody serves refused each way; flint removes uds_path at exit (see
//     checkVsock).
//
// FLINT_E2E_CFG_ONLY, a regexp, runs only the cases whose names match (and the
// cases they need).
func TestConfigLaunches(t *testing.T) {
	e := setup(t)
	requireTools(t, "curl", "ldd")
	if _, err := os.Stat(mkfsExt4()); err != nil {
		msg := "mkfs.ext4 not found (Debian package e2fsprogs)"
		if ciMode() {
			t.Fatal(msg + "; CI is set, so this is a failure")
		}
		t.Skip(msg)
	}
	kernels := e.kernels(t)
	dir := t.TempDir()
	guestTools := filepath.Join(dir, "guest-tools")
	e.script(t, "mknet-tools.sh", "-o", guestTools, "iperf3")
	probe := goBuild(t, e.root, "./internal/vsockprobe")
	copyInto(t, probe, filepath.Join(guestTools, "usr", "local", "bin", "vsockprobe"))
	initrd := e.initramfs(t, "config",
		"--script", filepath.Join(e.root, "scripts", "config-guest.sh"),
		"--modules", filepath.Join(e.cache, "kernels", "cloud", "modules"),
		"--load", "virtio_pci virtio_mmio virtio_blk virtio_net vmw_vsock_virtio_transport virtio_rng",
		"--extra", guestTools)

	marker := "flint-root-" + randomToken(t, 8)
	roMarker := "flint-ro-" + randomToken(t, 8)
	token := randomToken(t, 16)
	rootImg := filepath.Join(dir, "root.ext4")
	roImg := filepath.Join(dir, "ro.ext4")
	mkExt4(t, rootImg, 64, marker)
	mkExt4(t, roImg, 16, roMarker)
	t.Logf("root image %s (marker %s), read-only image %s (marker %s), token %s", rootImg, marker, roImg, roMarker, token)

	caseScript := filepath.Join(e.root, "scripts", "config-case.sh")
	timeout := e.bootTimeout(t)
	flintTimeout := fmt.Sprintf("%ds", int((timeout-30*time.Second)/time.Second))
	// A TAP needs root on this machine; the nested host is root and disposable.
	withNet := !e.direct || os.Geteuid() == 0
	var hostOpts, hostFiles []string
	if !e.direct {
		ko := tunModule(t, e.cache)
		hostOpts, hostFiles = append(hostOpts, "--tun-ko", ko), append(hostFiles, ko)
	}
	hostTools := filepath.Join(dir, "host-tools")
	if !e.direct {
		e.script(t, "mknet-tools.sh", "-o", hostTools, "curl", "iperf3")
	}

	drive := func(id, key string, root, ro bool) obj {
		return obj{"drive_id": id, "path_on_host": "@" + key + "@", "is_root_device": root, "is_read_only": ro}
	}
	// Writeback offers VIRTIO_BLK_F_FLUSH: the guest's sync must reach the image.
	writeback := func(d obj) obj { d["cache_type"] = "Writeback"; return d }
	bootSource := obj{"kernel_image_path": "@KERNEL@", "initrd_path": "@INITRD@", "boot_args": "@CMDLINE@"}
	writeCfg := obj{
		"boot-source":    bootSource,
		"machine-config": obj{"vcpu_count": 2, "mem_size_mib": 256},
		"drives":         []obj{writeback(drive("rootfs", "ROOT", true, false)), drive("scratch", "RO", false, true)},
		"metrics":        obj{"metrics_path": "@METRICS@"},
		"flint": obj{
			"timeout": flintTimeout,
			"drives":  obj{"rootfs": obj{"transport": "pci", "packed": true}, "scratch": obj{"transport": "mmio"}},
		},
	}
	if withNet {
		writeCfg["network-interfaces"] = []obj{{"iface_id": "eth0", "host_dev_name": "flcfg0", "guest_mac": cfgGuestMAC}}
	}
	readCfg := obj{
		"boot-source":    bootSource,
		"machine-config": obj{"vcpu_count": 1, "mem_size_mib": 256},
		"drives":         []obj{drive("rootfs", "ROOT", true, false)},
		"flint":          obj{"timeout": flintTimeout, "drives": obj{"rootfs": obj{"transport": "mmio", "packed": true}}},
	}
	reqFile := filepath.Join(dir, "api-requests")
	if err := os.WriteFile(reqFile, []byte(strings.Join(cfgAPIRequests, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	mk := func(name, cmdline string, mode []string, files []string, extra ...string) boot {
		wrap := append([]string{"sh", caseScript}, mode...)
		wrap = append(wrap, "--subst", "ROOT", rootImg, "--flint-timeout", strings.TrimSuffix(flintTimeout, "s"))
		wrap = append(append(wrap, extra...), "--")
		return boot{
			name: name, kernel: kernels["cloud"], initrd: initrd, cpus: 2, memMiB: 256,
			cmdline: guestCmdline() + " " + cmdline,
			timeout: timeout,
			wrap:    wrap,
			files:   append([]string{caseScript, rootImg}, files...),
			// The longest silence of a good run is the kernel's quiet boot (the
			// network cases' guests boot the same way under the same limit); a
			// guest the emulator lost (its vCPU state gone) is then noticed
			// after 2 min, not at flint's --timeout.
			quiet: 120 * time.Second,
		}
	}
	netArg := "flintcfg.net=0"
	if withNet {
		netArg = "flintcfg.net=1"
	}
	writeFiles := []string{writeJSON(t, dir, "write.json", writeCfg), roImg}
	boots := []boot{
		mk("config/write", "flintcfg.mode=write flintcfg.token="+token+" flintcfg.ro=1 "+netArg,
			[]string{"--config", writeFiles[0]}, append(writeFiles, hostFiles...),
			append([]string{"--subst", "RO", roImg, "--sha", "RO", "--metrics"}, hostOpts...)...),
		mk("config/read", "flintcfg.mode=read",
			[]string{"--config", writeJSON(t, dir, "read.json", readCfg)}, []string{filepath.Join(dir, "read.json")}),
	}
	var apiExtra []string
	apiFiles := []string{reqFile}
	if !e.direct {
		apiExtra = append(apiExtra, "--tools", hostTools)
		apiFiles = append(apiFiles, hostTools)
	}
	boots = append(boots, mk("api", "flintcfg.mode=api", []string{"--api", reqFile}, apiFiles, apiExtra...))
	rlCfg := rateLimitConfig(bootSource, flintTimeout)
	rlSkip := ""
	if !withNet {
		rlSkip = "the rate-limit case needs TAPs: run it as root"
	} else if why := refusesConfig(t, e.flint, dir, kernels["cloud"], rootImg, rlCfg); why != "" {
		rlSkip = why
	} else {
		rlCfg["metrics"] = obj{"metrics_path": "@METRICS@"} // after the probe: config-case.sh fills it in
		files := []string{writeJSON(t, dir, "ratelimit.json", rlCfg)}
		extra := append([]string{"--iperf3", "--metrics"}, hostOpts...)
		for _, n := range rlNets {
			extra = append(extra, "--tap", n.tap, n.host+"/24")
		}
		if !e.direct {
			extra = append(extra, "--tools", hostTools)
			files = append(files, hostTools)
		}
		boots = append(boots, mk("ratelimit", fmt.Sprintf("flintcfg.mode=read flintcfg.iperf=%d flintcfg.ifs=%s", rlIperfSecs, rlIfs()),
			[]string{"--config", files[0]}, append(files, hostFiles...), extra...))
	}

	// Every later boot reads the token config/write wrote to the root image.
	for i := 1; i < len(boots); i++ {
		boots[i].needs = boots[0].name
	}
	vsFile := writeJSON(t, dir, "vsock.json", vsockConfig(bootSource, flintTimeout))
	boots = append(boots, mk("vsock", "flintcfg.mode=vsock", []string{"--config", vsFile}, []string{vsFile, probe}, "--vsock", probe))
	boots = onlyCases(t, boots)
	results, err := e.runBoots(t, boots)
	if err != nil {
		t.Error(err)
	}
	want := cfgWant{marker: marker, roMarker: roMarker, token: token, rootImg: filepath.Base(rootImg), net: withNet}
	if rlSkip != "" {
		t.Run("ratelimit", func(t *testing.T) { t.Skip(rlSkip) })
	}
	for _, b := range boots {
		t.Run(b.name, func(t *testing.T) {
			r := finished(t, results, b.name)
			t.Logf("exit status %d after %.1fs", r.rc, r.elapsed.Seconds())
			checkConfigCase(t, b.name, r, want)
			if t.Failed() {
				t.Logf("last 100 lines of output:\n%s", tail(r.output, 100))
			}
		})
	}
}

// cfgWant is what the config cases must show.
type cfgWant struct {
	marker, roMarker, token string // the root and read-only images' markers, the token
	rootImg                 string // the root image's base name
	net                     bool   // config/write has a network interface
}

// checkConfigCase asserts everything one config case printed.
func checkConfigCase(t reporter, name string, r *result, w cfgWant) {
	t.Helper()
	m := parseCfg(r.output)
	if l, ok := m["CFG-HOST-SETUP"]; ok {
		t.Errorf("host side setup failed: %s", l[0].line)
		return
	}
	switch {
	case r.timedOut:
		t.Errorf("case did not finish in time (killed, status %d)", r.rc)
	case r.rc != 0:
		t.Errorf("exit status %d, want 0 (flint's, through config-case.sh)", r.rc)
	}
	switch name {
	case "config/write":
		checkCfgGuest(t, m, 2)
		checkCfgDisk(t, m, "vda", "pci", "0")
		checkDiskKV(t, m, "vda", "packed", "1")
		checkCfgDisk(t, m, "vdb", "platform", "1")
		checkDiskKV(t, m, "vdb", "packed", "0")
		checkKV(t, m, "CFG-MARKER", "content", w.marker)
		checkKV(t, m, "CFG-WRITE", "result", "ok")
		checkKV(t, m, "CFG-WRITE", "token", w.token)
		ro := last(m, "CFG-RO")
		t.Logf("read-only drive: %s", ro.line)
		checkKV(t, m, "CFG-RO", "sysro", "1")
		checkKV(t, m, "CFG-RO", "rwmount", "refused")
		checkKV(t, m, "CFG-RO", "marker", w.roMarker)
		if v := ro.kv["write"]; !strings.HasPrefix(v, "refused") {
			t.Errorf("a raw write to the read-only drive: %q, want refused", v)
		}
		var shas []string
		for _, l := range m["CFG-HOST-SHA"] {
			shas = append(shas, l.kv["sha256"])
		}
		if len(shas) != 2 || shas[0] == "" || shas[0] != shas[1] {
			t.Errorf("read-only image SHA-256 before and after the boot: %v, want two equal", shas)
		}
		if w.net {
			t.Logf("network interface: %s", last(m, "CFG-NET").line)
			checkKV(t, m, "CFG-NET", "result", "ok")
			checkKV(t, m, "CFG-NET", "driver", "virtio_net")
			checkKV(t, m, "CFG-NET", "mac", cfgGuestMAC)
		}
		checkWriteMetrics(t, r.output, w.net)
	case "config/read":
		checkCfgGuest(t, m, 1)
		checkCfgDisk(t, m, "vda", "platform", "0")
		checkDiskKV(t, m, "vda", "packed", "1")
		checkKV(t, m, "CFG-MARKER", "content", w.marker)
		checkKV(t, m, "CFG-READ", "token", w.token)
	case "api":
		checkCfgGuest(t, m, 2)
		checkCfgDisk(t, m, "vda", "pci", "0")
		checkKV(t, m, "CFG-READ", "token", w.token)
		checkAPI(t, parseAPI(r.output), cfgAPIRequests, w.rootImg)
	case "vsock":
		checkVsock(t, m)
	case "ratelimit":
		checkKV(t, m, "CFG-READ", "token", w.token)
		checkRates(t, m)
		checkRateMetrics(t, r.output)
	default:
		t.Errorf("no checks for case %q", name)
	}
}

// last returns the last line of a kind (an empty one when there is none).
func last(m map[string][]cfgLine, kind string) cfgLine {
	l := m[kind]
	if len(l) == 0 {
		return cfgLine{kv: map[string]string{}}
	}
	return l[len(l)-1]
}

// checkKV checks key=want in the last line of kind.
func checkKV(t reporter, m map[string][]cfgLine, kind, key, want string) {
	t.Helper()
	l, ok := m[kind]
	if !ok {
		t.Errorf("no %s line", kind)
		return
	}
	if got := l[len(l)-1].kv[key]; got != want {
		t.Errorf("%s %s=%q, want %q (%s)", kind, key, got, want, l[len(l)-1].line)
	}
}

// checkCfgGuest checks the guest's vCPU count and that the root drive put
// root=/dev/vda on its command line.
func checkCfgGuest(t reporter, m map[string][]cfgLine, cpus int) {
	t.Helper()
	g := last(m, "CFG-GUEST")
	t.Logf("guest: %s", g.line)
	checkKV(t, m, "CFG-GUEST", "cpus", strconv.Itoa(cpus))
	checkKV(t, m, "CFG-GUEST", "root", "/dev/vda")
	if mib, _ := strconv.Atoi(g.kv["memmib"]); mib < 200 || mib > 256 {
		t.Errorf("guest has %q MiB, want 256 MiB less the kernel's share", g.kv["memmib"])
	}
}

// checkCfgDisk checks one guest disk: virtio_blk on the bus, read-only flag.
func checkCfgDisk(t reporter, m map[string][]cfgLine, dev, bus, ro string) {
	t.Helper()
	for _, l := range m["CFG-DISK"] {
		if l.kv["dev"] != dev {
			continue
		}
		t.Logf("disk: %s", l.line)
		if l.kv["result"] != "ok" || l.kv["driver"] != "virtio_blk" || l.kv["bus"] != bus || l.kv["ro"] != ro {
			t.Errorf("%s: want virtio_blk on %s with ro=%s (%s)", dev, bus, ro, l.line)
		}
		return
	}
	t.Errorf("no CFG-DISK line for %s", dev)
}

// checkDiskKV checks one key of dev's CFG-DISK line (checkCfgDisk
// reports a missing line).
func checkDiskKV(t reporter, m map[string][]cfgLine, dev, key, want string) {
	t.Helper()
	for _, l := range m["CFG-DISK"] {
		if l.kv["dev"] == dev && l.kv[key] != want {
			t.Errorf("%s: %s=%q, want %q (%s)", dev, key, l.kv[key], want, l.line)
		}
	}
}

// checkAPI checks every API request's status and the bodies that matter.
func checkAPI(t reporter, got map[int]apiReply, reqs []string, rootImg string) {
	t.Helper()
	for i, req := range reqs {
		r, ok := got[i+1]
		if !ok {
			t.Errorf("request %d (%s): no reply recorded", i+1, req)
			continue
		}
		t.Logf("API %d %s %s: %s %s", i+1, r.method, r.path, r.code, r.body)
	}
	if r, ok := got[0]; ok {
		t.Errorf("API socket: %s", r.body)
	}
	want := func(i int, code string) apiReply {
		t.Helper()
		r := got[i]
		if r.code != code {
			t.Errorf("request %d (%s): status %q, want %s; body %s", i, reqs[i-1], r.code, code, r.body)
		}
		return r
	}
	state := func(i int, s string) {
		t.Helper()
		var info struct {
			State string `json:"state"`
		}
		r := want(i, "200")
		if err := json.Unmarshal([]byte(r.body), &info); err != nil || info.State != s {
			t.Errorf("request %d (GET /): state %q (%v), want %q; body %s", i, info.State, err, s, r.body)
		}
	}
	state(1, "Not started")
	bad := want(2, "400")
	var fault struct {
		FaultMessage string `json:"fault_message"`
	}
	if err := json.Unmarshal([]byte(bad.body), &fault); err != nil || !strings.Contains(fault.FaultMessage, "vcpu_bogus") {
		t.Errorf("PUT with an unknown key: fault_message %q (%v) does not name vcpu_bogus; body %s", fault.FaultMessage, err, bad.body)
	}
	want(3, "204")
	want(4, "204")
	var mc struct {
		VCPUCount  int `json:"vcpu_count"`
		MemSizeMiB int `json:"mem_size_mib"`
	}
	if r := want(5, "200"); json.Unmarshal([]byte(r.body), &mc) != nil || mc.VCPUCount != 2 || mc.MemSizeMiB != 256 {
		t.Errorf("GET /machine-config: %s, want vcpu_count 2 and mem_size_mib 256", r.body)
	}
	want(6, "204")
	want(7, "204")
	state(8, "Running")
	var vc struct {
		Drives []struct {
			DriveID    string `json:"drive_id"`
			PathOnHost string `json:"path_on_host"`
		} `json:"drives"`
	}
	if r := want(9, "200"); json.Unmarshal([]byte(r.body), &vc) != nil || len(vc.Drives) != 1 ||
		vc.Drives[0].DriveID != "rootfs" || filepath.Base(vc.Drives[0].PathOnHost) == "" {
		t.Errorf("GET /vm/config: %s, want the rootfs drive", r.body)
	} else if !strings.HasSuffix(vc.Drives[0].PathOnHost, filepath.Base(rootImg)) {
		t.Errorf("GET /vm/config: rootfs path %q, want the image %s", vc.Drives[0].PathOnHost, filepath.Base(rootImg))
	}
	want(10, "ok")
	want(11, "204")
}

// The rate-limit case: interface "limited" has both limiters, "free" none. The
// bandwidths differ, so a limiter applied to the wrong direction fails the check.
const (
	// Well below what the nested host moves even when the machine is busy
	// (unlimited: 40-300 Mbit/s), so the limiter, not TCG, sets the rate.
	rlTxBytes   = 2 << 20      // tx_rate_limiter: 2 MiB/s (16.8 Mbit/s) guest to host
	rlRxBytes   = 3 << 20 >> 1 // rx_rate_limiter: 1.5 MiB/s (12.6 Mbit/s) host to guest
	rlRefillMs  = 100          // a small bucket: the initial burst is 1/10 s of traffic
	rlIperfSecs = 5            // measured seconds each way, after 1 s iperf3 omits
	rlTolerance = 0.10
	// rlHeadroom: the unlimited interface must run this many times faster than
	// a limit, or the limited rate could be the nested host's own ceiling.
	rlHeadroom = 1.5
)

type rlNet struct{ label, mac, tap, guest, host string }

var rlNets = []rlNet{
	{"free", "52:54:00:c0:f1:a2", "flrl1", "10.0.4.15", "10.0.4.1"},
	{"limited", "52:54:00:c0:f1:a1", "flrl0", "10.0.3.15", "10.0.3.1"},
}

// rlIfs is the guest's flintcfg.ifs: LABEL@MAC@ADDR/P@HOST for each interface.
func rlIfs() string {
	var s []string
	for _, n := range rlNets {
		s = append(s, fmt.Sprintf("%s@%s@%s/24@%s", n.label, n.mac, n.guest, n.host))
	}
	return strings.Join(s, ",")
}

func rateLimitConfig(bootSource obj, flintTimeout string) obj {
	bw := func(bytesPerSec int) obj {
		return obj{"bandwidth": obj{"size": bytesPerSec * rlRefillMs / 1000, "refill_time": rlRefillMs}}
	}
	var nets []obj
	for _, n := range rlNets {
		o := obj{"iface_id": n.label, "host_dev_name": n.tap, "guest_mac": n.mac}
		if n.label == "limited" {
			o["tx_rate_limiter"], o["rx_rate_limiter"] = bw(rlTxBytes), bw(rlRxBytes)
		}
		nets = append(nets, o)
	}
	return obj{
		"boot-source":        bootSource,
		"machine-config":     obj{"vcpu_count": 2, "mem_size_mib": 256},
		"drives":             []obj{{"drive_id": "rootfs", "path_on_host": "@ROOT@", "is_root_device": true, "is_read_only": true}},
		"network-interfaces": nets,
		"flint":              obj{"timeout": flintTimeout},
	}
}

// refusesConfig returns flint's "not supported yet" error for cfg, or "" if flint
// takes it. The probe stops before any VM either way: flint checks the VM
// config (where it refuses what it does not support) before it opens the log,
// and the probe's log_path is in a directory that does not exist.
func refusesConfig(t *testing.T, flint, dir, kernel, rootImg string, cfg obj) string {
	t.Helper()
	probe := obj{"logger": obj{"log_path": filepath.Join(dir, "absent", "flint.log")}}
	for k, v := range cfg {
		if k != "boot-source" {
			probe[k] = v
		}
	}
	probe["boot-source"] = obj{"kernel_image_path": kernel}
	b, err := json.Marshal(probe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "probe.json")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "@ROOT@", rootImg)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(flint, "run", "--config", p).CombinedOutput()
	s := strings.TrimSpace(string(out))
	t.Logf("rate-limit probe (flint run --config with an unwritable log_path): %s", s)
	if strings.Contains(s, "not supported yet") {
		return s
	}
	if !strings.Contains(s, "log_path") {
		t.Fatalf("rate-limit probe: flint did not stop at the log_path: %s", s)
	}
	return ""
}

// checkRates checks the iperf3 rates the guest measured.
func checkRates(t reporter, m map[string][]cfgLine) {
	t.Helper()
	rate := map[string]float64{}
	for _, l := range m["CFG-IPERF"] {
		t.Logf("iperf3: %s", l.line)
		v, err := strconv.ParseFloat(l.kv["mbps"], 64)
		if l.kv["rc"] != "0" || err != nil {
			t.Errorf("iperf3 failed: %s", l.line)
			continue
		}
		rate[l.kv["if"]+"/"+l.kv["dir"]] = v
	}
	for _, dir := range []string{"tx", "rx"} {
		limit := float64(rlTxBytes) * 8 / 1e6
		if dir == "rx" {
			limit = float64(rlRxBytes) * 8 / 1e6
		}
		got, free := rate["limited/"+dir], rate["free/"+dir]
		t.Logf("%s: limited %.1f Mbit/s (limit %.1f, %+.1f%%), unlimited %.1f Mbit/s",
			dir, got, limit, 100*(got-limit)/limit, free)
		if got == 0 || free == 0 {
			t.Errorf("%s: an iperf3 rate is missing (limited %.1f, unlimited %.1f Mbit/s)", dir, got, free)
			continue
		}
		if free < rlHeadroom*limit {
			t.Errorf("%s: the unlimited interface ran at %.1f Mbit/s, not %.1fx the %.1f Mbit/s limit: the test cannot tell the limiter from the nested host's ceiling",
				dir, free, rlHeadroom, limit)
		}
		if d := (got - limit) / limit; d > rlTolerance || d < -rlTolerance {
			t.Errorf("%s: limited interface at %.1f Mbit/s, want %.1f Mbit/s within %.0f%%", dir, got, limit, 100*rlTolerance)
		}
	}
}

// lastMetrics returns the last object flint wrote to a case's metrics file
// (config-case.sh --metrics prints it as CFG-HOST-METRICS lines): the one
// written when the VM stopped.
func lastMetrics(t reporter, out string) (vmm.Metrics, bool) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if _, js, ok := strings.Cut(strings.TrimRight(l, "\r"), "CFG-HOST-METRICS "); ok {
			lines = append(lines, js)
		}
	}
	var m vmm.Metrics
	if len(lines) == 0 {
		t.Errorf("no metrics: flint wrote nothing to metrics_path")
		return m, false
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Errorf("metrics line %d: %v: %s", len(lines), err, lines[len(lines)-1])
		return m, false
	}
	t.Logf("metrics: %d object(s); the last: %s", len(lines), lines[len(lines)-1])
	return m, true
}

// checkWriteMetrics checks config/write's metrics: both vCPUs' exits, the
// root drive's reads, writes and flushes (Writeback; the guest synced a
// file), no write reaching the read-only drive, and the interface entry.
func checkWriteMetrics(t reporter, out string, withNet bool) {
	t.Helper()
	m, ok := lastMetrics(t, out)
	if !ok {
		return
	}
	if len(m.VCPU) != 2 {
		t.Errorf("metrics: %d vCPUs, want 2", len(m.VCPU))
	}
	for i, v := range m.VCPU {
		if v.ExitIO+v.ExitMMIO == 0 {
			t.Errorf("metrics: vCPU %d has no I/O or MMIO exits: %+v", i, v)
		}
	}
	root, ro := m.Block["rootfs"], m.Block["scratch"]
	if root.ReadOps == 0 || root.WriteOps == 0 || root.WriteBytes == 0 || root.Flushes == 0 {
		t.Errorf("metrics: root drive %+v, want reads, writes and flushes (the guest wrote and synced a file)", root)
	}
	if ro.ReadOps == 0 || ro.WriteOps != 0 {
		t.Errorf("metrics: read-only drive %+v, want reads and no writes", ro)
	}
	if n, ok := m.Net["eth0"]; withNet && (!ok || n.TAP != "flcfg0") {
		t.Errorf("metrics: interface eth0 %+v (present %v), want it on TAP flcfg0", n, ok)
	}
}

// checkRateMetrics checks the ratelimit case's metrics: traffic both ways
// on both interfaces, and the limiter throttling both directions of the
// limited one only.
func checkRateMetrics(t reporter, out string) {
	t.Helper()
	m, ok := lastMetrics(t, out)
	if !ok {
		return
	}
	for _, n := range rlNets {
		x, ok := m.Net[n.label]
		if !ok || x.TAP != n.tap || x.TxBytes == 0 || x.RxBytes == 0 {
			t.Errorf("metrics: interface %s %+v (present %v), want traffic both ways on %s", n.label, x, ok, n.tap)
			continue
		}
		limited := n.label == "limited"
		if (x.TxThrottled > 0) != limited || (x.RxThrottled > 0) != limited {
			t.Errorf("metrics: interface %s throttled tx %d, rx %d times; want both > 0 only on the limited interface",
				n.label, x.TxThrottled, x.RxThrottled)
		}
	}
}
