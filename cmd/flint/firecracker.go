package main

// `flint firecracker`: Firecracker's command line, for orchestrators and
// scripts that start `firecracker --api-sock S --config-file F ...`. The
// same binary acts as this command when it is run under the name
// "firecracker" (a symbolic link; see app.run). Firecracker's flags map
// onto what `flint run` does (the README's table); the ones Flint cannot
// honour yet are refused in one line, as is anything unknown.

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm"
)

// Firecracker's defaults.
const (
	defaultAPISock    = "/run/firecracker.socket"
	defaultInstanceID = "anonymous-instance"
	// firecrackerName is the program name that makes flint act as
	// `flint firecracker`.
	firecrackerName = "firecracker"
)

// fcUnsupported are Firecracker's flags Flint refuses, with why.
var fcUnsupported = map[string]string{
	"seccomp-filter":    "its system-call filter is built in; --no-seccomp turns it off",
	"module":            "its log has no module filter",
	"metadata":          "it has no MMDS",
	"mmds-size-limit":   "it has no MMDS",
	"snapshot-version":  "it has no snapshots",
	"describe-snapshot": "it has no snapshots",
}

func firecrackerCommand(a *app, launch launcher) *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "api-sock", Value: defaultAPISock, Usage: "serve Firecracker's REST API on this unix socket"},
		&cli.BoolFlag{Name: "no-api", Usage: "no API socket: boot the --config-file VM and run it to its end"},
		&cli.StringFlag{Name: "config-file", Usage: "boot this Firecracker JSON config at once (the API then takes post-boot calls)"},
		&cli.StringFlag{Name: "id", Value: defaultInstanceID, Usage: "the instance id GET / reports (1-64 letters, digits or '-')"},
		&cli.StringFlag{Name: "level", Usage: "log level: Error, Warning, Info, Debug, Trace or Off (any case)"},
		&cli.StringFlag{Name: "log-path", Usage: "write the log to this file or FIFO (a FIFO needs a reader)"},
		&cli.BoolFlag{Name: "show-level", Usage: "write each log line's level"},
		&cli.BoolFlag{Name: "show-log-origin", Usage: "write each log line's source file and line"},
		&cli.StringFlag{Name: "metrics-path", Usage: "write metrics to this file or FIFO (a FIFO needs a reader); PUT /metrics is then refused"},
		&cli.BoolFlag{Name: "boot-timer", Usage: "print boot timing (first guest I/O, first console byte) to stderr on exit"},
		&cli.BoolFlag{Name: "no-seccomp", Usage: "no system-call filter"},
		&cli.Int64Flag{Name: "http-api-max-payload-size", Value: api.MaxBodySize, Usage: "the largest API request body, in bytes"},
		&cli.BoolFlag{Name: "enable-pci", Usage: "virtio devices are PCI functions (without it, virtio-mmio devices, as in Firecracker; a config's flint section may choose per device)"},
		&cli.Uint64Flag{Name: "start-time-us", Usage: "accepted and ignored (the jailer's process start time)"},
		&cli.Uint64Flag{Name: "start-time-cpu-us", Usage: "accepted and ignored"},
		&cli.Uint64Flag{Name: "parent-cpu-time-us", Usage: "accepted and ignored"},
		&cli.BoolFlag{Name: "version", Usage: "print Flint's version"},
	}
	for _, name := range slices.Sorted(maps.Keys(fcUnsupported)) {
		if name == "snapshot-version" { // Firecracker's only valueless one of them
			flags = append(flags, &cli.BoolFlag{Name: name, Hidden: true})
			continue
		}
		flags = append(flags, &cli.StringFlag{Name: name, Hidden: true})
	}
	return &cli.Command{
		Name:      "firecracker",
		Usage:     "act as Firecracker's binary: its flags, its API socket (also when flint runs under the name firecracker)",
		UsageText: "flint firecracker [--api-sock PATH | --no-api] [--config-file FILE] [--id ID] [--level L] [--log-path P] [--metrics-path P] [--boot-timer] [--no-seccomp]",
		Flags:     flags,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return a.runFirecracker(c, launch)
		},
	}
}

// fcFlags are the Firecracker flags that matter once they are checked.
type fcFlags struct {
	apiSock, configFile, id string
	noAPI, bootTimer        bool
	noSeccomp               bool
	maxBody                 int64
	logger                  *configs.Logger // nil: no logger flag given
	metricsPath             string
}

// parseFirecracker checks c's flags as Firecracker does (--no-api needs
// --config-file; the instance id's shape; the log level) and refuses the
// ones Flint does not support.
func parseFirecracker(c *cli.Context) (fcFlags, error) {
	for _, name := range slices.Sorted(maps.Keys(fcUnsupported)) {
		if c.IsSet(name) {
			return fcFlags{}, usagef("firecracker: --%s is not supported by flint yet (%s)", name, fcUnsupported[name])
		}
	}
	if err := refuseEmpty(c, "config-file", "level"); err != nil {
		return fcFlags{}, err
	}
	f := fcFlags{apiSock: c.String("api-sock"), configFile: c.String("config-file"), id: c.String("id"),
		noAPI: c.Bool("no-api"), bootTimer: c.Bool("boot-timer"), noSeccomp: c.Bool("no-seccomp"),
		maxBody: c.Int64("http-api-max-payload-size"), metricsPath: c.String("metrics-path")}
	switch {
	case f.noAPI && f.configFile == "":
		return f, usagef("firecracker: --no-api needs --config-file (without the API, nothing else can configure the VM)")
	case f.noAPI && c.IsSet("api-sock"):
		return f, usagef("firecracker: --api-sock and --no-api: give one")
	case !f.noAPI && f.apiSock == "":
		return f, usagef("firecracker: --api-sock: empty path")
	case !validInstanceID(f.id):
		return f, usagef("firecracker: --id %q: Invalid instance ID: want 1 to 64 letters, digits or '-'", f.id)
	case f.maxBody <= 0:
		return f, usagef("firecracker: --http-api-max-payload-size %d: want a positive number of bytes", f.maxBody)
	case c.IsSet("metrics-path") && f.metricsPath == "":
		return f, usagef("firecracker: --metrics-path: empty path")
	case c.IsSet("log-path") && c.String("log-path") == "":
		return f, usagef("firecracker: --log-path: empty path")
	}
	if c.IsSet("level") || c.IsSet("log-path") || c.IsSet("show-level") || c.IsSet("show-log-origin") {
		// configs checks the level as it checks PUT /logger's. The
		// path is taken as it is: a file name may hold any byte but
		// NUL, which no JSON string carries unchanged.
		level, _ := json.Marshal(c.String("level"))
		l, err := configs.DecodeLogger(fmt.Appendf(nil, `{"level": %s}`, level))
		if err != nil {
			return f, usagef("firecracker: --level %q: want one of %s (any case)", c.String("level"), strings.Join(configs.LogLevels, ", "))
		}
		l.LogPath, l.ShowLevel, l.ShowLogOrigin = c.String("log-path"), c.Bool("show-level"), c.Bool("show-log-origin")
		f.logger = &l
	}
	return f, nil
}

// validInstanceID is Firecracker's rule for --id: 1 to 64 ASCII letters,
// digits or '-'.
func validInstanceID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool {
		return !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0
}

// runFirecracker runs `flint firecracker`: the output files are opened
// at once (without blocking: a FIFO with no reader is an error now, not
// a hang), then the VM boots from --config-file, with or without the
// API, or the API waits for a client.
func (a *app) runFirecracker(c *cli.Context, launch launcher) error {
	if c.Bool("version") {
		fmt.Fprintf(c.App.Writer, "Flint v%s\n", apiVersion())
		return nil
	}
	f, err := parseFirecracker(c)
	if err != nil {
		return err
	}
	var runArgs []string // `flint run` flags that express f
	if f.bootTimer {
		runArgs = append(runArgs, "--timing")
	}
	if f.noSeccomp {
		runArgs = append(runArgs, "--no-seccomp")
	}
	rc, err := a.runContext(runArgs...)
	if err != nil {
		return err
	}
	preset := &configs.VMConfig{MachineConfig: configs.DefaultMachineConfig()}
	reqLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	// outputs are kept once the VM runs (--no-api) or the API serves;
	// closed before, an empty one this run created goes (vmm.OutputFile).
	var outputs []*vmm.OutputFile
	defer func() {
		for _, f := range outputs {
			f.Close()
		}
	}()
	if f.logger != nil {
		preset.Logger = f.logger
		if f.logger.LogPath != "" {
			lf, err := vmm.OpenOutput(f.logger.LogPath)
			if err != nil {
				return usagef("firecracker: --log-path: %s", fileError(f.logger.LogPath, err))
			}
			outputs = append(outputs, lf)
			reqLog = slog.New(f.logger.Handler(lf, f.logger.SlogLevel()))
		}
	}
	if f.metricsPath != "" {
		// Opened now to fail now; held open until flint exits, so a
		// FIFO's reader sees one writer throughout. The VM writes
		// through its own descriptor.
		mf, err := vmm.OpenOutput(f.metricsPath)
		if err != nil {
			return usagef("firecracker: --metrics-path: %s", fileError(f.metricsPath, err))
		}
		outputs = append(outputs, mf)
		preset.Metrics = &configs.Metrics{MetricsPath: f.metricsPath}
	}
	var boot *configs.VMConfig
	src := "--config-file " + configs.Shown(f.configFile)
	if f.configFile != "" {
		if boot, err = loadConfigFile(f.configFile); err != nil {
			return usagef("firecracker: %s", strings.Replace(err.Error(), "--config", "--config-file", 1))
		}
		if boot.Logger == nil {
			boot.Logger = preset.Logger // the file's logger section wins, as Firecracker's later update would
		}
		if preset.Metrics != nil {
			if boot.Metrics != nil {
				return usagef("firecracker: --metrics-path and %s's metrics section both name the metrics file (Reinitialization of metrics not allowed.): give one", src)
			}
			boot.Metrics = preset.Metrics
		}
	}
	before, err := a.seccompHook(rc)
	if err != nil {
		return err
	}
	// Firecracker's virtio devices are virtio-mmio devices unless
	// --enable-pci; Flint's default is PCI.
	transport := configs.TransportMMIO
	if c.Bool("enable-pci") {
		transport = configs.TransportPCI
	}
	if f.noAPI {
		fc := withDefaultTransport(*boot, transport)
		cfg, release, err := buildConfig(rc, &fc, src, nil)
		defer release()
		if err != nil {
			return err
		}
		cfg.Keyboard = true // Firecracker's i8042 always has its keyboard
		cfg.BeforeRun = before
		cfg.Outputs = append(cfg.Outputs, outputs...)
		a.code = launch(cfg, a.stderr)
		return nil
	}
	newVM := a.newVM
	a.newVM = func(cfg vmm.Config) (machine, error) {
		cfg.BeforeRun = before
		return newVM(cfg)
	}
	return a.serveAPI(rc, apiRun{sock: f.apiSock, boot: boot, src: src, preset: preset, id: f.id,
		log: reqLog, filtered: before != nil, transport: transport, maxBody: f.maxBody, outputs: outputs})
}

// fillEach returns a copy of m with fill applied to the entry of each
// device in devs (id names it), created when missing.
func fillEach[V, D any](m map[string]V, devs []D, id func(D) string, fill func(*V)) map[string]V {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]V{}
	}
	for _, d := range devs {
		v := out[id(d)]
		fill(&v)
		out[id(d)] = v
	}
	return out
}

// withDefaultTransport returns fc with transport t for every device whose
// transport its "flint" section does not name (t "": fc unchanged). The
// maps of fc's "flint" section are copied, not changed.
func withDefaultTransport(fc configs.VMConfig, t configs.Transport) configs.VMConfig {
	if t == "" {
		return fc
	}
	var f configs.Flint
	if fc.Flint != nil {
		f = *fc.Flint
	}
	f.NetworkInterfaces = fillEach(f.NetworkInterfaces, fc.NetworkInterfaces,
		func(n configs.NetworkInterface) string { return n.IfaceID },
		func(x *configs.FlintNet) { x.Transport = cmp.Or(x.Transport, t) })
	f.Drives = fillEach(f.Drives, fc.Drives,
		func(d configs.Drive) string { return d.DriveID },
		func(x *configs.FlintDrive) { x.Transport = cmp.Or(x.Transport, t) })
	dev := func(have bool, cur *configs.FlintDevice) *configs.FlintDevice {
		if !have || cur != nil && cur.Transport != "" {
			return cur
		}
		return &configs.FlintDevice{Transport: t}
	}
	f.Vsock = dev(fc.Vsock != nil, f.Vsock)
	f.Entropy = dev(fc.Entropy != nil, f.Entropy)
	fc.Flint = &f
	return fc
}

// runContext is a context with `flint run`'s flags at their defaults,
// then args applied: what buildConfig and seccompHook read for a
// command whose own flags are not run's.
func (a *app) runContext(args ...string) (*cli.Context, error) {
	set := flag.NewFlagSet("run", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, fl := range runCommand(a, nil).Flags {
		if err := fl.Apply(set); err != nil {
			return nil, err
		}
	}
	if err := set.Parse(args); err != nil {
		return nil, err
	}
	return cli.NewContext(a.cli, set, nil), nil
}

// firecrackerArgs turns a command line run under the name firecracker
// (argv[0]'s base name, e.g. a symbolic link to flint) into `flint
// firecracker ...`; any other command line is returned as it is.
func firecrackerArgs(args []string) []string {
	if len(args) == 0 || filepath.Base(args[0]) != firecrackerName {
		return args
	}
	return append([]string{args[0], firecrackerName}, args[1:]...)
}
