// Package vmm is Flint's composition root: it builds guest memory, the KVM
// VM and its vCPUs, the I/O and MMIO buses, the platform devices and their
// interrupt wiring; loads the kernel; runs the vCPUs; and turns how the VM
// ended into an exit status. It is the only package that imports kvm
// together with devices, boot and (later) virtio.
package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/boot/acpi"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/devices"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/kvm"
	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/blk"
	"github.com/flintvm/flint/virtio/rng"
	"github.com/flintvm/flint/virtio/vsock"
)

// Limits on the machine's shape.
const (
	MinMemoryMiB = 16
	MaxMemoryMiB = 1 << 20 // 1 TiB
	MaxCPUs      = 254     // APIC ids 0..253 with the IOAPIC's id after them
)

// Config describes one VM. New validates it.
type Config struct {
	Kernel    []byte // the kernel: a bzImage, or a 64-bit ELF vmlinux (boot.ReadKernel's compact image of it)
	Initrd    []byte // optional initramfs
	Cmdline   string // the kernel command line, used as given
	CPUs      int
	MemoryMiB int
	Console   ConsoleSpec
	// KernelEntry forces the entry path: boot.EntryPVH ("pvh") or
	// boot.EntryLinux64 ("linux64"); empty: PVH for an ELF vmlinux with the
	// PVH note, else the 64-bit Linux entry.
	KernelEntry boot.EntryPath
	// ConsoleLimit is how many bytes a "file:" console writes before the
	// rest is dropped (logged once): 0 means DefaultConsoleLimit, a
	// negative value no limit.
	ConsoleLimit int64
	// ExitMarker, when set, ends the VM (status 0) as soon as the console
	// output contains it.
	ExitMarker string
	// Timeout, when positive, ends the VM with ExitTimeout after that long.
	Timeout time.Duration
	// Timing asks the CLI to print boot timing on exit.
	Timing bool
	// HandleSignals stops the VM on SIGINT/SIGTERM/SIGHUP.
	HandleSignals bool
	// Net lists the virtio-net interfaces, each bridged to a host TAP.
	Net []configs.NetInterface
	// Drives lists the virtio-blk drives; the root drive adds root= to
	// the command line (see rootArgs).
	Drives []DriveConfig
	// Vsock, when set, is the virtio-vsock device (vsock.go); Entropy the
	// virtio-rng device (entropy.go).
	Vsock   *VsockConfig
	Entropy *EntropyConfig
	// MetricsPath, when set, is the file that gets one JSON object of
	// counters per flush (every MetricsInterval, on FlushMetrics, and when
	// the VM stops); New opens it (append) before creating the VM.
	MetricsPath string
	// MMIOCmdline adds a virtio_mmio.device=SIZE@BASE:IRQ argument per
	// virtio-mmio device to the command line, for kernels built with
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES that do not read the ACPI DSDT.
	// Off by default: Debian's kernels find the devices through ACPI
	// (LNRO0005) and have no such option, and a kernel with both would
	// probe each device twice (the second probe fails with EBUSY).
	MMIOCmdline bool
	// Keyboard attaches a PS/2 keyboard to the i8042 so SendCtrlAltDel
	// works; Linux's atkbd then binds to it during boot.
	Keyboard bool
	// KVMPath is the KVM device (default /dev/kvm).
	KVMPath string
	Log     *slog.Logger
	// Stdin and Stdout back a "stdio" console (default os.Stdin/os.Stdout).
	Stdin, Stdout *os.File
	// Command, when set, makes this a command-mode machine (command.go):
	// the exit device, the command's stream devices and the verdict's
	// scanner are added, and RunCommand runs it.
	Command *CommandConfig
	// PatchableLimiters gives every drive and interface a rate limiter,
	// unlimited where the config has none, so UpdateDrive and
	// UpdateNetInterface can set one while the VM runs (the API's
	// PATCH). Without it an unlimited device has none (no cost per I/O).
	PatchableLimiters bool
	// BeforeRun, when set, is called by Run once everything is set up,
	// right before the vCPUs start, with the seccomp filter options this
	// VM needs (SeccompOptions; the CLI installs its filter there); an
	// error stops the VM before the guest runs.
	BeforeRun func(seccomp.Options) error
	// Outputs are output files the caller opened for this VM (a log
	// file): Run keeps them, as it keeps the console and metrics files,
	// once the guest is about to start (OutputFile.Keep). Until then an
	// OutputFile that its open created and that is still empty is
	// removed when closed, so a launch that fails leaves none behind.
	Outputs []*OutputFile
}

// Validate checks the parts of c that need no devices: ranges, the console
// spec, and that Kernel is a bzImage or ELF vmlinux Flint can boot in
// MemoryMiB through KernelEntry. New calls it before it creates any VM
// resource.
func (c *Config) Validate() error {
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return fmt.Errorf("cpus %d out of range [1, %d]", c.CPUs, MaxCPUs)
	}
	if c.MemoryMiB < MinMemoryMiB || c.MemoryMiB > MaxMemoryMiB {
		return fmt.Errorf("memory %d MiB out of range [%d, %d]", c.MemoryMiB, MinMemoryMiB, MaxMemoryMiB)
	}
	if len(c.Kernel) == 0 {
		return errors.New("no kernel")
	}
	if err := boot.CheckKernel(c.Kernel, uint64(c.MemoryMiB)<<20, c.KernelEntry); err != nil {
		return err
	}
	if c.Initrd != nil && uint64(len(c.Initrd)) >= uint64(c.MemoryMiB)<<20 {
		return fmt.Errorf("initrd (%d MiB) does not fit in %d MiB of guest memory", len(c.Initrd)>>20, c.MemoryMiB)
	}
	if _, err := ParseConsole(string(c.Console)); c.Console != "" && err != nil {
		return err
	}
	if err := validateDrives(c.Drives); err != nil {
		return err
	}
	if c.Vsock != nil {
		if err := c.Vsock.Validate(); err != nil {
			return err
		}
	}
	if c.Entropy != nil {
		if err := c.Entropy.Validate(); err != nil {
			return err
		}
	}
	taps := map[string]bool{}
	for _, n := range c.Net {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("--net tap=%s: %v", n.TAP, err)
		}
		if taps[n.TAP] {
			return fmt.Errorf("--net tap=%s: the TAP is used twice", n.TAP)
		}
		taps[n.TAP] = true
	}
	return c.checkDeviceCount()
}

// StopReason says why a VM stopped.
type StopReason int

// Ways a VM ends.
const (
	stopNone StopReason = iota
	stopReset
	stopPowerOff
	stopMarker
	stopUser // Ctrl-A x on the console
	stopSignal
	stopTimeout
	stopNoMarker // the guest reset or powered off before printing the exit marker
	stopError
	stopIdle // command mode's idle timeout
)

var stopNames = [...]string{"running", "guest reset", "guest power-off", "exit marker seen", "console quit",
	"signal", "timeout", "guest ended without printing the exit marker", "error", "idle timeout"}

func (r StopReason) String() string { return stopNames[r] }

// Exit codes of `flint run`, documented in the README.
const (
	ExitOK      = 0 // the guest reset or powered off, or the exit marker was seen
	ExitVMMErr  = 1 // Flint failed, or the guest broke the VM (failed entry, internal error)
	ExitUsage   = 2 // bad flags, config, kernel or initrd
	ExitTimeout = 3 // --timeout expired first
	// ExitNoMarker: with an exit marker, the guest reset or powered off
	// without printing it.
	ExitNoMarker = 4
)

// Result is how a VM ended.
type Result struct {
	Reason StopReason
	Err    error // set when Reason is stopError
	Signal os.Signal
	// FirstGuestIO is when the guest first wrote the POST debug port (0x80)
	// and FirstConsoleByte when it first wrote the UART, both relative to
	// the VMM's start; zero if it never did.
	FirstGuestIO, FirstConsoleByte time.Duration
}

// ExitCode maps r to `flint run`'s exit code: 128+N for signal N.
func (r Result) ExitCode() int {
	switch r.Reason {
	case stopReset, stopPowerOff, stopMarker, stopUser:
		return ExitOK
	case stopTimeout:
		return ExitTimeout
	case stopNoMarker:
		return ExitNoMarker
	case stopSignal:
		if s, ok := r.Signal.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return ExitVMMErr
	}
	return ExitVMMErr
}

// Machine is a built VM, ready to Run once.
type Machine struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	sys     *kvm.System
	vm      *kvm.VM
	vcpus   []*kvm.VCPU
	dumps   []vcpuDump       // one per vCPU: SIGUSR1 state dumps (debug.go)
	exits   []vcpuExitCounts // one per vCPU, for metrics and dumps
	metrics *metricsFile     // nil without Config.MetricsPath
	mem     *mem.Memory
	pio     *devices.Bus
	mmio    *devices.Bus
	con     *console
	plat    *platform
	irqs    *irqRouter

	nets                []*netDevice
	drives              []*blk.Device // in attach order, with driveIDs
	driveIDs            []string
	driveTrs            []virtioTransport // the drives' transports, closed before the drives
	vsock               *vsock.Device     // nil without Config.Vsock
	vsockTr             virtioTransport
	rng                 *rng.Device // nil without Config.Entropy
	rngTr               virtioTransport
	virtio              []virtioDev // every virtio device, for dumps (dump.go)
	dumpMu              sync.Mutex  // a device dump holds it; Close sets devicesClosed under it
	devicesClosed       bool
	mmioSlots, pciSlots int
	acpiDevices         []acpi.Device
	pciINTx             []acpi.PCIInterrupt
	cmd                 *commandRun // command mode only

	stopping  atomic.Bool
	stopOnce  sync.Once
	stopped   chan struct{}
	result    Result
	closeOnce sync.Once
}

// processStart approximates the VMM process's start for boot timing: it is
// set during package initialisation, before main runs.
var processStart = time.Now()

// ProcessStart is when the VMM process started (package initialisation).
func ProcessStart() time.Time { return processStart }

// New builds the VM described by cfg: guest memory, KVM VM with in-kernel
// irqchip and PIT, devices, the kernel and initrd in memory, and vCPUs with
// their initial state. On error everything built so far is released.
func New(cfg Config) (_ *Machine, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.KVMPath == "" {
		cfg.KVMPath = "/dev/kvm"
	}
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if err := cfg.Validate(); err != nil {
		return nil, &ConfigError{Err: err}
	}
	m := &Machine{cfg: cfg, log: cfg.Log, start: processStart, stopped: make(chan struct{}),
		pio: devices.NewBus("pio"), mmio: devices.NewBus("mmio")}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if cfg.MetricsPath != "" {
		if m.metrics, err = openMetrics(cfg.MetricsPath); err != nil {
			return nil, &ConfigError{Err: err}
		}
	}
	if m.sys, err = kvm.Open(cfg.KVMPath); err != nil {
		return nil, err
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, err
	}
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return nil, err
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return nil, err
	}
	// Memory slots go in before the irqchip exists: afterwards every slot
	// change waits for a KVM SRCU grace period (milliseconds per call on a
	// 250 Hz host; see BENCHMARKS.md).
	if m.mem, err = mem.New(uint64(cfg.MemoryMiB) << 20); err != nil {
		return nil, err
	}
	for i, r := range m.mem.Regions() {
		if err := m.vm.SetUserMemoryRegion(uint32(i), r.GuestAddr, r.Host()); err != nil {
			return nil, err
		}
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return nil, err
	}
	if err := m.vm.CreatePIT2(); err != nil {
		return nil, err
	}
	if m.con, err = openConsole(cfg.Console, cfg.ConsoleLimit, cfg.Log, cfg.Stdin, cfg.Stdout); err != nil {
		return nil, &ConfigError{Err: err}
	}
	m.irqs = newIRQRouter(m.vm)
	if err := m.addPlatformDevices(); err != nil {
		return nil, err
	}
	if err := m.addNetDevices(); err != nil {
		return nil, err
	}
	if err := m.addDrives(); err != nil {
		return nil, err
	}
	if err := m.addVsock(); err != nil {
		return nil, err
	}
	if err := m.addEntropy(); err != nil {
		return nil, err
	}
	if cfg.Command != nil {
		if err := m.addCommandDevices(); err != nil {
			return nil, err
		}
	}
	entry, err := m.loadKernel()
	if err != nil {
		return nil, err
	}
	if err := m.createVCPUs(entry); err != nil {
		return nil, err
	}
	m.exits = make([]vcpuExitCounts, len(m.vcpus))
	return m, nil
}

// addDrives attaches the drives, root first (so it is /dev/vda), and adds
// the root drive's root= arguments to the kernel command line.
func (m *Machine) addDrives() error {
	ra, err := rootArgs(m.cfg.Drives)
	if err != nil {
		return &ConfigError{Err: err}
	}
	if ra != "" {
		m.cfg.Cmdline = strings.TrimSpace(m.cfg.Cmdline + " " + ra)
	}
	for _, d := range orderDrives(m.cfg.Drives) {
		dev, tr, err := m.addDrive(d)
		if err != nil {
			return err
		}
		m.drives = append(m.drives, dev)
		m.driveIDs = append(m.driveIDs, d.ID)
		m.driveTrs = append(m.driveTrs, tr)
	}
	return nil
}

// ConfigError marks errors caused by the user's input (exit code 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Run starts the vCPUs and the console and blocks until the VM stops and
// every vCPU has left KVM_RUN. It returns how the VM ended; call Close
// afterwards.
func (m *Machine) Run() Result {
	// sigs stays registered until Run returns: a signal that comes once
	// the VM has stopped for another reason (while Run waits for the
	// vCPUs) is left in it for the console's flush, which it ends.
	var sigs chan os.Signal
	if m.cfg.HandleSignals {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
		go func() {
			select {
			case s := <-sigs:
				if !m.stopWithSignal(s) {
					select { // the VM had stopped: the signal is the flush's
					case sigs <- s:
					default:
					}
				}
			case <-m.stopped:
			}
		}()
		m.watchDumpSignal()
	}
	if m.cfg.Timeout > 0 {
		t := time.AfterFunc(m.cfg.Timeout, func() {
			// Where the guest was when time ran out: what a CI log needs.
			m.log.Warn("timeout: the guest did not finish in time; its devices' and vCPUs' state follows", "timeout", m.cfg.Timeout)
			m.DumpState()
			m.stop(stopTimeout, nil)
		})
		defer t.Stop()
	}
	m.startConsoleInput()
	m.startMetrics()
	// GOMAXPROCS is how many of the vCPU threads and device goroutines can run
	// at once: one in a container or cpuset limited to one CPU.
	m.log.Info("starting vCPUs", "vcpus", len(m.vcpus), "gomaxprocs", runtime.GOMAXPROCS(0))
	vcpus := m.vcpus
	m.keepOutputs() // before BeforeRun: a filter it installs may forbid unlink
	if m.cfg.BeforeRun != nil {
		if err := m.cfg.BeforeRun(m.cfg.SeccompOptions()); err != nil {
			m.stop(stopError, err)
			vcpus = nil
		}
	}
	g := newVCPUGroup(len(vcpus))
	for i, v := range vcpus {
		g.run(i, func() { m.runContained(fmt.Sprintf("vCPU %d", v.ID()), func() { m.runVCPU(v) }) })
	}
	<-m.stopped
	g.await(stopWait, rekickEvery, func(i int) { vcpus[i].Kick() }, func(i int, waited time.Duration) {
		id := vcpus[i].ID()
		if !m.exits[id].inKVM.Load() {
			m.log.Error(VCPUStopStuckInFlintMsg+": a device's register access has not returned", "vcpu", id, "waited", waited)
			return
		}
		m.log.Error(VCPUStopStuckMsg+": the kernel (or what virtualizes the CPU under it) does not return it; kicking it again",
			"vcpu", id, "waited", waited)
	})
	// The guest is done with the terminal: it is given back before the
	// wait for the console's reader, so that ^C is a signal again.
	m.con.restoreTerminal()
	m.plat.flush(sigs)
	if m.cfg.ExitMarker != "" && (m.result.Reason == stopReset || m.result.Reason == stopPowerOff) {
		m.result.Reason = stopNoMarker
	}
	m.result.FirstGuestIO, m.result.FirstConsoleByte = m.plat.timing()
	if err := m.FlushMetrics(); err != nil && !errors.Is(err, ErrNoMetrics) {
		m.log.Warn("metrics: final flush", "err", err)
	}
	return m.result
}

// keepOutputs keeps the output files: the guest starts.
func (m *Machine) keepOutputs() {
	if m.con != nil && m.con.file != nil {
		m.con.file.Keep()
	}
	if m.metrics != nil {
		m.metrics.f.Keep()
	}
	for _, f := range m.cfg.Outputs {
		f.Keep()
	}
}

// Stop ends the VM from outside (tests, the API socket): every vCPU leaves
// KVM_RUN and Run returns, with the reason a console quit has (exit code 0).
func (m *Machine) Stop() { m.stop(stopUser, nil) }

// stopWithSignal stops the VM because of signal s, and reports whether it
// did (false: the VM had stopped already).
func (m *Machine) stopWithSignal(s os.Signal) (stopped bool) {
	m.stopOnce.Do(func() {
		m.result = Result{Reason: stopSignal, Signal: s}
		m.kickAll()
		stopped = true
	})
	return stopped
}

// stop records the first reason the VM ends and kicks every vCPU out of
// KVM_RUN. Later calls are no-ops.
func (m *Machine) stop(reason StopReason, err error) {
	m.stopOnce.Do(func() {
		m.result = Result{Reason: reason, Err: err}
		m.kickAll()
	})
}

func (m *Machine) kickAll() {
	m.stopping.Store(true)
	for _, v := range m.vcpus {
		v.Kick()
	}
	close(m.stopped)
}

// Close releases every resource: vCPUs, VM, memory, console. It is safe to
// call more than once and on a partly built Machine.
func (m *Machine) Close() error {
	m.closeOnce.Do(func() {
		m.dumpMu.Lock() // wait for a device dump in progress; none after this
		m.devicesClosed = true
		m.dumpMu.Unlock()
		m.closeMetrics()
		m.closeNetDevices()
		m.closeCommand()
		closeDrives(m.log, m.drives, m.driveIDs, m.driveTrs)
		m.drives, m.driveTrs = nil, nil
		m.closeVsock()
		m.closeEntropy()
		if m.irqs != nil {
			m.irqs.close()
		}
		for _, v := range m.vcpus {
			v.Close()
		}
		if m.vm != nil {
			m.vm.Close()
		}
		if m.sys != nil {
			m.sys.Close()
		}
		if m.mem != nil {
			m.mem.Close()
		}
		if m.con != nil {
			m.con.Close()
		}
	})
	return nil
}
