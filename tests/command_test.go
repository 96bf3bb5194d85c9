package e2e

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/boot/initramfs"
)

// Command mode (`flint run --kernel K -- CMD`) end to end: the cases run in
// TestStockKernelBoot's nested host, each through scripts/command-case.sh,
// which sets up share directories, module trees and a TAP in L1, runs flint
// and prints what it saw; the judging is here.

// cmdCase is one command-mode boot and how to judge it.
type cmdCase struct {
	b     boot
	check func(t *testing.T, r *cmdResult)
}

// cmdResult is what command-case.sh printed for one case.
type cmdResult struct {
	rc                     int
	secs                   float64
	stdout, stderr, consol string
	outHex                 string
	report, junit, rwfile  string
	host                   map[string]string
}

var (
	cmdRCRE   = regexp.MustCompile(`CMDCASE-RC rc=(-?\d+) secs=([0-9.]+)`)
	cmdHexRE  = regexp.MustCompile(`CMDCASE-OUT-HEX hex=([0-9a-f]*)`)
	cmdHostRE = regexp.MustCompile(`CMDCASE-HOST (.*)$`)
	cmdLineRE = regexp.MustCompile(`(CMDCASE-(?:OUT|ERR|CON|REPORT|JUNIT|RWFILE))\|(.*)$`)
)

// parseCmdCase reads command-case.sh's lines out of a boot's output.
func parseCmdCase(out string) (*cmdResult, error) {
	r := &cmdResult{host: map[string]string{}}
	m := cmdRCRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no CMDCASE-RC line: command-case.sh did not finish")
	}
	r.rc, _ = strconv.Atoi(m[1])
	r.secs, _ = strconv.ParseFloat(m[2], 64)
	if h := cmdHexRE.FindStringSubmatch(out); h != nil {
		r.outHex = h[1]
	}
	streams := map[string]*strings.Builder{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if g := cmdHostRE.FindStringSubmatch(line); g != nil {
			for _, f := range strings.Fields(g[1]) {
				if k, v, ok := strings.Cut(f, "="); ok {
					r.host[k] = v
				}
			}
			continue
		}
		g := cmdLineRE.FindStringSubmatch(line)
		if g == nil {
			continue
		}
		sb := streams[g[1]]
		if sb == nil {
			sb = &strings.Builder{}
			streams[g[1]] = sb
		}
		sb.WriteString(g[2])
		sb.WriteByte('\n')
	}
	get := func(k string) string {
		if sb := streams[k]; sb != nil {
			return sb.String()
		}
		return ""
	}
	r.stdout, r.stderr, r.consol = get("CMDCASE-OUT"), get("CMDCASE-ERR"), get("CMDCASE-CON")
	r.report, r.junit, r.rwfile = get("CMDCASE-REPORT"), get("CMDCASE-JUNIT"), get("CMDCASE-RWFILE")
	return r, nil
}

// cmdReport is the part of --report's JSON the cases check (docs/command-mode.md).
type cmdReport struct {
	Kernel            string   `json:"kernel"`
	Command           []string `json:"command"`
	BootToInitSeconds *float64 `json:"boot_to_init_seconds"`
	CommandSeconds    *float64 `json:"command_seconds"`
	TotalSeconds      float64  `json:"total_seconds"`
	Status            *struct {
		Kind string `json:"kind"`
		Code int    `json:"code"`
	} `json:"status"`
	Verdict struct {
		Result   string `json:"result"`
		ExitCode int    `json:"exit_code"`
		Reason   string `json:"reason"`
	} `json:"verdict"`
	Splats []struct {
		Kind    string `json:"kind"`
		Title   string `json:"title"`
		Failing bool   `json:"failing"`
	} `json:"splats"`
}

func (r *cmdResult) parseReport(t *testing.T) *cmdReport {
	t.Helper()
	var rep cmdReport
	if err := json.Unmarshal([]byte(r.report), &rep); err != nil {
		t.Fatalf("--report is not the documented JSON: %v\n%s", err, r.report)
	}
	return &rep
}

// checkJUnit parses --junit's document: one testsuite with one testcase,
// a failure element exactly when the run did not pass.
func (r *cmdResult) checkJUnit(t *testing.T, wantFailure bool) {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(r.junit), &doc); err != nil {
		t.Fatalf("--junit is not a JUnit document: %v\n%s", err, r.junit)
	}
	if len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 1 {
		t.Fatalf("--junit: want one testsuite with one testcase:\n%s", r.junit)
	}
	if got := doc.Suites[0].Cases[0].Failure != nil; got != wantFailure {
		t.Errorf("--junit: failure element present=%v, want %v:\n%s", got, wantFailure, r.junit)
	}
}

// wantRC checks flint's exit status and the report's verdict.
func (r *cmdResult) wantRC(t *testing.T, rc int, result string) *cmdReport {
	t.Helper()
	if r.rc != rc {
		t.Errorf("flint exit status %d, want %d", r.rc, rc)
	}
	rep := r.parseReport(t)
	if rep.Verdict.ExitCode != rc || rep.Verdict.Result != result {
		t.Errorf("report verdict %+v, want exit_code %d result %q", rep.Verdict, rc, result)
	}
	return rep
}

// prunedModuleTree copies, out of the module tree dir (lib/modules/KVER as
// unpacked from the kernel's .deb), the modules command mode loads
// (initramfs.DefaultModules and their dependencies) with the files the .deb
// ships beside them; withDep keeps depmod's modules.dep too. L1 keeps its
// whole root in memory: the full trees (hundreds of MiB) do not fit.
func prunedModuleTree(t *testing.T, dir string, withDep bool) string {
	t.Helper()
	mods, err := initramfs.Resolve(dir, initramfs.DefaultModules)
	if err != nil {
		t.Fatalf("resolving command mode's modules in %s: %v", dir, err)
	}
	out := t.TempDir()
	files := []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"}
	if withDep {
		files = append(files, "modules.dep", "modules.dep.bin") // kmod's modprobe reads only the .bin
	}
	for _, m := range mods {
		rel, err := filepath.Rel(dir, m.Path)
		if err != nil || strings.HasPrefix(rel, "..") {
			// Resolve may return the real path behind the cache's symlink.
			real, _ := filepath.EvalSymlinks(dir)
			if rel, err = filepath.Rel(real, m.Path); err != nil || strings.HasPrefix(rel, "..") {
				t.Fatalf("module %s outside its tree %s", m.Path, dir)
			}
		}
		files = append(files, rel)
	}
	for _, rel := range files {
		copyFile(t, filepath.Join(dir, rel), filepath.Join(out, rel))
	}
	return out
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, in); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// kver reads the kernel release fetch-kernels.sh recorded for a flavour.
func (e *env) kver(t *testing.T, flavour string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.cache, "kernels", flavour, "kver"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// shareScript is the main case's command: everything the issue asks of a
// command in one guest run (exit status, uname, stdin, exact bytes on
// stdout, stderr apart, shares, the overlay on the host's root, the
// working directory, --env, a dynamically linked host program, the
// kernel's --modules directory shown at /lib/modules/KVER for modprobe).
const shareScript = `uname -r
read line; echo "stdin=$line"
printf 'raw\r\n'
echo to-stderr >&2
cat /mnt/ro/hello
echo written >/mnt/rw/out.txt
if touch /mnt/ro/new 2>/dev/null; then echo ro=writable; else echo ro=refused; fi
if echo x >/etc/flint-overlay-test && [ -e /etc/flint-overlay-test ]; then echo overlay=writable; fi
echo "pwd=$(pwd)"
echo "env=$FLINT_E2E_ENV term=$TERM"
/usr/local/bin/iperf3 --version | head -n 1
[ -e "/lib/modules/$(uname -r)/modules.dep.bin" ] && echo moddir=shown
modprobe vmw_vsock_virtio_transport && grep -q '^vmw_vsock_virtio_transport ' /proc/modules && echo modprobe=ok
exit 7`

// commandCases returns the command-mode cases: the cloud kernel with its
// module tree where flint looks by itself, the generic kernel with a tree
// without modules.dep given by --modules (and --net), a panic, a timeout
// and an idle guest.
func (e *env) commandCases(t *testing.T, kernels map[string]string, timeout time.Duration) []cmdCase {
	t.Helper()
	script := filepath.Join(e.root, "scripts", "command-case.sh")
	cloudTree := prunedModuleTree(t, filepath.Join(e.cache, "kernels", "cloud", "modules"), true)
	genericTree := prunedModuleTree(t, filepath.Join(e.cache, "kernels", "amd64", "modules"), false)
	cloudKver, genericKver := e.kver(t, "cloud"), e.kver(t, "amd64")
	var tools string
	if !e.direct {
		tools = filepath.Join(t.TempDir(), "tools")
		e.script(t, "mknet-tools.sh", "-o", tools, "iperf3", "ip")
	}
	base := "/tmp/flint-cmd"
	if e.direct {
		base = t.TempDir()
	}
	// mk builds a case: its directory, the wrapper, the module tree (at
	// /lib/modules/KVER in the nested host, where flint finds it, for
	// treeAuto; by --modules on a real host, whose /lib/modules is not the
	// test's, and for treeFlag; a build tree with the kernel copied into
	// it at arch/x86/boot/bzImage for treeKernel; none for treeNone).
	mk := func(name, flavour string, tree, kver string, where treePlace, wrapArgs, flags, cmd []string) boot {
		d := filepath.Join(base, strings.ReplaceAll(name, "/", "-"))
		w := []string{"sh", script, "--dir", d, "--limit", strconv.Itoa(int((timeout - 30*time.Second) / time.Second))}
		files := []string{script}
		dest := filepath.Join(d, "modules")
		switch {
		case where == treeNone:
		case where == treeKernel:
			dest = filepath.Join(d, "tree")
			w = append(w, "--kernel-into", filepath.Join(dest, "arch/x86/boot/bzImage"))
		case where == treeAuto && !e.direct:
			dest = "/lib/modules/" + kver
		default:
			flags = append([]string{"--modules", dest}, flags...)
		}
		if where != treeNone {
			files = append(files, tree)
			w = append(w, "--tree", tree, dest)
		}
		if tools != "" {
			w = append(w, "--tools", tools)
			files = append(files, tools)
		}
		w = append(append(w, wrapArgs...), "--")
		flags = append([]string{"--console", "file:" + d + "/console.log",
			"--report", d + "/report.json", "--junit", d + "/junit.xml"}, flags...)
		if !e.direct {
			flags = append([]string{"--fail-on", "all,-warn"}, flags...)
		}
		for _, w := range wrapArgs {
			if strings.HasSuffix(w, ".ko") {
				files = append(files, w)
			}
		}
		return boot{name: name, kernel: kernels[flavour], cpus: 1, memMiB: 512, timeout: timeout,
			wrap: w, files: files, flags: flags, command: cmd}
	}
	d := func(name string) string { return filepath.Join(base, strings.ReplaceAll(name, "/", "-")) }

	var cases []cmdCase
	share := "cmd/cloud/share"
	cases = append(cases, cmdCase{
		b: mk(share, "cloud", cloudTree, cloudKver, treeFlag, // --modules: shown at /lib/modules/KVER for modprobe
			[]string{"--stdin", "line-from-host"},
			[]string{"--share", d(share) + "/ro:/mnt/ro", "--share", d(share) + "/rw:/mnt/rw:rw",
				"--env", "FLINT_E2E_ENV=a,b c=d", "--env", "TERM=vt100"},
			[]string{"sh", "-c", shareScript}),
		check: func(t *testing.T, r *cmdResult) {
			rep := r.wantRC(t, 7, "command-failed")
			r.checkJUnit(t, true)
			if rep.Kernel != cloudKver {
				t.Errorf("report kernel %q, want %q", rep.Kernel, cloudKver)
			}
			if rep.BootToInitSeconds == nil || rep.CommandSeconds == nil {
				t.Errorf("report lacks boot_to_init_seconds or command_seconds: %s", r.report)
			}
			for _, want := range []string{cloudKver + "\n", "stdin=line-from-host\n", "hello-from-host\n",
				"ro=refused\n", "overlay=writable\n", "pwd=" + d(share) + "/cwd\n", "env=a,b c=d term=vt100\n", "iperf 3.",
				"moddir=shown\n", "modprobe=ok\n"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q", want)
				}
			}
			if strings.Contains(r.stdout, "to-stderr") || !strings.Contains(r.stderr, "to-stderr") {
				t.Errorf("the command's stderr is not kept apart from its stdout")
			}
			// "raw\r\n" arrives byte for byte and no "\n" became "\r\n".
			if !strings.Contains(r.outHex, "7261770d0a") || strings.Count(r.outHex, "0d") != 1 {
				t.Errorf("stdout bytes changed on the way (hex %s)", r.outHex)
			}
			for _, s := range []string{r.stdout, r.stderr} {
				if strings.Contains(s, "Linux version") || strings.Contains(s, "virtio") {
					t.Errorf("kernel messages reached the command's streams:\n%s", s)
				}
			}
			if !strings.Contains(r.consol, "Linux version") {
				t.Errorf("the kernel log did not reach --console file:")
			}
			if r.rwfile != "written\n" {
				t.Errorf("file written under the :rw share: %q on the host, want %q", r.rwfile, "written\n")
			}
			if r.host["ro-new"] != "no" || r.host["overlay-leak"] != "no" {
				t.Errorf("guest writes reached read-only host files: %v", r.host)
			}
		},
	})

	netName := "cmd/amd64/modules-net"
	var netWrap, netFlags []string
	netCmd := "uname -r; exit 0"
	if !e.direct { // the TAP lives in the nested host; on a real host there is no namespace for it here
		netWrap = []string{"--tun-ko", tunModule(t, e.cache), "--tap", "flintcmd0", "10.77.0.1/24"}
		netFlags = []string{"--net", "tap=flintcmd0,ip=10.77.0.2/24"}
		netCmd = "uname -r; ping -c 1 -W 10 10.77.0.1 >/dev/null && echo ping=ok; exit 0"
	}
	cases = append(cases, cmdCase{
		b: mk(netName, "amd64", genericTree, genericKver, treeFlag, netWrap, netFlags, []string{"sh", "-c", netCmd}),
		check: func(t *testing.T, r *cmdResult) {
			r.wantRC(t, 0, "passed")
			r.checkJUnit(t, false)
			if !strings.Contains(r.stdout, genericKver+"\n") {
				t.Errorf("stdout lacks the generic kernel's release %q", genericKver)
			}
			if !e.direct && !strings.Contains(r.stdout, "ping=ok") {
				t.Errorf("the guest could not ping the host over --net")
			}
		},
	})

	cases = append(cases, cmdCase{
		b: mk("cmd/cloud/panic", "cloud", cloudTree, cloudKver, treeAuto, nil, nil,
			[]string{"sh", "-c", "echo c >/proc/sysrq-trigger; sleep 600"}),
		check: func(t *testing.T, r *cmdResult) {
			rep := r.wantRC(t, 121, "kernel-failure")
			r.checkJUnit(t, true)
			if !strings.Contains(r.stderr, "Kernel panic") {
				t.Errorf("stderr lacks the panic's excerpt")
			}
			// Noticed within seconds: panic=-1 resets the guest at once.
			if rep.CommandSeconds != nil && rep.BootToInitSeconds != nil &&
				rep.TotalSeconds-*rep.BootToInitSeconds > 30 {
				t.Errorf("the panic ended the run %.1fs after init", rep.TotalSeconds-*rep.BootToInitSeconds)
			}
		},
	})
	cases = append(cases, cmdCase{
		b: mk("cmd/cloud/timeout", "cloud", cloudTree, cloudKver, treeAuto, nil, []string{"--timeout", "60s"},
			[]string{"sh", "-c", "while :; do echo tick; sleep 1; done"}),
		check: func(t *testing.T, r *cmdResult) {
			r.wantRC(t, 124, "timeout")
			r.checkJUnit(t, true)
		},
	})
	cases = append(cases, cmdCase{
		b: mk("cmd/cloud/idle", "cloud", cloudTree, cloudKver, treeAuto, nil, []string{"--idle-timeout", "20s"},
			[]string{"sleep", "600"}),
		check: func(t *testing.T, r *cmdResult) {
			r.wantRC(t, 122, "idle-timeout")
			r.checkJUnit(t, true)
		},
	})
	return append(cases, e.buildTreeCases(t, mk, d)...)
}

// treePlace is where a command-mode case puts its module tree.
type treePlace int

const (
	treeAuto   treePlace = iota // /lib/modules/KVER in the nested host (found by flint), else --modules
	treeFlag                    // --modules
	treeKernel                  // a build tree around the kernel (found by flint)
	treeNone                    // no tree at all
)

// buildTreeCases are a kernel developer's runs: the generic kernel run
// from a build tree (devBuildTree) with its modules not installed and a
// failing command (one boot proves the tree, the report and the status
// passing through; a passing command is the other cases' business); and
// the same kernel with --modules builtin,
// which it is not (its virtio drivers are modules): the agent must fail
// fast at the modules stage (the stream devices never appear), a boot
// failure with the hint, not a hang. The generic kernel's tree is never at
// /lib/modules/KVER here (the cloud cases put theirs there; the nested
// host's own, if any, has no virtio modules), and flint's debug log must
// name the build tree.
func (e *env) buildTreeCases(t *testing.T, mk func(string, string, string, string, treePlace, []string, []string, []string) boot,
	d func(string) string) []cmdCase {
	t.Helper()
	kver := e.kver(t, "amd64")
	tree := devBuildTree(t, filepath.Join(e.cache, "kernels", "amd64"))
	usedTree := func(t *testing.T, name string, r *cmdResult) {
		t.Helper()
		want := "the build tree " + filepath.Join(d(name), "tree") + " around the kernel"
		if !strings.Contains(r.stderr, want) {
			t.Errorf("flint's debug log does not say it used the build tree (%q)", want)
		}
		// The modules came from the tree: the log's load list names the
		// consoles' driver (and the run passed its modules stage).
		if !strings.Contains(r.stderr, "command mode: kernel modules") || !strings.Contains(r.stderr, "virtio_mmio") {
			t.Errorf("flint's debug log does not list the modules loaded from the tree")
		}
		if rep := r.parseReport(t); rep.Kernel != kver {
			t.Errorf("report kernel %q, want %q", rep.Kernel, kver)
		}
	}
	debug := []string{"--log-level", "debug"}
	failName := "cmd/amd64/build-tree/fails"
	return []cmdCase{{
		b: mk(failName, "amd64", tree, kver, treeKernel, nil, debug, []string{"sh", "-c", "echo from-build-tree; exit 3"}),
		check: func(t *testing.T, r *cmdResult) {
			r.wantRC(t, 3, "command-failed")
			r.checkJUnit(t, true)
			usedTree(t, failName, r)
			if !strings.Contains(r.stdout, "from-build-tree\n") {
				t.Errorf("stdout lacks the command's output")
			}
		},
	}, {
		b: mk("cmd/amd64/builtin-missing-driver", "amd64", "", kver, treeNone, nil, []string{"--modules", "builtin"}, []string{"true"}),
		check: func(t *testing.T, r *cmdResult) {
			rep := r.wantRC(t, 120, "boot-failure")
			if !strings.Contains(r.stderr, "stage modules") || !strings.Contains(r.stderr, "loaded no kernel modules") {
				t.Errorf("stderr lacks the modules stage and the missing-driver hint")
			}
			// Noticed within the agent's device wait (5 s), not a timeout.
			if rep.BootToInitSeconds == nil || rep.TotalSeconds-*rep.BootToInitSeconds > 30 {
				t.Errorf("the missing driver ended the run %.1fs after init", rep.TotalSeconds-ptrOr(rep.BootToInitSeconds))
			}
		},
	}}
}

func ptrOr(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// devBuildTree lays out, from the cached kernel flavour dir (its modules
// and config as unpacked from its .deb), a kernel build tree as a
// developer's build leaves it: the modules command mode loads at their
// places in the source tree (kernel/drivers/x.ko becomes drivers/x.ko),
// modules.order naming their objects (x.o, as Linux 6.3 and later write
// it), the package's modules.builtin, the config as .config and a
// Makefile; no modules.dep, nothing installed. command-case.sh copies the
// kernel to arch/x86/boot/bzImage.
func devBuildTree(t *testing.T, flavourDir string) string {
	t.Helper()
	dir := filepath.Join(flavourDir, "modules")
	mods, err := initramfs.Resolve(dir, initramfs.DefaultModules)
	if err != nil {
		t.Fatalf("resolving command mode's modules in %s: %v", dir, err)
	}
	out := t.TempDir()
	resolved, _ := filepath.EvalSymlinks(dir)
	var order strings.Builder
	for _, m := range mods {
		rel, err := filepath.Rel(resolved, m.Path)
		if err != nil || !strings.HasPrefix(rel, "kernel/") {
			if rel, err = filepath.Rel(dir, m.Path); err != nil || !strings.HasPrefix(rel, "kernel/") {
				t.Fatalf("module %s not under %s/kernel", m.Path, dir)
			}
		}
		src := strings.TrimPrefix(rel, "kernel/")
		copyFile(t, m.Path, filepath.Join(out, src))
		order.WriteString(strings.TrimSuffix(src, ".ko") + ".o\n")
	}
	copyFile(t, filepath.Join(dir, "modules.builtin"), filepath.Join(out, "modules.builtin"))
	copyFile(t, filepath.Join(flavourDir, "config"), filepath.Join(out, ".config"))
	for name, data := range map[string]string{"modules.order": order.String(), "Makefile": "# a kernel build tree (tests/command_test.go)\n"} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// xsaveArtifact is the title of the one kernel warning every guest in the
// nested host logs at boot: "XSAVE consistency problem: size 2696 !=
// kernel_size 576", CPUID leaf 0xD's size for the guest's XCR0 (2696)
// against the sizes of the enabled components (576). The guest's XSETBV
// does not reach L1's KVM, which then never updates the size it reports,
// so the warning is the emulated SVM's, not flint's or the kernel's (L1,
// under the same emulator without nesting, does not log it). Nested cases
// therefore run with --fail-on all,-warn, and checkSplats fails them on
// any other warning.
const xsaveArtifact = "fpu__init_system_xstate"

// checkSplats fails the case on every splat --fail-on all,-warn let
// through in the nested host except the emulator's XSAVE warning.
func checkSplats(t *testing.T, r *cmdResult, nested bool) {
	t.Helper()
	if !nested || r.report == "" {
		return
	}
	for _, s := range r.parseReport(t).Splats {
		if s.Failing {
			continue
		}
		if s.Kind == "warn" && strings.Contains(s.Title, xsaveArtifact) {
			t.Logf("the nested host's XSAVE warning (not counted): %s", s.Title)
			continue
		}
		t.Errorf("kernel %s splat not counted by --fail-on all,-warn: %s", s.Kind, s.Title)
	}
}

// checkCommandCase judges one command-mode case's boot.
func checkCommandCase(t *testing.T, c cmdCase, res *result, nested bool) {
	if res == nil {
		t.Fatalf("case never started (the nested host ended first)")
	}
	if res.unfinished {
		cutOff(t, "case cut off (nested host "+res.host+")", res)
	}
	r, err := parseCmdCase(res.output)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, tail(res.output, 80))
	}
	t.Logf("flint exit status %d after %.1fs", r.rc, r.secs)
	c.check(t, r)
	checkSplats(t, r, nested)
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s\nreport:\n%s\nkernel log (last 40 lines):\n%s",
			r.stdout, r.stderr, r.report, tail(r.consol, 40))
	}
}
