package jail

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// FDEnv is the environment marker of a jailed child: the number of the fd
// that holds the jail directory (always 3).
const FDEnv = "FLINT_JAIL_FD"

// childFD is the jail directory's fd in the child (ExtraFiles[0]).
const childFD = 3

// DefaultNoFile is RLIMIT_NOFILE in the jail unless the Spec says
// otherwise (as Firecracker's jailer).
const DefaultNoFile = 2048

// MinFSize is the smallest default RLIMIT_FSIZE (see Spec.FSize).
const MinFSize = 1 << 30

// Spec is a jail.
type Spec struct {
	// Dir is the directory that becomes the root. It must exist.
	Dir string
	// UID and GID are what the jailed process runs as; neither may be 0.
	UID, GID int
	// NoFile is RLIMIT_NOFILE (0: DefaultNoFile).
	NoFile uint64
	// FSize is RLIMIT_FSIZE in bytes (0: the size of the largest regular
	// file open for writing when the jail is entered, the drive images,
	// but at least MinFSize): no write past it, a log or console file
	// included, can grow a file.
	FSize uint64
}

// Validate checks s: Dir an existing directory other than the host's
// root (which would confine nothing), UID and GID in
// [1, 2^32-2]. Errors are one line naming the flag-like field.
func (s Spec) Validate() error {
	if s.Dir == "" {
		return errors.New("jail directory: empty path")
	}
	st, err := os.Stat(s.Dir)
	if err != nil {
		return fmt.Errorf("jail directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("jail directory %s: not a directory", s.Dir)
	}
	if root, err := os.Stat("/"); err == nil && os.SameFile(st, root) {
		return fmt.Errorf("jail directory %s: the host's root; a jail needs a directory of its own", s.Dir)
	}
	for _, id := range []struct {
		name string
		v    int
	}{{"uid", s.UID}, {"gid", s.GID}} {
		if id.v == 0 {
			return fmt.Errorf("%s 0: the jail runs flint unprivileged; give another %s", id.name, id.name)
		}
		if id.v < 0 || id.v > 0xfffffffe {
			return fmt.Errorf("%s %d: out of range", id.name, id.v)
		}
	}
	return nil
}

// ParseID parses a numeric uid or gid (names are not looked up: the jail
// must not depend on the host's user database).
func ParseID(what, s string) (int, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && v == 0xffffffff:
		return 0, fmt.Errorf("%s %q: out of range (0 to 4294967294)", what, s)
	case err != nil:
		return 0, fmt.Errorf("%s %q: not a number", what, s)
	}
	return int(v), nil
}

// Launch runs the jailed child: args (args[0] is its argv[0]) re-executed
// from /proc/self/exe in new mount, pid and IPC namespaces, with the
// handoff the package documentation describes. It returns the child's
// exit code, 128+N if a signal N ended it. An error means the child could
// not start.
func Launch(s Spec, args []string) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	if err := closeOnExecFrom(childFD); err != nil {
		return 0, err
	}
	dir, err := os.OpenFile(s.Dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("jail directory: %w", err)
	}
	defer dir.Close()
	if len(args) == 0 {
		args = []string{"flint"}
	}
	cmd := exec.Command("/proc/self/exe", args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Env = append(withoutMarker(os.Environ()), FDEnv+"="+strconv.Itoa(childFD))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC,
		// The child dies with the launcher; Pdeathsig follows the thread
		// that started it, hence the locked thread.
		Pdeathsig: syscall.SIGKILL,
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := clearInheritable(); err != nil {
		return 0, err
	}
	term := saveTerminal(os.Stdin)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("jail: starting the jailed flint: %w", err)
	}
	dir.Close()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	term.restore()
	return exitCode(cmd.ProcessState, err)
}

// clearInheritable empties the calling thread's inheritable capability
// set, which the child it starts keeps across the exec and Enter's new
// uid does not take away (only the permitted and effective sets go):
// the launcher may run with one (a supervisor's or container runtime's
// setting), and the jailed flint keeps no capability in any set.
func clearInheritable() error {
	h := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&h, &d[0]); err != nil {
		return fmt.Errorf("jail: capget: %w", err)
	}
	if d[0].Inheritable|d[1].Inheritable == 0 {
		return nil
	}
	d[0].Inheritable, d[1].Inheritable = 0, 0
	if err := unix.Capset(&h, &d[0]); err != nil {
		return fmt.Errorf("jail: clearing the inheritable capabilities: %w", err)
	}
	return nil
}

// closeOnExecFrom marks every descriptor from first up close-on-exec,
// so that the child inherits only stdin, stdout, stderr and the jail
// directory: Go opens its own files O_CLOEXEC, but descriptors the
// launcher inherited without it (from a shell or a supervisor) would
// cross the exec into the jail, and a host directory's descriptor there
// reaches the host through openat.
func closeOnExecFrom(first int) error {
	if unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return nil
	}
	// Before Linux 5.11: each open descriptor, from /proc.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("jail: listing inherited descriptors to close: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// exitCode maps how the child ended to a process exit code.
func exitCode(ps *os.ProcessState, err error) (int, error) {
	if ps == nil {
		return 0, fmt.Errorf("jail: waiting for the jailed flint: %w", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

func withoutMarker(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if len(e) > len(FDEnv) && e[:len(FDEnv)+1] == FDEnv+"=" {
			continue
		}
		out = append(out, e)
	}
	return out
}

// Child reports whether this process is a jailed child that Launch
// started (the marker is set), and takes the marker out of the
// environment. It checks the marker's claims: fd 3 an open directory and
// this process pid 1 of its pid namespace. The returned file is the jail
// directory, for Enter.
func Child() (*os.File, bool, error) {
	v, ok := os.LookupEnv(FDEnv)
	if !ok {
		return nil, false, nil
	}
	os.Unsetenv(FDEnv)
	if v != strconv.Itoa(childFD) {
		return nil, true, fmt.Errorf("jail: %s=%q: not a jail launch", FDEnv, v)
	}
	if os.Getpid() != 1 {
		return nil, true, fmt.Errorf("jail: %s is set but this process is not pid 1 of a new pid namespace: flint --jail starts the jail itself", FDEnv)
	}
	var st unix.Stat_t
	if err := unix.Fstat(childFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, true, fmt.Errorf("jail: fd %d is not the jail directory", childFD)
	}
	unix.CloseOnExec(childFD)
	return os.NewFile(childFD, "jail-dir"), true, nil
}

// terminal is stdin's terminal settings, when it is a terminal.
type terminal struct {
	fd int
	t  *unix.Termios
}

func saveTerminal(f *os.File) terminal {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return terminal{fd: -1}
	}
	return terminal{fd: fd, t: t}
}

// restore puts the settings back (the child restores them itself when it
// ends normally; this covers a child killed by a signal).
func (t terminal) restore() {
	if t.t != nil {
		unix.IoctlSetTermios(t.fd, unix.TCSETS, t.t)
	}
}
