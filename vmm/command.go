package vmm

// Command mode's machine (`flint run --kernel K -- CMD`): the exit device,
// one virtio-console device per stream of the command, the kernel-splat
// scanner on the serial console, the idle timeout, and the judgement of the
// run (vmm/verdict). The guest side is package agent; cmd/flint builds the
// initramfs and the agent's Spec.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/devices/exitdev"
	vconsole "github.com/flintvm/flint/virtio/console"
	"github.com/flintvm/flint/virtio/fs"
	"github.com/flintvm/flint/vmm/verdict"
)

// The stream devices as the guest agent names them. They are attached in
// this order, all on CommandTransport, so the guest's virtio_console (a
// module probing the devices in the order the transport registered them)
// numbers their ttys the same way.
const (
	StdoutDevice = "/dev/hvc0"
	StderrDevice = "/dev/hvc1"
	StdinDevice  = "/dev/hvc2"
)

// CommandTransport is the transport of command mode's own devices:
// virtio-mmio, because it boots faster here than PCI. The guest needs one
// module (virtio_mmio) instead of three (virtio_pci with its modern and
// legacy helpers), finds the devices in the ACPI DSDT without a PCI bus
// scan (each config-space access is two port exits), and a device's
// registers are one 4 KiB window with no BAR sizing or MSI-X setup.
const CommandTransport = configs.TransportMMIO

// Defaults of CommandConfig.
const (
	// DefaultReportGrace is how long the guest may take to power off
	// after the agent's report before Flint stops it.
	DefaultReportGrace = 3 * time.Second
	// DefaultPanicGrace is how long after "Kernel panic" Flint waits for
	// the rest of the panic's lines before it stops the guest (a kernel
	// booted with panic=-1 reboots sooner by itself).
	DefaultPanicGrace = time.Second
)

// NetMAC is the guest MAC address of interface n (its mac=, or the one
// derived from its TAP's name), by which the guest agent finds it.
func NetMAC(n configs.NetInterface) net.HardwareAddr {
	mac := macFor(n)
	return net.HardwareAddr(mac[:])
}

// CommandConfig is command mode's part of a Config.
type CommandConfig struct {
	// FailOn is which splats fail the run (a panic always does).
	FailOn verdict.Set
	// IdleTimeout, when positive, ends the run (verdict.CodeIdle) after
	// that long without serial console output, command output or agent
	// progress.
	IdleTimeout time.Duration
	// Stdout and Stderr get the command's output; nil discards it.
	Stdout, Stderr io.Writer
	// Stdin, when not nil, is the command's input, already framed for
	// the agent (agent.NewFrameReader); nil gives the command /dev/null
	// (and no stdin device).
	Stdin io.Reader
	// ReportGrace and PanicGrace: 0 means the defaults.
	ReportGrace, PanicGrace time.Duration
	// Shares are the host directories the guest mounts (fs.go), each a
	// virtio-fs device attached after the stream devices.
	Shares []Share
}

// CommandResult is how a command-mode run ended.
type CommandResult struct {
	// Machine is how the VM stopped.
	Machine Result
	// Outcome is what the verdict was judged from; Verdict the judgement.
	Outcome verdict.Outcome
	Verdict verdict.Verdict
	// BootToInit is the time from Flint's start to the agent's first
	// progress write (0 if /init never ran); CommandTime from the
	// command's start to the agent's report (0 if it never ran); Total
	// from Flint's start to the VM's end.
	BootToInit, CommandTime, Total time.Duration
}

// commandRun is the command-mode state of a Machine.
type commandRun struct {
	cfg      CommandConfig
	start    time.Time
	scanner  *verdict.Scanner
	agentLog agent.LogTap // the agent's last console line, for a failure's reason
	exit     *exitdev.Device
	consoles []*vconsole.Device
	spools   []*spool
	shares   []*fs.Device
	trs      []virtioTransport
	stop     func(StopReason, error)

	// Times in nanoseconds since start (0: not yet).
	activity  atomic.Int64
	initAt    atomic.Int64
	cmdAt     atomic.Int64
	reportAt  atomic.Int64
	stage     atomic.Uint32 // the last exitdev.Stage written, 0 before /init
	writing   atomic.Int32  // output writes under way (activityWriter)
	timersMu  sync.Mutex
	timers    []*time.Timer
	panicOnce sync.Once
}

// newCommandRun makes the run of a kernel booted with cmdline: it says
// whether the kernel stamps its console lines, which the scanner needs to
// know (verdict.Limits.Unstamped).
func newCommandRun(cfg CommandConfig, cmdline string, start time.Time, stop func(StopReason, error)) *commandRun {
	if cfg.ReportGrace <= 0 {
		cfg.ReportGrace = DefaultReportGrace
	}
	if cfg.PanicGrace <= 0 {
		cfg.PanicGrace = DefaultPanicGrace
	}
	c := &commandRun{cfg: cfg, start: start, stop: stop}
	on, set := verdict.PrintkTime(cmdline)
	c.scanner = verdict.NewScanner(verdict.Limits{Unstamped: set && !on}, c.onSplat)
	c.exit = exitdev.New(c.onReport)
	c.exit.SetOnProgress(c.onProgress)
	return c
}

func (c *commandRun) now() int64 { return max(int64(time.Since(c.start)), 1) }

func (c *commandRun) touch() { c.activity.Store(c.now()) }

func (c *commandRun) after(d time.Duration, f func()) {
	c.timersMu.Lock()
	c.timers = append(c.timers, time.AfterFunc(d, f))
	c.timersMu.Unlock()
}

// onSplat stops a panicked guest once the panic's lines had time to come
// (panic=-1 usually reboots it first).
func (c *commandRun) onSplat(sp verdict.Splat) {
	if sp.Kind == verdict.Panic {
		c.panicOnce.Do(func() { c.after(c.cfg.PanicGrace, func() { c.stop(stopReset, nil) }) })
	}
}

func (c *commandRun) onProgress(s exitdev.Stage) {
	t := c.now()
	c.activity.Store(t)
	c.stage.Store(uint32(s))
	switch s {
	case exitdev.StageEarly:
		c.initAt.CompareAndSwap(0, t)
	case exitdev.StageWait:
		c.cmdAt.CompareAndSwap(0, t)
	}
}

// onReport gives the guest ReportGrace to power off (the agent does that
// right after its report; late kernel messages still reach the scanner).
func (c *commandRun) onReport(exitdev.Report) {
	c.reportAt.CompareAndSwap(0, c.now())
	c.touch()
	c.after(c.cfg.ReportGrace, func() { c.stop(stopUser, nil) })
}

// watchIdle stops the run with stopIdle once nothing happened for the idle
// timeout, a write of output that the host holds up counting as
// something; it returns when done is closed.
func (c *commandRun) watchIdle(done <-chan struct{}) {
	idle := c.cfg.IdleTimeout
	if idle <= 0 {
		return
	}
	c.touch()
	tick := time.NewTicker(min(max(idle/10, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if c.writing.Load() == 0 && time.Duration(c.now()-c.activity.Load()) >= idle {
				c.stop(stopIdle, nil)
				return
			}
		}
	}
}

// activityWriter records activity before and after passing bytes on:
// while its writer blocks (Flint's stdout piped to a slow reader), the
// guest waits for the host and is not idle.
type activityWriter struct {
	c *commandRun
	w io.Writer
}

func (a activityWriter) Write(p []byte) (int, error) {
	a.c.touch()
	if a.w == nil {
		return len(p), nil
	}
	a.c.writing.Add(1)
	defer func() {
		a.c.touch()
		a.c.writing.Add(-1)
	}()
	return a.w.Write(p)
}

// streamOut is a stream device's (or the console's) writer: activity,
// then a spool to out (nil discards), flushed by flush.
func (c *commandRun) streamOut(out io.Writer) io.Writer {
	if out == nil {
		return activityWriter{c: c}
	}
	sp := newSpool(out, SpoolBytes)
	c.spools = append(c.spools, sp)
	return activityWriter{c: c, w: sp}
}

// consoleTap is the serial console's extra reader: the scanner sees every
// byte at once, every byte is activity, and out (--console) gets them
// through a spool: a vCPU whose UART write waited for a paused reader of
// Flint's stderr would stall the guest into a soft-lockup report.
func (c *commandRun) consoleTap(out io.Writer) io.Writer {
	if out == io.Discard {
		out = nil
	}
	return io.MultiWriter(c.scanner, &c.agentLog, c.streamOut(out))
}

// stageName names the last stage the agent reported, for a boot failure.
func stageName(s exitdev.Stage) string {
	switch s {
	case 0:
		return "kernel (before /init)"
	case exitdev.StageEarly:
		return "init (early mounts)"
	case exitdev.StageWait:
		return "command running"
	}
	return s.String()
}

// judge turns how the machine stopped into the run's outcome and verdict.
func (c *commandRun) judge(res Result) CommandResult {
	c.timersMu.Lock()
	for _, t := range c.timers {
		t.Stop()
	}
	c.timersMu.Unlock()
	c.scanner.Flush()
	o := verdict.Outcome{Splats: c.scanner.Splats(), FailOn: c.cfg.FailOn, Stage: stageName(exitdev.Stage(c.stage.Load()))}
	if r, ok := c.exit.Report(); ok {
		o.Command = &r
	}
	switch res.Reason {
	case stopTimeout:
		o.Timeout = true
	case stopIdle:
		o.Idle = true
	case stopError:
		o.Err = res.Err
		if o.Err == nil {
			o.Err = errors.New("the VMM stopped with an error")
		}
	case stopSignal:
		o.Err = fmt.Errorf("flint was stopped by signal %v", res.Signal)
	}
	if n := c.exit.Rejected(); n > 0 && o.Command == nil && o.Err == nil && !o.Timeout && !o.Idle {
		o.Err = fmt.Errorf("the guest wrote %d malformed words to the exit device", n)
	}
	cr := CommandResult{Machine: res, Outcome: o, Verdict: verdict.Judge(o), Total: time.Duration(c.now())}
	if l := c.agentLog.Last(); l != "" && o.Command != nil && o.Command.Kind == exitdev.KindAgentFailed {
		cr.Verdict.Reason += " [" + verdict.Printable(l) + "]" // the step in the agent's words: which mount, module, directory
	}
	initAt, cmdAt, reportAt := c.initAt.Load(), c.cmdAt.Load(), c.reportAt.Load()
	cr.BootToInit = time.Duration(initAt)
	if cmdAt > 0 && reportAt > cmdAt {
		cr.CommandTime = time.Duration(reportAt - cmdAt)
	}
	return cr
}

// addCommandDevices attaches command mode's devices: the exit device on
// the I/O bus and a virtio-console device per stream, and taps the serial
// console for the scanner. New calls it before the kernel is loaded (the
// ACPI tables describe the devices).
func (m *Machine) addCommandDevices() error {
	cc := m.cfg.Command
	c := newCommandRun(*cc, m.cfg.Cmdline, m.start, m.stop)
	m.cmd = c
	if err := m.pio.Insert(c.exit, exitdev.Base, exitdev.Size); err != nil {
		return err
	}
	m.plat.out.w = c.consoleTap(m.plat.out.w)
	type stream struct {
		name string
		in   io.Reader
		out  io.Writer
	}
	streams := []stream{{"stdout", nil, cc.Stdout}, {"stderr", nil, cc.Stderr}}
	if cc.Stdin != nil {
		streams = append(streams, stream{"stdin", cc.Stdin, nil})
	}
	for _, s := range streams {
		// The agent writes once to the stdin port when it is ready to
		// read (agent.ReadyByte); input sent before would be dropped.
		dev, err := vconsole.New(vconsole.Options{In: s.in, Out: c.streamOut(s.out), InputAfterGuestWrite: s.in != nil})
		if err != nil {
			return err
		}
		c.consoles = append(c.consoles, dev)
		tr, err := m.attachVirtio(dev, CommandTransport, "stream", s.name)
		if err != nil {
			return fmt.Errorf("command %s device: %w", s.name, err)
		}
		c.trs = append(c.trs, tr)
	}
	return m.addShares(c, cc.Shares)
}

// RunCommand runs a machine built with Config.Command to its end (Run) and
// judges the run. Call Close afterwards.
func (m *Machine) RunCommand() CommandResult {
	if m.cmd == nil {
		return CommandResult{Verdict: verdict.Judge(verdict.Outcome{Err: errors.New("not a command-mode machine")})}
	}
	done := make(chan struct{})
	go m.cmd.watchIdle(done)
	res := m.Run()
	close(done)
	m.cmd.flush()
	return m.cmd.judge(res)
}

// flush waits until the command's output has reached Stdout and Stderr.
func (c *commandRun) flush() {
	for _, sp := range c.spools {
		sp.Close()
	}
}

// closeCommand resets the stream devices and ends their goroutines.
func (m *Machine) closeCommand() {
	if m.cmd == nil {
		return
	}
	for _, tr := range m.cmd.trs {
		tr.Close()
	}
	for _, d := range m.cmd.consoles {
		d.Close()
	}
	for _, d := range m.cmd.shares {
		d.Close()
	}
	m.cmd.flush()
	m.cmd.trs, m.cmd.consoles, m.cmd.shares = nil, nil, nil
}
