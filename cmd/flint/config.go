package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
	"github.com/flintvm/flint/vmm"
)

// maxConfigSize bounds a --config file.
const maxConfigSize = 1 << 20

// loadConfigFile reads and strictly decodes a Firecracker-style config file.
func loadConfigFile(path string) (*configs.VMConfig, error) {
	b, err := readInput("--config", path, maxConfigSize)
	if err != nil {
		return nil, err
	}
	fc, err := configs.DecodeVMConfig(b)
	if err != nil {
		return nil, usagef("--config %s: %v", configs.Shown(path), err)
	}
	return &fc, nil
}

// readKernel reads the kernel file at path, named by flag, as boot.ReadKernel
// does: a bzImage whole, an ELF vmlinux as a compact image of its headers,
// loadable segments and notes (a vmlinux with debug info may be GiBs; its
// debug sections are never read), either at most maxKernelSize bytes. Every
// kernel Flint boots is read here, however it was named: --kernel, a config
// file's or the API's boot-source.kernel_image_path, flint firecracker's.
// A problem is a usageError naming flag, the file and what is wrong.
func readKernel(flag, path string) ([]byte, error) {
	return readInputWith(flag, path, func(path string) ([]byte, error) {
		return hostfile.ReadInputAt(path, func(r io.ReaderAt, size int64) ([]byte, error) {
			if size == 0 {
				return nil, fmt.Errorf("%s: kernel: the file is empty", path)
			}
			b, err := boot.ReadKernel(r, size, maxKernelSize)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return b, nil
		})
	})
}

// buildConfig turns a VM description into a vmm.Config: the values of fc
// (a --config file or the API's configuration; nil for flags alone), then
// every flag given on the command line on top. src names fc in errors
// ("--config vm.json"). It reads the kernel and initrd and opens the log
// file; release closes what it opened (call it after the VM ends or on
// error paths that drop the config). Every error is a usageError.
//
// Which flag overrides which key:
//
//	--kernel      boot-source.kernel_image_path
//	--initrd      boot-source.initrd_path
//	--cmdline     boot-source.boot_args
//	--cpus        machine-config.vcpu_count
//	--memory      machine-config.mem_size_mib
//	--log-level   logger.level
//	--console     flint.console
//	--exit-marker flint.exit_marker
//	--timeout     flint.timeout
//	--timing      flint.timing (set to true)
//	--net         adds interfaces after network-interfaces (never replaces)
//
// vsock and entropy have no flag: they come from the config only.
//
// flagKernel, when not nil, is the --kernel file already read (API mode
// reads it before it listens, checkAPIFlags): it is what boots, not the
// file read again.
func buildConfig(c *cli.Context, fc *configs.VMConfig, src string, flagKernel []byte) (cfg vmm.Config, release func(), err error) {
	release = func() {}
	// fromFlag reports whether the flag's value wins over fc.
	fromFlag := func(name string) bool { return fc == nil || c.IsSet(name) }
	key := func(k string) string { return src + ": " + k }
	cfg = vmm.Config{
		Cmdline:       c.String("cmdline"),
		CPUs:          c.Int("cpus"),
		MemoryMiB:     c.Int("memory"),
		ExitMarker:    c.String("exit-marker"),
		Timeout:       c.Duration("timeout"),
		HandleSignals: true,
		Timing:        c.Bool("timing"),
		MMIOCmdline:   c.Bool("mmio-cmdline"),
	}
	fv, err := checkFlagValues(c)
	if err != nil {
		return cfg, release, err
	}
	cfg.KernelEntry, cfg.ConsoleLimit = fv.entry, fv.consoleLimit
	kernel, kernelFlag := c.String("kernel"), "--kernel"
	initrd, initrdFlag := c.String("initrd"), "--initrd"
	console, consoleFlag := c.String("console"), "--console"
	var logger *configs.Logger
	if fc != nil {
		if fc.BootSource != nil {
			b := fc.BootSource
			if !fromFlag("kernel") {
				kernel, kernelFlag = b.KernelImagePath, key("boot-source.kernel_image_path")
			}
			if !fromFlag("initrd") {
				initrd, initrdFlag = b.InitrdPath, key("boot-source.initrd_path")
			}
			if !fromFlag("cmdline") && b.BootArgs != "" {
				cfg.Cmdline = b.BootArgs
			}
		}
		if !fromFlag("cpus") {
			cfg.CPUs = fc.MachineConfig.VCPUCount
		}
		if !fromFlag("memory") {
			cfg.MemoryMiB = fc.MachineConfig.MemSizeMiB
		}
		if f := fc.Flint; f != nil {
			if !fromFlag("console") && f.Console != "" {
				console, consoleFlag = f.Console, key("flint.console")
			}
			if !fromFlag("exit-marker") {
				cfg.ExitMarker = f.ExitMarker
			}
			if !fromFlag("timeout") {
				cfg.Timeout = time.Duration(f.Timeout)
			}
			cfg.Timing = cfg.Timing || f.Timing
		}
		if cfg.Drives, err = driveConfigs(fc, src); err != nil {
			return cfg, release, err
		}
		nets, err := fc.NetInterfaces()
		if err != nil {
			return cfg, release, usagef("%s: %v", src, err)
		}
		cfg.Net = nets
		cfg.Vsock, cfg.Entropy = vsockEntropy(fc)
		logger = fc.Logger
		if fc.Metrics != nil {
			cfg.MetricsPath = fc.Metrics.MetricsPath
		}
	}
	if kernel == "" {
		return cfg, release, usagef("--kernel is required (or --config with boot-source.kernel_image_path, or --api-sock)")
	}
	if err := checkRanges(&cfg); err != nil {
		return cfg, release, err
	}
	con, err := vmm.ParseConsole(console)
	if err != nil {
		return cfg, release, usagef("%s: %v", consoleFlag, err)
	}
	cfg.Console = con
	cfg.Net = append(cfg.Net, fv.nets...)
	if err := uniqueMACs(cfg.Net); err != nil {
		return cfg, release, err
	}
	if kernelFlag == "--kernel" && flagKernel != nil {
		cfg.Kernel = flagKernel
	} else if cfg.Kernel, err = readKernel(kernelFlag, kernel); err != nil {
		return cfg, release, err
	}
	if initrd != "" {
		if cfg.Initrd, err = readInput(initrdFlag, initrd, uint64(cfg.MemoryMiB)<<20); err != nil {
			return cfg, release, err
		}
	}
	if err := cfg.Validate(); err != nil {
		if be := (*boot.Error)(nil); errors.As(err, &be) {
			// The kernel's contents (not a bzImage, a truncated
			// one) or what it needs (RAM, an entry path): name
			// the flag or key and the file, as readKernel does.
			return cfg, release, usagef("%s: %s: %v", kernelFlag, configs.Shown(kernel), err)
		}
		return cfg, release, usagef("%v", err)
	}
	levelFlag := ""
	if fromFlag("log-level") {
		levelFlag = c.String("log-level")
	}
	log, lf, err := newLogger(logger, levelFlag, src)
	cfg.Log = log
	if lf != nil {
		// Run keeps it once the guest starts; closed before, empty, it
		// goes if this run created it.
		cfg.Outputs = append(cfg.Outputs, lf)
		release = func() { lf.Close() }
	}
	return cfg, release, err
}

// flagValues are the values checkFlagValues reads from flags alone.
type flagValues struct {
	entry        boot.EntryPath // "" for auto
	consoleLimit int64          // vmm.Config.ConsoleLimit
	nets         []configs.NetInterface
}

// checkFlagValues checks the `flint run` flags whose values can be judged
// without a config (a config's own values are checked where it is
// decoded): the ranges of --cpus, --memory and --timeout, --cmdline,
// --kernel-entry, --console, --console-limit, each --net and --log-level.
// buildConfig starts with it; `flint run --api-sock` without --config runs
// it before it listens, so a bad flag is refused at once instead of
// failing the client's InstanceStart.
func checkFlagValues(c *cli.Context) (fv flagValues, err error) {
	ranged := vmm.Config{CPUs: c.Int("cpus"), MemoryMiB: c.Int("memory"), Timeout: c.Duration("timeout"), Cmdline: c.String("cmdline")}
	if err := checkRanges(&ranged); err != nil {
		return fv, err
	}
	switch e := c.String("kernel-entry"); e {
	case "auto":
	case string(boot.EntryPVH), string(boot.EntryLinux64):
		fv.entry = boot.EntryPath(e)
	default:
		return fv, usagef("--kernel-entry %q: want auto, pvh or linux64", e)
	}
	if _, err := vmm.ParseConsole(c.String("console")); err != nil {
		return fv, usagef("--console: %v", err)
	}
	switch lim := c.Int64("console-limit"); {
	case lim < 0 || lim > math.MaxInt64>>20:
		return fv, usagef("--console-limit %d: want 0 (no limit) to %d MiB", lim, int64(math.MaxInt64>>20))
	case lim == 0:
		fv.consoleLimit = -1
	default:
		fv.consoleLimit = lim << 20
	}
	for _, spec := range c.StringSlice("net") {
		n, err := configs.ParseNetFlag(spec)
		if err != nil {
			return fv, usageError{err.Error()}
		}
		fv.nets = append(fv.nets, n)
	}
	if _, err := parseLevel(c.String("log-level")); err != nil {
		return fv, err
	}
	return fv, nil
}

// uniqueMACs refuses two interfaces with one MAC (configs checks a
// config's own interfaces; this also covers --net and the mix): the
// guest's NICs would share the address.
func uniqueMACs(nets []configs.NetInterface) error {
	name := func(n configs.NetInterface) string {
		if n.ID != "" {
			return fmt.Sprintf("interface %q", n.ID)
		}
		return "--net tap=" + n.TAP
	}
	seen := map[string]configs.NetInterface{}
	for _, n := range nets {
		if n.MAC == nil {
			continue
		}
		if first, ok := seen[n.MAC.String()]; ok {
			return usagef("%s: mac %s is %s's too: each interface needs its own MAC", name(n), n.MAC, name(first))
		}
		seen[n.MAC.String()] = n
	}
	return nil
}

// driveConfigs maps the config's drives to vmm's, with their transports
// from the "flint" section, and checks each with vmm's rules (a drive_id
// is also the disk's serial number, so it is shorter than configs allows).
func driveConfigs(fc *configs.VMConfig, src string) ([]vmm.DriveConfig, error) {
	var out []vmm.DriveConfig
	for i, d := range fc.Drives {
		dc := vmm.DriveConfig{ID: d.DriveID, Path: d.PathOnHost, ReadOnly: d.IsReadOnly, Root: d.IsRootDevice,
			CacheType: d.CacheType, Transport: string(fc.DriveTransport(d.DriveID)),
			Packed: fc.DrivePacked(d.DriveID), RateLimit: vmm.RateLimitConfig(d.RateLimiter)}
		if d.IsRootDevice {
			// Firecracker reads partuuid only for the root device
			// and ignores it on any other drive (its API docs); vmm
			// refuses one there, so a data drive's is dropped.
			dc.PartUUID = d.PartUUID
		}
		if err := dc.Validate(); err != nil {
			return nil, usagef("%s: drives[%d]: %v", src, i, err)
		}
		// The image must exist and be a regular file or block device
		// before any VM resource exists (a missing one is exit 2 naming
		// the key, not a failure after /dev/kvm is open). configs checks
		// with stat, which never blocks: virtio/blk's open of a FIFO
		// would (in API mode under the server's lock).
		if err := d.CheckFile(fmt.Sprintf("drives[%d]", i)); err != nil {
			return nil, usagef("%s: %v", src, err)
		}
		out = append(out, dc)
	}
	return out, nil
}

// vsockEntropy maps the config's vsock and entropy sections (nil when
// absent) with their transports from the "flint" section.
func vsockEntropy(fc *configs.VMConfig) (*vmm.VsockConfig, *vmm.EntropyConfig) {
	var v *vmm.VsockConfig
	var e *vmm.EntropyConfig
	if fc.Vsock != nil {
		v = &vmm.VsockConfig{GuestCID: fc.Vsock.GuestCID, UDSPath: fc.Vsock.UDSPath, Transport: string(fc.VsockTransport())}
	}
	if fc.Entropy != nil {
		e = &vmm.EntropyConfig{RateLimit: vmm.RateLimitConfig(fc.Entropy.RateLimiter), Transport: string(fc.EntropyTransport())}
	}
	return v, e
}

// checkRanges checks the flag-shaped values (a config file's are already
// within its narrower ranges).
func checkRanges(cfg *vmm.Config) error {
	if cfg.CPUs < 1 || cfg.CPUs > vmm.MaxCPUs {
		return usagef("--cpus %d: must be between 1 and %d", cfg.CPUs, vmm.MaxCPUs)
	}
	if cfg.MemoryMiB < vmm.MinMemoryMiB || cfg.MemoryMiB > vmm.MaxMemoryMiB {
		return usagef("--memory %d: must be between %d and %d MiB", cfg.MemoryMiB, vmm.MinMemoryMiB, vmm.MaxMemoryMiB)
	}
	if cfg.Timeout < 0 {
		return usagef("--timeout %v: must not be negative", cfg.Timeout)
	}
	if strings.IndexByte(cfg.Cmdline, 0) >= 0 {
		return usagef("--cmdline: contains a NUL byte")
	}
	return nil
}

// newLogger builds Flint's logger: to l's log_path (appended) or stderr, at
// levelFlag when given, else l's level (Info when l has none, as in
// Firecracker), else, without l, warn. l's show_level and show_log_origin
// choose the level and source attributes. The log file, when there is
// one, is returned to be closed (vmm.OutputFile: an empty one this run
// created goes unless the guest started).
func newLogger(l *configs.Logger, levelFlag, src string) (*slog.Logger, *vmm.OutputFile, error) {
	var level slog.Level
	var err error
	switch {
	case levelFlag != "":
		level, err = parseLevel(levelFlag)
	case l != nil:
		level = l.SlogLevel()
	default:
		level = slog.LevelWarn
	}
	if l == nil {
		l = &configs.Logger{ShowLevel: true}
	}
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer = os.Stderr
	var lf *vmm.OutputFile
	if l.LogPath != "" {
		if lf, err = vmm.OpenOutput(l.LogPath); err != nil {
			return nil, nil, usagef("%s: logger.log_path: %s", src, fileError(l.LogPath, err))
		}
		w = lf
	}
	return slog.New(l.Handler(w, level)), lf, nil
}

// vmExitCode reports a vmm.New failure: exit code 2 for the user's input,
// 1 otherwise.
func vmExitCode(err error, stderr io.Writer) int {
	fmt.Fprintln(stderr, "flint: "+oneLine(err.Error()))
	var ce *vmm.ConfigError
	if errors.As(err, &ce) {
		return vmm.ExitUsage
	}
	return vmm.ExitVMMErr
}
