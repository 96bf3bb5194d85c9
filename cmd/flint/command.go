package main

// Command mode: `flint run --kernel K [flags] -- CMD [ARGS...]` boots K
// with a generated initramfs (guest.go), runs CMD in the guest and exits
// with its status or one of Flint's codes (docs/command-mode.md).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/boot/initramfs"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/verdict"
)

// commandCmdline is command mode's kernel command line: the serial
// console (for the verdict's scanner), reboot through the keyboard
// controller, verdict.KernelArgs (panic=-1: a panic ends the VM at once,
// loglevel=5: warnings reach the console, printk timestamps), and the
// agent as /init. When --console shows the kernel log, fullLog follows
// (the whole log, as a plain boot has it; with the log unseen, loglevel=5
// keeps the slow serial line quiet but for what the verdict needs).
// --cmdline ARGS is appended last (later arguments win).
const (
	commandCmdline = "console=ttyS0 reboot=k " + verdict.KernelArgs + " rdinit=/init"
	fullLog        = "loglevel=7"
)

// keepLoglevel is what follows --cmdline ARGS: when ARGS say quiet (the
// console shows only errors: no WARNING, no lockdep report) without a
// loglevel= of their own, verdict.KernelArgs's loglevel again, so a habit
// of booting quiet does not silently pass a run that warned. An explicit
// loglevel= is the user's choice.
func keepLoglevel(args string) string {
	quiet := false
	for _, a := range strings.Fields(args) {
		if strings.HasPrefix(a, "loglevel=") {
			return ""
		}
		quiet = quiet || a == "quiet"
	}
	if !quiet {
		return ""
	}
	for _, a := range strings.Fields(verdict.KernelArgs) {
		if strings.HasPrefix(a, "loglevel=") {
			return " " + a
		}
	}
	return ""
}

// commandOnlyFlags are the flags only command mode takes.
var commandOnlyFlags = []string{"modules", "fail-on", "idle-timeout", "report", "junit", "no-host-root", "share", "env"}

// commandFlags are `flint run`'s command-mode flags.
func commandFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "modules", Usage: "command mode: the kernel's modules: its module directory (its /lib/modules/VERSION, e.g. unpacked from its package), a kernel build tree, or builtin (the drivers are built into the kernel, load none); default: the build tree the kernel lies in, else /lib/modules/VERSION for the kernel's version; an installed module directory is shown to the command at /lib/modules/VERSION (read-only), for modprobe"},
		&cli.StringFlag{Name: "fail-on", Value: verdict.DefaultFailOn.String(), Usage: "command mode: kernel reports that fail the run (exit 121): comma-separated panic, oops, bug, warn, kasan, kfence, ubsan, lockdep, hung, lockup, rcu, all or none; -NAME removes one (all,-warn); a panic always fails"},
		&cli.DurationFlag{Name: "idle-timeout", Usage: "command mode: end the run (exit 122) after this long without kernel console output, command output or agent progress; 0 means off"},
		&cli.StringFlag{Name: "report", Usage: "command mode: write the run's verdict as JSON to this file (created when the run starts, written when it ends)"},
		&cli.StringFlag{Name: "junit", Usage: "command mode: write the run's result as JUnit XML to this file"},
		&cli.BoolFlag{Name: "no-host-root", Usage: "command mode: run the command in the initramfs's own root (the --initrd's files and Flint's) instead of the host's root (shared read-only, with a writable tmpfs overlay in the guest)"},
		&cli.StringSliceFlag{Name: "share", Usage: "command mode: share a host directory with the guest at GUESTDIR, read-only unless :rw (repeatable): HOSTDIR:GUESTDIR[:rw]"},
		&cli.StringSliceFlag{Name: "env", Usage: "command mode: set NAME to VALUE in the command's environment, or pass the host's NAME on (not set on the host: left out) (repeatable): NAME=VALUE or NAME; the command otherwise gets only PATH, HOME and TERM"},
	}
}

// commandLauncher builds and runs a command-mode VM (tests substitute it).
// An error is a VM that could not be built.
type commandLauncher func(cfg vmm.Config) (vmm.CommandResult, error)

func launchCommand(cfg vmm.Config) (vmm.CommandResult, error) {
	m, err := vmm.New(cfg)
	if err != nil {
		return vmm.CommandResult{}, err
	}
	res := m.RunCommand()
	m.Close()
	return res, nil
}

// checkPlainRun refuses command-mode flags on a plain `flint run`.
func checkPlainRun(c *cli.Context) error {
	for _, f := range commandOnlyFlags {
		if c.IsSet(f) {
			return usagef("run: --%s needs command mode: give the command after -- (flint run --kernel K --%s ... -- CMD [ARGS...])", f, f)
		}
	}
	for _, spec := range c.StringSlice("net") {
		if n, err := configs.ParseNetFlag(spec); err == nil && n.GuestIP.IsValid() {
			return usagef("--net %q: ip= needs command mode (the guest agent sets the address): give the command after --", spec)
		}
	}
	return nil
}

// runCommandMode is `flint run ... -- argv`.
func (a *app) runCommandMode(c *cli.Context, argv []string, before func(seccomp.Options) error) error {
	for _, f := range []string{"config", "api-sock", "exit-marker"} {
		if c.IsSet(f) {
			return usagef("run: --%s cannot be used with a command after --", f)
		}
	}
	failOn, err := verdict.ParseFailOn(c.String("fail-on"))
	if err != nil {
		// verdict's errors name the flag already: once is enough.
		return usagef("--fail-on %q: %s", c.String("fail-on"), strings.TrimPrefix(err.Error(), "--fail-on: "))
	}
	idle := c.Duration("idle-timeout")
	if idle < 0 {
		return usagef("--idle-timeout %v: must not be negative", idle)
	}
	cfg, release, err := buildConfig(c, nil, "", nil)
	defer release()
	if err != nil {
		return err
	}
	switch {
	case !c.IsSet("console"):
		cfg.Console = "none"
	case cfg.Console == "stdio":
		cfg.Console = "stderr" // the command's streams own stdout; no console input
	}
	cfg.Cmdline = commandCmdline
	if cfg.Console != "none" {
		cfg.Cmdline += " " + fullLog
	}
	if c.IsSet("cmdline") {
		cfg.Cmdline += " " + c.String("cmdline") + keepLoglevel(c.String("cmdline"))
	}
	shares, err := parseShares(c.StringSlice("share"))
	if err != nil {
		return err
	}
	env, err := parseEnv(c.StringSlice("env"), os.LookupEnv)
	if err != nil {
		return err
	}
	g := guest{argv: argv, kernel: c.String("kernel"), modules: c.String("modules"), noHostRoot: c.Bool("no-host-root"),
		stdin: a.stdinIsPipe(), shares: shares, env: env, mergeOutput: sameFile(a.cli.Writer, a.stderr)}
	if g.modules == "" {
		g.buildTree = initramfs.FindBuildTree(g.kernel)
	}
	g.kver, g.kverErr = kernelRelease(cfg.Kernel, g.releaseTree())
	kver := g.kver
	if !g.noHostRoot {
		if g.cwd, err = os.Getwd(); err == nil && filepath.Clean(g.cwd) != g.cwd {
			// os.Getwd's answer is $PWD when it names the directory,
			// as a shell wrote it (cd //tmp keeps the //); the kernel's
			// is clean.
			g.cwd, err = unix.Getwd()
		}
		if err != nil {
			return usagef("run: the current directory: %v", err)
		}
		if d := guestOwnDir(g.cwd); d != "" {
			return usagef("run: the current directory %q lies in %s, which the guest replaces with its own: run flint from another directory, or use --no-host-root", g.cwd, d)
		}
	}
	if err := g.prepare(&cfg); err != nil {
		return err
	}
	var stdin io.Reader
	if g.stdin {
		stdin = agent.NewFrameReader(a.stdin)
	}
	cfg.Command = &vmm.CommandConfig{FailOn: failOn, IdleTimeout: idle, Stdout: a.cli.Writer, Stderr: a.stderr, Stdin: stdin,
		Shares: g.vmShares}
	out, err := openReports(c.String("report"), c.String("junit"))
	if err != nil {
		return err
	}
	cfg.BeforeRun = before
	res, err := a.launchCmd(cfg)
	var ce *vmm.ConfigError
	if errors.As(err, &ce) {
		out.discard() // no report for the user's error
		return usageError{err.Error()}
	}
	defer out.close()
	if err != nil {
		res.Outcome = verdict.Outcome{Err: err, FailOn: failOn}
		res.Verdict = verdict.Judge(res.Outcome)
	}
	switch res.Verdict.Result {
	case verdict.Passed, verdict.CommandFailed:
		// CMD's own status speaks for itself.
	default:
		verdict.WriteSummary(a.stderr, res.Verdict, 20)
	}
	if res.Verdict.Result == verdict.BootFailed && g.loaded == 0 {
		fmt.Fprintf(a.stderr, "flint: the guest loaded no kernel modules (%s): a driver it needs (%s) may be missing from the kernel; check its configuration, or give its modules with --modules DIR\n",
			g.source.what, strings.Join(g.wantedModules(&cfg), ", "))
	}
	if cfg.Timing {
		fmt.Fprintf(a.stderr, "flint: timing: boot-to-init=%v command=%v total=%v\n", res.BootToInit, res.CommandTime, res.Total)
	}
	info := verdict.RunInfo{Kernel: kver, Command: argv, Started: vmm.ProcessStart(),
		BootToInit: res.BootToInit, CommandTime: res.CommandTime, Total: res.Total}
	if err := out.write(verdict.NewReport(info, res.Outcome, res.Verdict)); err != nil {
		fmt.Fprintln(a.stderr, "flint: "+err.Error())
		if res.Verdict.Code == 0 {
			a.code = verdict.CodeFlintFailed
			return nil
		}
	}
	a.code = res.Verdict.Code
	return nil
}

// kernelRelease is the release of the kernel image: from the image itself
// (a bzImage's setup header, an ELF vmlinux's banner), else from the build
// tree's include/config/kernel.release when there is a tree.
func kernelRelease(image []byte, tree string) (string, error) {
	r, err := boot.ImageRelease(image)
	if err == nil || tree == "" {
		return r, err
	}
	r, terr := boot.ReadReleaseFile(filepath.Join(tree, initramfs.ReleasePath))
	if terr != nil {
		return "", fmt.Errorf("%v; %v", err, terr)
	}
	return r, nil
}

// releaseTree is the build tree whose kernel.release may name the
// kernel's release: the one around the kernel, or --modules when it is one.
func (g *guest) releaseTree() string {
	if g.buildTree != "" {
		return g.buildTree
	}
	if g.modules != "" && g.modules != builtinModules && initramfs.IsBuildTree(g.modules) {
		return g.modules
	}
	return ""
}

// stdinIsPipe reports whether the command gets Flint's stdin: when it is
// not a terminal (a pipe, a file, /dev/null).
func (a *app) stdinIsPipe() bool {
	if a.stdin == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(a.stdin.Fd()), unix.TCGETS)
	return err != nil
}

// sameFile reports whether two writers are one open file or the same
// file (flint ... >log 2>&1, 2>&1 | tee): the command's stdout and stderr
// then share one pipe, as on the host, and keep the order they were
// written in.
func sameFile(w1, w2 io.Writer) bool {
	f1, ok1 := w1.(*os.File)
	f2, ok2 := w2.(*os.File)
	if !ok1 || !ok2 {
		return false
	}
	s1, err1 := f1.Stat()
	s2, err2 := f2.Stat()
	return err1 == nil && err2 == nil && os.SameFile(s1, s2)
}

// reportFiles are --report and --junit, opened before the VM starts: the
// system-call filter allows no open afterwards. created says which of them
// this run created (discard removes those).
type reportFiles struct {
	json, junit *os.File
	created     [2]bool
}

func openReports(jsonPath, junitPath string) (*reportFiles, error) {
	r := &reportFiles{}
	open := func(flag, p string) (*os.File, bool, error) {
		if p == "" {
			return nil, false, nil
		}
		// First as a new file, to know this run created it.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			return f, true, nil
		}
		// O_NONBLOCK: a FIFO with no reader is an error at once, not a hang.
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o644)
		if err != nil {
			return nil, false, usagef("--%s: %v", flag, unwrapPathError(err))
		}
		return f, false, nil
	}
	var err error
	if r.json, r.created[0], err = open("report", jsonPath); err != nil {
		return nil, err
	}
	if r.junit, r.created[1], err = open("junit", junitPath); err != nil {
		r.discard()
		return nil, err
	}
	return r, nil
}

// discard closes the files, removing those this run created while they
// are empty: the run failed before its report.
func (r *reportFiles) discard() {
	for i, f := range []*os.File{r.json, r.junit} {
		if f != nil && r.created[i] {
			vmm.RemoveIfEmpty(f)
		}
	}
	r.close()
}

func (r *reportFiles) write(rep *verdict.Report) error {
	var errs []error
	if r.json != nil {
		errs = append(errs, wrapWrite("--report", verdict.WriteJSON(r.json, rep)))
	}
	if r.junit != nil {
		errs = append(errs, wrapWrite("--junit", verdict.WriteJUnit(r.junit, rep)))
	}
	return errors.Join(errs...)
}

func wrapWrite(flag string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", flag, err)
}

func (r *reportFiles) close() {
	for _, f := range []*os.File{r.json, r.junit} {
		if f != nil {
			f.Close()
		}
	}
}

// defaultPath is the command's PATH in the initramfs's own root.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// commandEnv is the command's environment in the guest: in the host's
// shared root the host's PATH (the same programs are found), else
// defaultPath; HOME (guestHome) and TERM; then the --env entries, each
// replacing a variable of the same name.
func commandEnv(hostRoot bool, extra []string) []string {
	p := defaultPath
	if hostRoot {
		if hp := os.Getenv("PATH"); hp != "" && !strings.ContainsRune(hp, 0) {
			p = hp
		}
	}
	env := []string{"PATH=" + p, "HOME=" + guestHome(hostRoot, os.Geteuid(), os.Getenv("HOME")), "TERM=dumb"}
	for _, kv := range extra {
		env = setEnv(env, kv)
	}
	return env
}

// guestHome is the command's HOME: /root (the command runs as root),
// except in the host's shared root when flint is not root. virtio-fs
// then serves the host's files as flint's user, who cannot read a 0700
// /root, so tools that read ~/.gitconfig or write ~/.cache would fail;
// the host's own HOME, which that user can read, serves instead when it
// is a clean absolute path the guest does not mount over (guestOwnDir).
func guestHome(hostRoot bool, euid int, hostHome string) string {
	if hostRoot && euid != 0 && filepath.IsAbs(hostHome) && filepath.Clean(hostHome) == hostHome &&
		hostHome != "/" && !strings.ContainsRune(hostHome, 0) && guestOwnDir(hostHome) == "" {
		return hostHome
	}
	return "/root"
}

// setEnv returns env with kv (NAME=VALUE) in place of any entry for NAME.
func setEnv(env []string, kv string) []string {
	prefix := kv[:strings.IndexByte(kv, '=')+1]
	return append(slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, prefix) }), kv)
}

// parseEnv turns --env values into NAME=VALUE entries: NAME=VALUE as
// given, a bare NAME with the host's value (lookup), or nothing when the
// host has none, as `docker run -e NAME` does. A later entry for a name
// replaces an earlier one. A name must be a shell variable's (letters,
// digits, underscores, not starting with a digit): the guest's shell
// could not use another; a NUL cannot be passed at all.
func parseEnv(vals []string, lookup func(string) (string, bool)) ([]string, error) {
	var env []string
	for _, v := range vals {
		name, value, given := strings.Cut(v, "=")
		if !validEnvName(name) {
			return nil, usagef("--env %q: %q is not a variable name (letters, digits and _, not starting with a digit)", v, name)
		}
		if !given {
			hv, ok := lookup(name)
			if !ok {
				continue
			}
			value = hv
		}
		if strings.ContainsRune(value, 0) {
			return nil, usagef("--env %q: the value holds a NUL byte", name)
		}
		env = setEnv(env, name+"="+value)
	}
	return env, nil
}

func validEnvName(s string) bool {
	for i, r := range s {
		if !(r == '_' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return s != ""
}
