package verdict

import (
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/flintvm/flint/devices/exitdev"
)

// Command mode's exit codes. The command's own exit status passes through
// unchanged; Flint's own outcomes take the band 120-125 next to
// timeout(1)'s 124-127, and a command killed by signal N gives 128+N as a
// shell does. docs/command-mode.md has the table; TestExitCodeTable keeps
// the two the same.
const (
	// CodeBootFailed: the command never ran: the guest stopped (powered
	// off, reset, or hung up its console) without the agent's report, or
	// the agent failed before starting the command. The report names the
	// stage last seen.
	CodeBootFailed = 120
	// CodeKernelFailed: the kernel logged a splat that --fail-on counts
	// (panic, oops, BUG, WARNING, KASAN...), during the run or shortly
	// after the command exited, whatever the command's own status.
	CodeKernelFailed = 121
	// CodeIdle: no console output and no command output for the idle
	// timeout.
	CodeIdle = 122
	// CodeTimeout: --timeout expired.
	CodeTimeout = 124
	// CodeFlintFailed: Flint itself failed (VMM error, bad agent protocol).
	CodeFlintFailed = 125
	// CodeNotExecutable: the command was found but could not be executed.
	CodeNotExecutable = 126
	// CodeNotFound: the command was not found.
	CodeNotFound = 127
	// CodeSignalBase: the command was killed by signal N: 128+N.
	CodeSignalBase = 128
)

// Result names a verdict's outcome.
type Result string

// Results, as they appear in --report.
const (
	Passed        Result = "passed"         // the command exited 0, no failing splat
	CommandFailed Result = "command-failed" // the command exited non-zero
	Signaled      Result = "signaled"       // the command was killed by a signal
	NotFound      Result = "not-found"      // the command was not found
	NotExecutable Result = "not-executable" // the command could not be executed
	KernelFailed  Result = "kernel-failure" // a splat that --fail-on counts
	BootFailed    Result = "boot-failure"   // the command never ran
	TimedOut      Result = "timeout"        // --timeout expired
	IdleTimedOut  Result = "idle-timeout"   // the guest went silent
	FlintFailed   Result = "flint-failure"  // Flint itself failed
)

// Outcome is what the VMM knows when a command-mode run ends.
type Outcome struct {
	// Command is the exit device's report; nil if none came.
	Command *exitdev.Report
	// Splats are the scanner's splats; FailOn says which kinds fail (a
	// panic always does).
	Splats []Splat
	FailOn Set
	// Timeout and Idle say which timeout, if any, ended the run.
	Timeout, Idle bool
	// Stage is the last boot stage seen ("kernel", "init", "modules"...),
	// for a boot failure's message.
	Stage string
	// Err is Flint's own failure, if any.
	Err error
}

// Verdict is the judgement of a run.
type Verdict struct {
	Result Result `json:"result"`
	// Code is Flint's exit status.
	Code int `json:"exit_code"`
	// Reason is one line for stderr.
	Reason string `json:"reason"`
	// Failing are the splats that failed the run (kinds in FailOn).
	Failing []Splat `json:"-"`
}

// Judge maps an outcome to its verdict. Precedence: Flint's own failure;
// a failing splat (it explains a timeout or a missing report, and a green
// command does not excuse it); --timeout; the idle timeout; the agent's
// report; and last a guest that stopped without one. A panic fails the run
// whatever FailOn says (a panicked kernel vouches for nothing), so a
// panicked guest never ends in 0.
func Judge(o Outcome) Verdict {
	var failing []Splat
	for _, sp := range o.Splats {
		if o.FailOn.Has(sp.Kind) || sp.Kind == Panic {
			failing = append(failing, sp)
		}
	}
	switch {
	case o.Err != nil:
		return Verdict{Result: FlintFailed, Code: CodeFlintFailed, Reason: "flint failed: " + o.Err.Error()}
	case agentDied(o.Splats):
		return Verdict{Result: FlintFailed, Code: CodeFlintFailed, Failing: failing,
			Reason: "flint failed: its guest agent (/init, PID 1) died and the kernel panicked; the agent's last words are in the kernel log (--console stderr shows it)"}
	case len(failing) > 0:
		return Verdict{Result: KernelFailed, Code: CodeKernelFailed, Reason: kernelReason(failing), Failing: failing}
	case o.Timeout:
		return Verdict{Result: TimedOut, Code: CodeTimeout, Reason: "timed out" + stageSuffix(o)}
	case o.Idle:
		return Verdict{Result: IdleTimedOut, Code: CodeIdle, Reason: "idle timeout: no console or command output" + stageSuffix(o)}
	case o.Command == nil:
		return Verdict{Result: BootFailed, Code: CodeBootFailed, Reason: "the guest stopped before the command reported" + stageSuffix(o)}
	}
	return commandVerdict(*o.Command)
}

// initDeath is the panic Linux raises when PID 1 exits or is killed.
const initDeath = "Attempted to kill init!"

// agentDied reports whether the kernel's only serious report is PID 1's
// death: in command mode PID 1 is Flint's agent, so a Go panic or fatal
// error of the agent, not a kernel failure. A kernel that oopsed (or
// worse) first may have killed it: that stays the kernel's failure.
func agentDied(splats []Splat) bool {
	died := false
	for _, sp := range splats {
		switch sp.Kind {
		case Panic:
			if !strings.Contains(sp.Title, initDeath) {
				return false
			}
			died = true
		case Oops, Bug, KASAN, KFENCE:
			return false
		}
	}
	return died
}

// ExitCode is Judge(o).Code.
func ExitCode(o Outcome) int { return Judge(o).Code }

func commandVerdict(r exitdev.Report) Verdict {
	switch r.Kind {
	case exitdev.KindExited:
		if r.Code == 0 {
			return Verdict{Result: Passed, Code: 0, Reason: "the command exited with status 0"}
		}
		return Verdict{Result: CommandFailed, Code: int(r.Code), Reason: "the command " + r.String()}
	case exitdev.KindSignaled:
		if r.Signal == 0 || r.Signal > 127 {
			break
		}
		return Verdict{Result: Signaled, Code: CodeSignalBase + int(r.Signal), Reason: "the command was " + r.String()}
	case exitdev.KindAgentFailed:
		errno := syscall.Errno(r.Errno)
		if r.Stage != exitdev.StageExec {
			return Verdict{Result: BootFailed, Code: CodeBootFailed,
				Reason: fmt.Sprintf("the guest agent failed at stage %s: %v", r.Stage, errnoText(errno))}
		}
		if errno == syscall.ENOENT || errno == syscall.ENOTDIR {
			return Verdict{Result: NotFound, Code: CodeNotFound, Reason: "the command was not found: " + errnoText(errno)}
		}
		return Verdict{Result: NotExecutable, Code: CodeNotExecutable, Reason: "the command could not be executed: " + errnoText(errno)}
	}
	return Verdict{Result: FlintFailed, Code: CodeFlintFailed, Reason: "flint failed: the agent sent " + r.String()}
}

func errnoText(e syscall.Errno) string {
	if e == 0 {
		return "no error code"
	}
	return e.Error()
}

func stageSuffix(o Outcome) string {
	if o.Stage == "" {
		return ""
	}
	return " (last stage seen: " + o.Stage + ")"
}

func kernelReason(failing []Splat) string {
	var kinds []string
	var seen Set
	for _, sp := range failing {
		if !seen.Has(sp.Kind) {
			seen = seen.With(sp.Kind)
			kinds = append(kinds, sp.Kind.String())
		}
	}
	return fmt.Sprintf("kernel failure (%s): %s", strings.Join(kinds, ", "), failing[0].Title)
}

// WriteSummary writes the verdict for stderr: "flint: REASON", then, for a
// kernel failure, each failing splat's excerpt (at most lines lines of
// each; lines <= 0 means all it kept), so a CI log shows the splat without
// the user asking for the kernel log. A passing run writes nothing.
func WriteSummary(w io.Writer, v Verdict, lines int) error {
	if v.Result == Passed {
		return nil
	}
	var b strings.Builder
	b.WriteString("flint: " + v.Reason + "\n")
	for _, sp := range v.Failing {
		ex := sp.Excerpt
		if lines > 0 && len(ex) > lines {
			ex = ex[:lines]
		}
		for _, l := range ex {
			b.WriteString("  " + l + "\n")
		}
		if len(ex) < len(sp.Excerpt) || sp.Truncated {
			b.WriteString("  [...]\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
