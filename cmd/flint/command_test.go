package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/devices/exitdev"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/verdict"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// fakeTree is a module tree with a modules.dep: virtio_mmio and
// virtio_console need virtio and virtio_ring; virtio_net needs
// net_failover, which needs failover.
func fakeTree(t *testing.T, without ...string) string {
	dir := t.TempDir()
	mods := map[string][]string{
		"virtio_ring": nil, "virtio": nil, "failover": nil,
		"virtio_mmio": {"virtio", "virtio_ring"}, "virtio_console": {"virtio", "virtio_ring"},
		"net_failover": {"failover"}, "virtio_net": {"net_failover", "failover", "virtio", "virtio_ring"},
		"virtio_pci": {"virtio", "virtio_ring"},
		"fuse":       nil, "virtiofs": {"fuse", "virtio", "virtio_ring"}, "overlay": nil,
	}
	var dep strings.Builder
	for name, deps := range mods {
		skip := false
		for _, w := range without {
			skip = skip || w == name
		}
		if skip {
			continue
		}
		p := "kernel/drivers/" + name + ".ko"
		if err := os.MkdirAll(filepath.Join(dir, "kernel/drivers"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("module "+name), 0o644); err != nil {
			t.Fatal(err)
		}
		dep.WriteString(p + ":")
		for _, d := range deps {
			dep.WriteString(" kernel/drivers/" + d + ".ko")
		}
		dep.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newcFiles returns the regular files of the newc archives in b (the last
// entry of a name wins, as in the kernel's unpacker), skipping anything
// before the first archive.
func newcFiles(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	off := bytes.Index(b, []byte("070701"))
	field := func(at, i int) int {
		v, err := strconv.ParseUint(string(b[at+6+8*i:at+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: %v", at, err)
		}
		return int(v)
	}
	for off >= 0 && off+110 <= len(b) {
		mode, size, nameSize := field(off, 1), field(off, 6), field(off, 11)
		name := string(b[off+110 : off+110+nameSize-1])
		body := (off + 110 + nameSize + 3) &^ 3
		if name == "TRAILER!!!" {
			next := bytes.Index(b[body:], []byte("070701"))
			if next < 0 {
				break
			}
			off = body + next
			continue
		}
		if mode&0o170000 == 0o100000 {
			files[name] = b[body : body+size]
		}
		off = (body + size + 3) &^ 3
	}
	return files
}

// runCommandArgs runs the CLI in command mode with a launcher that records
// the config and returns res.
func runCommandArgs(t *testing.T, res vmm.CommandResult, stdin *os.File, args ...string) (int, string, string, *vmm.Config) {
	t.Helper()
	var out, errb bytes.Buffer
	code, cfg := runCommandOn(t, &out, &errb, res, stdin, args...)
	return code, out.String(), errb.String(), cfg
}

// runCommandOn is runCommandArgs with Flint's stdout and stderr given.
func runCommandOn(t *testing.T, out, errb io.Writer, res vmm.CommandResult, stdin *os.File, args ...string) (int, *vmm.Config) {
	t.Helper()
	var got *vmm.Config
	a := newApp(out, errb, func(vmm.Config, io.Writer) int { t.Fatal("plain launcher used"); return 0 })
	a.installFilter = recordFilter
	a.stdin = stdin
	a.launchCmd = func(cfg vmm.Config) (vmm.CommandResult, error) {
		got = &cfg
		return res, nil
	}
	code := a.run(append([]string{"flint"}, args...))
	return code, got
}

func passed() vmm.CommandResult {
	r := exitdev.Report{Kind: exitdev.KindExited, Code: 0}
	o := verdict.Outcome{Command: &r, FailOn: verdict.All}
	return vmm.CommandResult{Outcome: o, Verdict: verdict.Judge(o)}
}

func TestCommandModeConfig(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	user := writeFile(t, "initrd", []byte("USER-INITRD"))
	tree := fakeTree(t)
	code, _, stderr, cfg := runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--initrd", user, "--modules", tree,
		"--no-host-root", "--cmdline", "quiet", "--idle-timeout", "30s", "--fail-on", "all,-warn", "--", "sh", "-c", "uname -r; exit 7", "caf\xe9")
	if code != 0 || cfg == nil {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	if cfg.Command == nil || cfg.Console != "none" || cfg.Command.IdleTimeout.Seconds() != 30 || cfg.Command.FailOn.Has(verdict.Warn) || cfg.Command.Stdin != nil {
		t.Fatalf("command config %+v, console %q", cfg.Command, cfg.Console)
	}
	if want := commandCmdline + " quiet loglevel=5"; cfg.Cmdline != want || !strings.Contains(cfg.Cmdline, "panic=-1") {
		t.Fatalf("cmdline %q, want %q", cfg.Cmdline, want)
	}
	if !bytes.HasPrefix(cfg.Initrd, []byte("USER-INITRD")) {
		t.Fatalf("the user's initrd does not come first: %q", cfg.Initrd[:16])
	}
	files := newcFiles(t, cfg.Initrd)
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["init"], self) {
		t.Errorf("/init (%d bytes) is not the running binary (%d bytes)", len(files["init"]), len(self))
	}
	s, err := agent.DecodeSpec(bytes.NewReader(files["flint/agent.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Argv, "|") != "sh|-c|uname -r; exit 7|caf\xe9" || s.Stdout != vmm.StdoutDevice || s.Stderr != vmm.StderrDevice || s.Stdin != "" ||
		s.Root != "" || s.Dir != "/" || len(s.Mounts) != 0 || len(cfg.Command.Shares) != 0 {
		t.Errorf("spec %+v", s)
	}
	// virtio and virtio_ring before the two drivers; no network module.
	if len(s.Modules) != 4 || !strings.HasSuffix(s.Modules[2], "/virtio_mmio.ko") || !strings.HasSuffix(s.Modules[3], "/virtio_console.ko") {
		t.Errorf("modules %q", s.Modules)
	}
	for _, m := range s.Modules {
		if name := strings.TrimPrefix(m, "/"); !bytes.HasPrefix(files[name], []byte("module ")) {
			t.Errorf("module %s not in the archive", m)
		}
	}
}

func TestCommandModeStdinAndNet(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	code, _, stderr, cfg := runCommandArgs(t, passed(), r, "run", "--kernel", k, "--modules", fakeTree(t), "--no-host-root",
		"--net", "tap=tap0,ip=10.77.0.2/24", "--net", "tap=tap1,transport=mmio", "--console", "stdio", "--", "cat")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if !strings.HasSuffix(cfg.Cmdline, " "+fullLog) {
		t.Errorf("cmdline %q: a shown kernel log should be the full one", cfg.Cmdline)
	}
	if cfg.Command.Stdin == nil || cfg.Console != "stderr" {
		t.Fatalf("stdin %v console %q: want a framed stdin and the kernel log on stderr", cfg.Command.Stdin, cfg.Console)
	}
	s, err := agent.DecodeSpec(bytes.NewReader(newcFiles(t, cfg.Initrd)["flint/agent.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if s.Stdin != vmm.StdinDevice {
		t.Errorf("spec stdin %q", s.Stdin)
	}
	if len(s.Interfaces) != 1 || s.Interfaces[0].Addr != "10.77.0.2/24" || s.Interfaces[0].MAC != vmm.NetMAC(cfg.Net[0]).String() {
		t.Errorf("interfaces %+v: want tap0's MAC with its ip=, and nothing for tap1", s.Interfaces)
	}
	names := strings.Join(s.Modules, " ")
	for _, m := range []string{"failover", "net_failover", "virtio_net", "virtio_pci"} {
		if !strings.Contains(names, "/"+m+".ko") {
			t.Errorf("modules %q lack %s", names, m)
		}
	}
}

// TestCommandModeBadInput: each problem is one line and exit 2 before any
// VM exists.
func TestCommandModeBadInput(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	tree := fakeTree(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--modules", fakeTree(t, "virtio_console")}, `unknown kernel module "virtio_console"`},
		{[]string{"--modules", filepath.Join(tree, "nope")}, "is not a directory"},
		{[]string{}, "--modules DIR"},
		{[]string{"--modules", tree, "--fail-on", "warnings"}, `--fail-on "warnings"`},
		{[]string{"--modules", tree, "--idle-timeout", "-1s"}, "--idle-timeout"},
		{[]string{"--modules", tree, "--api-sock", "/tmp/x"}, "--api-sock cannot be used"},
		{[]string{"--modules", tree, "--report", "/nonexistent-dir/r.json"}, "--report"},
		{[]string{"--modules", tree, "--junit", fifo}, "--junit"},
		{[]string{"--modules", tree, "--share", "/nonexistent-flint-dir:/mnt"}, `--share "/nonexistent-flint-dir:/mnt"`},
		{[]string{"--modules", tree, "--share", k + ":/mnt"}, "is not a directory"},
		{[]string{"--modules", tree, "--share", tree + ":mnt"}, "clean absolute path"},
		{[]string{"--modules", tree, "--share", tree + ":/"}, "clean absolute path"},
		{[]string{"--modules", tree, "--share", tree + ":/mnt:rx"}, "HOSTDIR:GUESTDIR"},
		{[]string{"--modules", tree, "--share", tree + ":/mnt", "--share", tree + ":/mnt:rw"}, "shared twice"},
	} {
		args := append(append([]string{"run", "--kernel", k}, tc.args...), "--", "true")
		code, _, stderr, cfg := runCommandArgs(t, passed(), nil, args...)
		if code != 2 || cfg != nil || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: code %d, stderr %q: want exit 2 and one line with %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestCommandModeVerdict: the launcher's verdict becomes the exit code, a
// kernel failure prints its excerpt on stderr, and --report and --junit
// are written.
func TestCommandModeVerdict(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	dir := t.TempDir()
	rep, junit := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.xml")
	r := exitdev.Report{Kind: exitdev.KindExited, Code: 0}
	panicSplat := verdict.Splat{Kind: verdict.Panic, Title: "Kernel panic - not syncing: sysrq triggered crash",
		Excerpt: []string{"Kernel panic - not syncing: sysrq triggered crash", "CPU: 0 PID: 42 Comm: sh"}}
	o := verdict.Outcome{Command: &r, FailOn: verdict.None, Splats: []verdict.Splat{panicSplat}}
	res := vmm.CommandResult{Outcome: o, Verdict: verdict.Judge(o)}
	code, stdout, stderr, _ := runCommandArgs(t, res, nil, "run", "--kernel", k, "--modules", fakeTree(t), "--no-host-root",
		"--report", rep, "--junit", junit, "--", "true")
	if code != verdict.CodeKernelFailed {
		t.Fatalf("code %d, want 121; stderr %q", code, stderr)
	}
	if stdout != "" || !strings.Contains(stderr, "kernel failure (panic)") || !strings.Contains(stderr, "CPU: 0 PID: 42 Comm: sh") {
		t.Errorf("stdout %q stderr %q: want the verdict and the excerpt on stderr only", stdout, stderr)
	}
	var got struct {
		Verdict struct {
			Result   string `json:"result"`
			ExitCode int    `json:"exit_code"`
		} `json:"verdict"`
		Command []string `json:"command"`
	}
	b, err := os.ReadFile(rep)
	if err != nil || json.Unmarshal(b, &got) != nil || got.Verdict.ExitCode != 121 || got.Verdict.Result != "kernel-failure" || got.Command[0] != "true" {
		t.Errorf("report %s (%v): %+v", b, err, got)
	}
	if b, err := os.ReadFile(junit); err != nil || !bytes.Contains(b, []byte("<failure")) {
		t.Errorf("junit %s (%v)", b, err)
	}
	// CMD's own failure passes through without a Flint line.
	r7 := exitdev.Report{Kind: exitdev.KindExited, Code: 7}
	o7 := verdict.Outcome{Command: &r7, FailOn: verdict.All}
	code, _, stderr, _ = runCommandArgs(t, vmm.CommandResult{Outcome: o7, Verdict: verdict.Judge(o7)}, nil,
		"run", "--kernel", k, "--modules", fakeTree(t), "--", "sh", "-c", "exit 7")
	if code != 7 || stderr != "" {
		t.Errorf("exit 7: code %d stderr %q", code, stderr)
	}
}

// TestCommandModeHostRoot: by default the host's root is shared read-only
// with an overlay, the command runs chrooted there in the host's working
// directory, --share directories are mounted inside it afterwards, and the
// filter allows the file server's calls.
func TestCommandModeHostRoot(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	ro, rw := t.TempDir(), t.TempDir()
	var opts []seccomp.Options
	var out, errb bytes.Buffer
	var cfg *vmm.Config
	a := newApp(&out, &errb, nil)
	a.installFilter = func(o seccomp.Options) error { opts = append(opts, o); return nil }
	a.launchCmd = func(c vmm.Config) (vmm.CommandResult, error) {
		cfg = &c
		if err := c.BeforeRun(c.SeccompOptions()); err != nil {
			t.Error(err)
		}
		return passed(), nil
	}
	code := a.run([]string{"flint", "run", "--kernel", k, "--modules", fakeTree(t),
		"--share", ro + ":/mnt/ro", "--share", rw + ":/tmp/rw:rw", "--", "pwd"})
	if code != 0 {
		t.Fatalf("code %d: %s", code, errb.String())
	}
	cwd, _ := os.Getwd()
	s, err := agent.DecodeSpec(bytes.NewReader(newcFiles(t, cfg.Initrd)["flint/agent.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if s.Root != guestRoot || s.Dir != cwd || len(s.Mounts) != 3 || s.Mounts[2].FSType != "overlay" || len(s.Mounts[2].Opaque) == 0 {
		t.Errorf("spec root %q dir %q mounts %+v", s.Root, s.Dir, s.Mounts)
	}
	if len(s.After) != 2 || s.After[0].Target != guestRoot+"/mnt/ro" || strings.Join(s.After[0].Options, ",") != "ro" ||
		s.After[1].Target != guestRoot+"/tmp/rw" || len(s.After[1].Options) != 0 {
		t.Errorf("share mounts %+v", s.After)
	}
	sh := cfg.Command.Shares
	if len(sh) != 3 || sh[0].HostDir != "/" || !sh[0].ReadOnly || sh[0].Tag != s.Mounts[0].Source ||
		sh[1].HostDir != ro || !sh[1].ReadOnly || sh[1].Tag != s.After[0].Source || sh[2].HostDir != rw || sh[2].ReadOnly {
		t.Errorf("VMM shares %+v", sh)
	}
	names := strings.Join(s.Modules, " ")
	for _, m := range []string{"/fuse.ko", "/virtiofs.ko", "/overlay.ko"} {
		if !strings.Contains(names, m) {
			t.Errorf("modules %q lack %s", names, m)
		}
	}
	if len(opts) != 1 || !opts[0].FileServer || opts[0].Mode != seccomp.Kill {
		t.Errorf("filter options %+v, want kill with the file server's calls", opts)
	}
}

// TestCommandModeCwdInGuestOwnDir: run from a host directory the guest
// covers with its own /dev, /proc or /sys (a build in /dev/shm), the
// command could not start there and the run ended as "command not found"
// (127); it is exit 2 naming the directory.
func TestCommandModeCwdInGuestOwnDir(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	t.Chdir("/dev")
	code, _, stderr, cfg := runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", fakeTree(t), "--", "true")
	if code != 2 || cfg != nil || !strings.Contains(stderr, `"/dev"`) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("code %d, stderr %q: want exit 2 naming /dev", code, stderr)
	}
	for dir, want := range map[string]string{"/dev/shm/b": "/dev", "/proc": "/proc", "/sys/x": "/sys", "/device": "", "/home/dev": "", "/": ""} {
		if got := guestOwnDir(dir); got != want {
			t.Errorf("guestOwnDir(%q) = %q, want %q", dir, got, want)
		}
	}
}

// TestCommandModeMergedOutput: when Flint's stdout and stderr are one
// file (flint run ... >log 2>&1, or | tee), the command's are one pipe
// too, as they would be on the host, so the file keeps the order the
// command wrote in; two stream devices relayed apart could swap an
// "error" line with the output around it. Separate files keep separate
// streams.
func TestCommandModeMergedOutput(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	other, err := os.Create(filepath.Join(dir, "err"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, tc := range []struct {
		name       string
		stderr     *os.File
		wantStderr string
	}{{"2>&1", log, vmm.StdoutDevice}, {"apart", other, vmm.StderrDevice}} {
		code, cfg := runCommandOn(t, log, tc.stderr, passed(), nil, "run", "--kernel", k, "--modules", fakeTree(t), "--no-host-root", "--", "true")
		if code != 0 || cfg == nil {
			t.Fatalf("%s: code %d", tc.name, code)
		}
		s, err := agent.DecodeSpec(bytes.NewReader(newcFiles(t, cfg.Initrd)["flint/agent.json"]))
		if err != nil {
			t.Fatal(err)
		}
		if s.Stdout != vmm.StdoutDevice || s.Stderr != tc.wantStderr {
			t.Errorf("%s: spec stdout %q stderr %q, want stderr %q", tc.name, s.Stdout, s.Stderr, tc.wantStderr)
		}
	}
}

// TestCommandModeUncleanPWD: os.Getwd returns $PWD as it is when it names
// the current directory, and a shell keeps a leading // there (cd //tmp);
// the agent's Spec wants a clean path, so the run was exit 2 ("dir is not
// a clean absolute path"). The command now starts in the real directory.
func TestCommandModeUncleanPWD(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("PWD", "/"+dir)
	code, _, stderr, cfg := runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", fakeTree(t), "--", "true")
	if code != 0 || cfg == nil {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	s, err := agent.DecodeSpec(bytes.NewReader(newcFiles(t, cfg.Initrd)["flint/agent.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != dir {
		t.Errorf("spec dir %q, want %q", s.Dir, dir)
	}
}

// TestKeepLoglevel: --cmdline quiet would lower the console to errors
// only (the kernel takes the last of quiet and loglevel=), hiding the
// WARNING and lockdep reports --fail-on counts: the run passed over them.
// The verdict's loglevel follows quiet again, unless the user set one.
func TestKeepLoglevel(t *testing.T) {
	for args, want := range map[string]string{
		"quiet":                         " loglevel=5",
		"nokaslr quiet mitigations=off": " loglevel=5",
		"quiet loglevel=3":              "",
		"loglevel=7 quiet":              "",
		"nokaslr":                       "",
		"quietly=1":                     "",
	} {
		if got := keepLoglevel(args); got != want {
			t.Errorf("keepLoglevel(%q) = %q, want %q", args, got, want)
		}
	}
}

// TestCommandModePrintkTime: the kernel takes the last printk.time, so a
// --cmdline printk.time=0 turns command mode's timestamps off, and the
// command line the VM gets says so to the verdict's scanner (vmm reads it
// with verdict.PrintkTime): a program's "[1.0] " line must not hide the
// kernel's unstamped oops.
func TestCommandModePrintkTime(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	tree := fakeTree(t)
	for _, tc := range []struct {
		cmdline []string
		on      bool
	}{
		{nil, true},
		{[]string{"--cmdline", "printk.time=0"}, false},
		{[]string{"--cmdline", "quiet printk.time=n"}, false},
		{[]string{"--cmdline", "printk.time=0 printk.time=y"}, true},
	} {
		args := append([]string{"run", "--kernel", k, "--modules", tree, "--no-host-root"}, tc.cmdline...)
		code, _, stderr, cfg := runCommandArgs(t, passed(), nil, append(args, "--", "true")...)
		if code != 0 || cfg == nil {
			t.Fatalf("%q: code %d, stderr %q", tc.cmdline, code, stderr)
		}
		if on, set := verdict.PrintkTime(cfg.Cmdline); on != tc.on || !set {
			t.Errorf("%q: cmdline %q gives printk.time %v (set %v), want %v", tc.cmdline, cfg.Cmdline, on, set, tc.on)
		}
	}
}
