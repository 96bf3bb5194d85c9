package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// System is what the agent needs from the guest's kernel beyond running a
// process: the real one (Linux, as PID 1) is in sys_linux.go.
type System interface {
	// EarlyMounts mounts /proc, /sys, /dev (devtmpfs, with /dev/pts and
	// /dev/shm), /tmp, /run and the kernel's own filesystems
	// (earlyMounts), makes /dev's links (devLinks) and names a guest the
	// kernel left unnamed (nameGuest).
	EarlyMounts() error
	// LoadModule loads a kernel module file; a module already present
	// (built in, or loaded) is not an error.
	LoadModule(path string) error
	// Mount performs one Mount, creating its target.
	Mount(m Mount) error
	// WaitDevice waits until path exists, up to d.
	WaitDevice(path string, d time.Duration) error
	// ConfigureInterface gives the interface with this MAC the address
	// and brings it (and lo) up.
	ConfigureInterface(mac string, addr netip.Prefix) error
	// LoopbackUp brings lo up (127.0.0.1, which test suites bind).
	LoopbackUp() error
	// Progress tells the host the agent starts stage s (the exit
	// device's progress write).
	Progress(s exitdev.Stage)
}

// StepError is a step of the agent that failed: what the host learns from
// the status word (exitdev.AgentFailed) is Stage and Errno.
type StepError struct {
	Stage exitdev.Stage
	Err   error
}

func (e *StepError) Error() string { return fmt.Sprintf("agent: %s: %v", e.Stage, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Errno is the errno inside the error, or EIO when there is none (the host
// only needs to tell "not found" and "not executable" apart from the rest).
func (e *StepError) Errno() syscall.Errno {
	var n syscall.Errno
	if errors.As(e.Err, &n) {
		return n
	}
	if errors.Is(e.Err, exec.ErrNotFound) || errors.Is(e.Err, fs.ErrNotExist) {
		return syscall.ENOENT
	}
	if errors.Is(e.Err, fs.ErrPermission) {
		return syscall.EACCES
	}
	return syscall.EIO
}

// Word is the exit device's status word for this failure.
func (e *StepError) Word() uint32 {
	n := e.Errno()
	if n > 0xffff {
		n = syscall.EIO
	}
	return exitdev.AgentFailed(e.Stage, uint16(n))
}

// prepareLog hears Prepare's notes (the kernel console; tests swap it).
var prepareLog io.Writer = os.Stderr

// Prepare runs every step before the command: early mounts, modules (and
// the wait for the stream devices they drive), mounts, the chroot's own
// filesystems (rootMounts), the late mounts, the interfaces. log gets a line per step that failed.
func Prepare(s *Spec, sys System) error {
	sys.Progress(exitdev.StageEarly)
	if err := sys.EarlyMounts(); err != nil {
		return &StepError{exitdev.StageEarly, err}
	}
	sys.Progress(exitdev.StageModules)
	for _, m := range s.Modules {
		if err := sys.LoadModule(m); err != nil {
			return &StepError{exitdev.StageModules, fmt.Errorf("%s: %w", m, err)}
		}
	}
	// The stream devices belong to the modules stage: a driver missing
	// from the guest (a module not loaded, one wrongly taken for built
	// in) is a boot failure there, ENODEV, not the command's failure to
	// start (exec-stage errors are the command's 126 and 127).
	wait := time.Duration(s.DeviceWaitMs) * time.Millisecond
	if wait == 0 {
		wait = DefaultDeviceWaitMs * time.Millisecond
	}
	for _, dev := range []string{s.Stdin, s.Stdout, s.Stderr} {
		if dev == "" {
			continue
		}
		if err := sys.WaitDevice(dev, wait); err != nil {
			return &StepError{exitdev.StageModules, fmt.Errorf("stream device %s (virtio-console): %w", dev, err)}
		}
	}
	sys.Progress(exitdev.StageMounts)
	for _, m := range s.Mounts {
		if err := sys.Mount(m); err != nil {
			return &StepError{exitdev.StageMounts, fmt.Errorf("%s on %s: %w", m.FSType, m.Target, err)}
		}
	}
	var late []Mount
	if s.Root != "" {
		late = rootMounts(s.Root)
	}
	for _, m := range s.After {
		if s.Root != "" && strings.HasPrefix(m.Target, s.Root+"/") {
			m.InRoot = s.Root
		}
		late = append(late, m)
	}
	for _, m := range late {
		if err := sys.Mount(m); err != nil {
			if m.Optional {
				logf(prepareLog, "%s on %s (optional, left out): %v", m.FSType, m.Target, err)
				continue
			}
			return &StepError{exitdev.StageMounts, fmt.Errorf("%s on %s: %w", m.FSType, m.Target, err)}
		}
	}
	sys.Progress(exitdev.StageNetwork)
	if err := sys.LoopbackUp(); err != nil {
		return &StepError{exitdev.StageNetwork, fmt.Errorf("lo: %w", err)}
	}
	for _, i := range s.Interfaces {
		p, err := netip.ParsePrefix(i.Addr)
		if err == nil {
			err = sys.ConfigureInterface(strings.ToLower(i.MAC), p)
		}
		if err != nil {
			return &StepError{exitdev.StageNetwork, fmt.Errorf("interface %s: %w", i.MAC, err)}
		}
	}
	sys.Progress(exitdev.StageExec)
	return nil
}

// rootMounts are the guest's own filesystems a command chrooted into root
// needs: /proc, /sys and /dev. The root's /tmp and /run stay as they are
// (in a shared host root, the host's, through the overlay: the host's
// working directory may lie below /tmp).
func rootMounts(root string) []Mount {
	return []Mount{
		{Source: "/proc", Target: path.Join(root, "proc"), FSType: "none", Options: []string{"rbind"}},
		{Source: "/sys", Target: path.Join(root, "sys"), FSType: "none", Options: []string{"rbind"}},
		{Source: "/dev", Target: path.Join(root, "dev"), FSType: "none", Options: []string{"rbind"}},
	}
}

// Command builds the command of s, its streams connected to the devices s
// names (/dev/null for none) through the agent's relays (streams.go). The
// caller calls the streams' started after Start and finish after Wait.
func Command(s *Spec) (*exec.Cmd, *streams, error) {
	dir := s.Dir
	if dir == "" {
		dir = "/"
	}
	if err := checkDir(s.Root, dir); err != nil {
		// The command never ran, and it was not the command that was
		// missing: the environment (its directory in the shared root)
		// failed, a boot failure (120), not 127 or 126.
		return nil, nil, &StepError{exitdev.StageMounts, fmt.Errorf("the working directory %s: %w", dir, err)}
	}
	bin, err := lookPath(s.Root, dir, s.Argv[0], s.Env)
	if err != nil {
		return nil, nil, &StepError{exitdev.StageExec, err}
	}
	cmd := &exec.Cmd{Path: bin, Args: s.Argv, Env: s.Env, Dir: s.Dir}
	if s.Dir == "" {
		cmd.Dir = "/"
	}
	// Its own session and process group, as a job a shell or a CI runner
	// starts: the agent's is the kernel's group 0, which holds PID 1 and
	// every process, so a script's `kill 0` (trap 'kill 0' EXIT, a common
	// way to end its background jobs) signalled them all, the agent
	// included.
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: s.Root, Setsid: true}
	st, err := openStreams(s)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = st.stdin, st.stdout, st.stderr
	return cmd, st, nil
}

// checkDir checks that the directory dir (absolute) is there in root, as
// the command's chdir will need it: a host working directory the shared
// root cannot show (below a FUSE mount Flint's user may not enter, a
// pseudo filesystem) failed the chdir with ENOENT or EACCES, which read
// as "command not found" (127) or "cannot execute" (126).
func checkDir(root, dir string) error {
	st, err := statInRoot(root, dir)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return syscall.ENOTDIR
	}
	return nil
}

// lookPath finds argv0 the way a shell would inside root: as given when it
// has a slash (relative to dir, the command's working directory), else in
// each directory of the command's PATH.
func lookPath(root, dir, argv0 string, env []string) (string, error) {
	check := func(p string) error {
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		st, err := statInRoot(root, p)
		if err != nil {
			return &fs.PathError{Op: "exec", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o111 == 0 {
			return &fs.PathError{Op: "exec", Path: p, Err: syscall.EACCES}
		}
		return nil
	}
	if strings.Contains(argv0, "/") {
		return argv0, check(argv0)
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	var denied error
	for _, d := range strings.Split(pathEnv, ":") {
		if d == "" || !path.IsAbs(d) {
			continue
		}
		p := path.Join(d, argv0)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, syscall.EACCES) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", &fs.PathError{Op: "exec", Path: argv0, Err: syscall.ENOENT}
}

// RunCommand runs s's command to its end and returns the status word for
// the exit device: how it exited or which signal ended it, or the step that
// failed. Its output has reached the devices when it returns. progress
// hears StageWait once the command runs.
func RunCommand(s *Spec, progress func(exitdev.Stage)) uint32 {
	word, _ := runCommand(s, progress)
	return word
}

// runCommand is RunCommand, with the error of a step that failed (the
// command not found, its working directory missing...) to log.
func runCommand(s *Spec, progress func(exitdev.Stage)) (uint32, error) {
	cmd, st, err := Command(s)
	if err != nil {
		return stepWord(err, exitdev.StageExec), err
	}
	err = cmd.Start()
	if errors.Is(err, syscall.ENOEXEC) && !isELF(s.Root, cmd.Dir, cmd.Path) {
		cmd = underShell(cmd)
		err = cmd.Start()
	}
	st.started()
	if err != nil {
		st.finish(0)
		return stepWord(err, exitdev.StageExec), err
	}
	progress(exitdev.StageWait)
	ws, err := reapUntil(cmd.Process.Pid)
	cmd.Process.Release()
	st.finish(OutputDrain)
	if err != nil {
		return stepWord(err, exitdev.StageWait), err
	}
	return StatusWord(ws), nil
}

// underShell is c as execvp(3) runs a file the kernel cannot execute (a
// script without a #! line): /bin/sh with the file's path and c's
// arguments, as every shell (and virtme-ng and vmtest, which start the
// command through one) runs it.
func underShell(c *exec.Cmd) *exec.Cmd {
	return &exec.Cmd{Path: "/bin/sh", Args: append([]string{"/bin/sh", c.Path}, c.Args[1:]...), Env: c.Env, Dir: c.Dir,
		SysProcAttr: c.SysProcAttr, Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr}
}

// isELF reports whether the file at p (relative to dir) in root starts
// with the ELF magic: a binary for another machine stays "cannot execute"
// (126) instead of being read as a script.
func isELF(root, dir, p string) bool {
	if !path.IsAbs(p) {
		p = path.Join(dir, p)
	}
	fd, err := openInRoot(root, p, unix.O_RDONLY)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var magic [4]byte
	n, _ := unix.Read(fd, magic[:])
	return n == len(magic) && string(magic[:]) == "\x7fELF"
}

// reapUntil waits for any child until pid exits and returns pid's
// status. As PID 1 the agent is the parent of every process the command
// orphans; waiting for pid alone (exec.Cmd.Wait) left each of them a
// zombie until the guest powered off.
func reapUntil(pid int) (syscall.WaitStatus, error) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case err == syscall.EINTR:
		case err != nil:
			return 0, fmt.Errorf("wait4: %w", err)
		case got == pid && (ws.Exited() || ws.Signaled()):
			return ws, nil
		}
	}
}

// StatusWord turns a finished process's wait status into the exit
// device's word.
func StatusWord(ws syscall.WaitStatus) uint32 {
	if ws.Signaled() {
		return exitdev.Signaled(uint8(ws.Signal()), ws.CoreDump())
	}
	return exitdev.Exited(uint8(ws.ExitStatus()))
}

func stepWord(err error, stage exitdev.Stage) uint32 {
	var se *StepError
	if !errors.As(err, &se) {
		se = &StepError{stage, err}
	}
	return se.Word()
}

// Run does everything but the report: Prepare, then the command. It
// returns the status word and, when a step failed (the command's start
// included), the error to log.
func Run(s *Spec, sys System) (uint32, error) {
	if err := Prepare(s, sys); err != nil {
		return stepWord(err, exitdev.StageEarly), err
	}
	return runCommand(s, sys.Progress)
}

// logf writes one agent line to w (the kernel console), prefixed so the host
// can tell it from the kernel's lines.
func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, LogPrefix+format+"\n", args...)
}
