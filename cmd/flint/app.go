package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
	"github.com/flintvm/flint/internal/jail"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/vmm"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = ""

// defaultCmdline is used when the user gives no --cmdline: the serial
// console on COM1, reboot through the keyboard controller (which ends the
// VM), and a reboot one second after a panic so a crashed guest never hangs
// a CI job (use --exit-marker to tell a panic from success).
const defaultCmdline = "console=ttyS0 reboot=k panic=1"

// usageError is bad input from the user: exit code 2, one line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// launcher runs a VM and returns the process exit code. Tests substitute it.
type launcher func(cfg vmm.Config, stderr io.Writer) int

type app struct {
	cli    *cli.App
	stderr io.Writer
	code   int
	// args is the command line being run, for afterDashDash.
	args []string
	// newVM builds a VM in --api-sock mode (tests substitute it).
	newVM func(vmm.Config) (machine, error)
	// apiStop, when closed, ends an --api-sock wait for InstanceStart
	// (tests; flint itself waits for a signal).
	apiStop <-chan struct{}
	// installFilter installs the seccomp filter once setup is done, with
	// the options the VM's config derives (vmm.Config.SeccompOptions) and
	// the flags' mode (seccomp.InstallWith; tests that drive the CLI
	// in-process record them instead: a filter would end the test binary).
	installFilter func(seccomp.Options) error
	// launchCmd runs a command-mode VM (tests substitute it); stdin is
	// the command's input when it is not a terminal.
	launchCmd commandLauncher
	stdin     *os.File
	// childOfJail and launchJail are jail.Child and jail.Launch (tests
	// substitute them); jailChecked, jailDir and jailChild remember
	// childOfJail's answer (jail.go).
	childOfJail func() (*os.File, bool, error)
	launchJail  func(jail.Spec, []string) (int, error)
	jailChecked bool
	jailDir     *os.File
	jailChild   bool
}

func newApp(stdout, stderr io.Writer, launch launcher) *app {
	a := &app{stderr: stderr, newVM: newMachine, installFilter: seccomp.InstallWith, launchCmd: launchCommand, stdin: os.Stdin,
		childOfJail: childOfJail, launchJail: jail.Launch}
	a.cli = &cli.App{
		Name:      "flint",
		Usage:     "a lightweight KVM microVM monitor",
		Writer:    stdout,
		ErrWriter: stderr,
		// --net values contain commas; each flag is one interface.
		DisableSliceFlagSeparator: true,
		// urfave/cli adds -h/--help itself only when it adds its own help
		// command; flint has its own (helpCommand).
		Flags:          []cli.Flag{cli.HelpFlag},
		OnUsageError:   onUsageError,                 // and every command's: see quietUsage
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors
		Commands: []*cli.Command{
			runCommand(a, launch),
			firecrackerCommand(a, launch),
			netBackendCommand(a),
			{
				Name:  "version",
				Usage: "print Flint's version",
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, "flint", version())
					return nil
				},
			},
			helpCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q (try: flint help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	quietUsage(a.cli.Commands)
	nameCommands(a.cli.Commands)
	refuseRepeatedFlags(a.cli.Commands, func() []string { return a.args })
	return a
}

// run parses args and runs; it returns the process exit code. Errors are
// printed as one line.
func (a *app) run(args []string) int {
	args = firecrackerArgs(args) // run as "firecracker": flint firecracker
	a.args = args
	err := a.cli.Run(args)
	if err == nil {
		return a.code
	}
	var ec exitCode
	if errors.As(err, &ec) { // the jail launcher: the jailed flint's code
		if ec.msg != "" {
			fmt.Fprintln(a.stderr, ec.msg)
		}
		return ec.code
	}
	msg := strings.TrimSpace(strings.SplitN(err.Error(), "\n", 2)[0])
	if topic, ok := strings.CutPrefix(msg, "No help topic for '"); ok {
		// --help with an argument (`flint run --help extra`): urfave/cli
		// took it for a command to describe.
		msg = fmt.Sprintf("no help for %q (try: flint help)", strings.TrimSuffix(topic, "'"))
	}
	fmt.Fprintln(a.stderr, "flint: "+msg)
	// Launch failures come back as a.code, never as an error: every error
	// here is the user's input (flag parsing, a file, a value out of range).
	return vmm.ExitUsage
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

func runCommand(a *app, launch launcher) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "boot a Linux kernel in a new microVM",
		UsageText: "flint run {--kernel PATH | --config FILE | --api-sock PATH} [--initrd PATH] [--cmdline STR] [--cpus N] [--memory MiB] [--console stdio|stderr|none|file:PATH] [--net tap=NAME,...]...\n" +
			"flint run --kernel PATH [--modules DIR] [--fail-on LIST] [--timeout D] [--idle-timeout D] [--report FILE] [--junit FILE] [flags] -- CMD [ARGS...]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "a Firecracker-style JSON config file (see configs/examples); flags given on the command line override its values"},
			&cli.StringFlag{Name: "api-sock", Usage: "serve Firecracker's REST API on this unix socket; without --config, wait for the client to configure the VM and send InstanceStart"},
			&cli.StringFlag{Name: "kernel", Usage: "kernel to boot: a bzImage or an ELF vmlinux, told apart by the file (required unless --config or --api-sock gives it)"},
			&cli.StringFlag{Name: "kernel-entry", Usage: "an ELF vmlinux's entry path: pvh (its PVH note; 32-bit, hvm_start_info), linux64 (the 64-bit Linux boot protocol with a zero page) or auto (pvh when the note is there)", Value: "auto"},
			&cli.StringFlag{Name: "initrd", Usage: "initramfs to load"},
			&cli.StringFlag{Name: "cmdline", Usage: "kernel command line (in command mode: appended to command mode's own)", Value: defaultCmdline, DefaultText: defaultCmdline},
			&cli.IntFlag{Name: "cpus", Usage: fmt.Sprintf("vCPUs (1-%d)", vmm.MaxCPUs), Value: 1},
			&cli.IntFlag{Name: "memory", Usage: "guest memory in MiB", Value: 256},
			&cli.StringFlag{Name: "console", Usage: "serial console: stdio, stderr (output only), none or file:PATH; in command mode the kernel log, default none (stdio means stderr)", Value: "stdio"},
			&cli.Int64Flag{Name: "console-limit", Usage: "MiB a file: console may write before the rest of the guest's output is dropped (0: no limit)", Value: vmm.DefaultConsoleLimit >> 20},
			&cli.StringSliceFlag{Name: "net", Usage: "virtio-net interface bridged to a host TAP (repeatable): " +
				"tap=NAME[,mac=MAC][,transport=pci|mmio][,mtu=N][,mrg_rxbuf=on|off][,tso=on|off][,csum=on|off][,ufo=on|off][,indirect=on|off][,event_idx=on|off][,packed=on|off][,queues=N][,rx_irq_gap=DURATION (default 50us)][,tx_irq_gap=DURATION (default 0)][,irq_resend=DURATION (default 0)][,poll=DURATION (default 0)][,ip=CIDR (command mode: the guest's address)]"},
			&cli.StringFlag{Name: "exit-marker", Usage: "stop the VM with exit code 0 when the console prints this string; a guest that resets or powers off before printing it gives exit code 4"},
			&cli.DurationFlag{Name: "timeout", Usage: "stop the VM with exit code 3 (124 in command mode) after this long (e.g. 60s); 0 means no limit"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (logs go to stderr)", Value: "warn"},
			&cli.BoolFlag{Name: "timing", Usage: "print boot timing (first guest I/O, first console byte) to stderr on exit"},
			&cli.BoolFlag{Name: "mmio-cmdline", Usage: "also describe virtio-mmio devices with virtio_mmio.device= on the kernel command line (kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and no ACPI)"},
		}, append(seccompFlags(" (not with command mode)"), commandFlags()...)...),
		Action: func(c *cli.Context) error {
			if err := refuseEmpty(c, "kernel", "config", "api-sock", "initrd", "exit-marker", "log-level", "jail"); err != nil {
				return err
			}
			cmd, dd := dashDash(c, a.args)
			if dd && len(cmd) == 0 {
				// Not a plain boot: the command was forgotten.
				return usagef("run: no command after -- (flint run --kernel K [flags] -- CMD [ARGS...])")
			}
			if len(cmd) == 0 {
				if err := noArgs(c); err != nil {
					return err
				}
				if err := checkPlainRun(c); err != nil {
					return err
				}
			}
			before, err := a.seccompHook(c)
			if err != nil {
				return err
			}
			if len(cmd) > 0 {
				return a.runCommandMode(c, cmd, before)
			}
			if sock := c.String("api-sock"); sock != "" {
				// Every VM the API mode builds installs the filter as it starts.
				newVM := a.newVM
				a.newVM = func(cfg vmm.Config) (machine, error) {
					cfg.BeforeRun = before
					return newVM(cfg)
				}
				return a.runAPI(c, sock)
			}
			cfg, release, err := runConfig(c)
			defer release()
			if err != nil {
				return err
			}
			cfg.BeforeRun = before
			a.code = launch(cfg, a.stderr)
			return nil
		},
	}
}

// runConfig turns `flint run` flags, and the --config file when given,
// into a vmm.Config, reading the kernel and initrd. Every problem is a
// usageError naming the flag or the file's key.
func runConfig(c *cli.Context) (vmm.Config, func(), error) {
	var fc *configs.VMConfig
	src := ""
	if p := c.String("config"); p != "" {
		var err error
		if fc, err = loadConfigFile(p); err != nil {
			return vmm.Config{}, func() {}, err
		}
		src = "--config " + configs.Shown(p)
	}
	return buildConfig(c, fc, src, nil)
}

// maxKernelSize bounds the kernel bytes Flint holds (readKernel): a
// bzImage's whole file (tens of MiB), an ELF vmlinux's loadable segments
// and notes (30-60 MiB), whatever the size of the vmlinux file around them
// (its debug info is never read).
const maxKernelSize = 512 << 20

// readInput reads a regular file of at most limit bytes. It never blocks
// on the path (a FIFO is an error at once: internal/hostfile), which
// matters in API mode, where InstanceStart reads under the server's lock.
func readInput(flag, path string, limit uint64) ([]byte, error) {
	return readInputWith(flag, path, func(path string) ([]byte, error) {
		return hostfile.ReadInput(path, int64(min(limit, math.MaxInt64)))
	})
}

// readInputWith reads the file at path with read (which must not block
// on the path either); an empty path, or read's error, is a usageError
// naming flag.
func readInputWith(flag, path string, read func(path string) ([]byte, error)) ([]byte, error) {
	if path == "" {
		return nil, usagef("%s: empty path", flag)
	}
	b, err := read(path)
	if err != nil {
		return nil, usagef("%s: %s", flag, fileError(path, err))
	}
	return b, nil
}

// fileError is the message of err, an error about the file name, on one
// line: unwrapPathError's, with name quoted also where err's own text
// (hostfile's, boot's) writes it as it is.
func fileError(name string, err error) string {
	msg := unwrapPathError(err).Error()
	if q := configs.Shown(name); q != name {
		msg = strings.ReplaceAll(msg, name, q)
	}
	return msg
}

// unwrapPathError writes an *os.PathError as "<file>: <problem>", the
// file quoted when it has a control character (configs.Shown), so that
// the message stays one line.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", configs.Shown(pe.Path), pe.Err)
	}
	return err
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, usagef("--log-level %q: want debug, info, warn or error", s)
}

// launchVM builds and runs the VM; it is the launcher main uses.
func launchVM(cfg vmm.Config, stderr io.Writer) int {
	m, err := vmm.New(cfg)
	if err != nil {
		return vmExitCode(err, stderr)
	}
	return runMachine(m, cfg, stderr)
}

// runMachine runs a built VM to its end, closes it, and returns the exit
// code, reporting how the VM ended on stderr.
func runMachine(m machine, cfg vmm.Config, stderr io.Writer) int {
	res := m.Run()
	m.Close()
	if res.Err != nil {
		fmt.Fprintln(stderr, "flint: "+oneLine(res.Err.Error()))
	}
	if cfg.Timing {
		fmt.Fprintf(stderr, "flint: timing: first-guest-io=%v first-console-byte=%v stop=%v (%s)\n",
			res.FirstGuestIO, res.FirstConsoleByte, time.Since(vmm.ProcessStart()), res.Reason)
	}
	if code := res.ExitCode(); code != vmm.ExitOK {
		fmt.Fprintf(stderr, "flint: VM stopped: %s (exit code %d)\n", res.Reason, code)
		return code
	}
	return vmm.ExitOK
}

// seccompFlags are the seccomp and jail flags of `flint run` and `flint
// net-backend`; jailNote ends --jail's usage.
func seccompFlags(jailNote string) []cli.Flag {
	return append(jailFlags(jailNote),
		&cli.StringFlag{Name: "seccomp", Value: "kill",
			Usage: "system-call filter installed once the VM (or backend) is set up: kill (a call outside the allowlist kills flint with SIGSYS), log (allowed, and logged by the kernel's audit: to find a missing call) or off"},
		&cli.BoolFlag{Name: "no-seccomp", Usage: "no system-call filter (as --seccomp off)"},
	)
}

// seccompHook returns what enters the jail (--jail) and installs the
// filter the flags ask for, to run once setup is done
// (vmm.Config.BeforeRun, ServeNetBackend), or nil. With --jail, in the
// process the user started, it runs the jailed flint instead and returns
// its exit code (jailHook).
func (a *app) seccompHook(c *cli.Context) (func(seccomp.Options) error, error) {
	mode, err := seccomp.ParseMode(c.String("seccomp"))
	if err != nil {
		return nil, usagef("--seccomp %q: want kill, log or off", c.String("seccomp"))
	}
	if c.Bool("no-seccomp") {
		mode = seccomp.Off
	}
	var filter func(seccomp.Options) error
	if mode != seccomp.Off {
		install := a.installFilter
		filter = func(o seccomp.Options) error { o.Mode = mode; return install(o) }
	}
	return a.jailHook(c, filter)
}

// oneLine is msg with its control characters (a line break above all)
// escaped as in Go source (\n), so that an error quoting a name as the
// user wrote it (vmm's "console file: open PATH: ...") prints as the one
// line bad input gets.
func oneLine(msg string) string {
	if strings.IndexFunc(msg, unicode.IsControl) < 0 {
		return msg
	}
	var b strings.Builder
	for _, r := range msg {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
