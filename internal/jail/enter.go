package jail

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Enter jails the calling process (the child Child recognised), once it
// holds every host resource it needs: see the package documentation.
// dir is Child's directory; Enter closes it. On error the process must
// not go on: it is half jailed.
func Enter(s Spec, dir *os.File) error {
	defer dir.Close()
	if err := s.Validate(); err != nil {
		return err
	}
	var want unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &want); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if s.NoFile == 0 {
		s.NoFile = DefaultNoFile
	}
	if s.FSize == 0 {
		s.FSize = max(largestWritable(), MinFSize)
	}
	lastCap := lastCapability()
	parent, err := openLauncher()
	if err != nil {
		return err
	}
	defer parent.stat.Close()
	if err := isolateNetwork(); err != nil {
		return err
	}
	if err := pivot(s.Dir, want); err != nil {
		return err
	}
	if err := limit(s); err != nil {
		return err
	}
	return drop(s, lastCap, parent)
}

// launcher is the jailed flint's parent as the host's /proc names it,
// read through /proc/self/stat opened before pivot: in the jail's pid
// namespace getppid is 0 whether the launcher lives or not, and after
// pivot no path leads to the host's /proc.
type launcher struct {
	stat *os.File
	pid  int
}

func openLauncher() (launcher, error) {
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		return launcher{}, fmt.Errorf("jail: %w", err)
	}
	l := launcher{stat: f}
	if l.pid, err = l.parent(); err != nil {
		f.Close()
		return launcher{}, err
	}
	return l, nil
}

// parent reads the current parent's pid.
func (l launcher) parent() (int, error) {
	b := make([]byte, 1024)
	n, err := l.stat.ReadAt(b, 0)
	if n == 0 {
		return 0, fmt.Errorf("jail: reading /proc/self/stat: %v", err)
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b[:n], ')')
	var f []string
	if i >= 0 {
		f = strings.Fields(string(b[i+1 : n]))
	}
	if len(f) < 2 {
		return 0, fmt.Errorf("jail: /proc/self/stat: %q", b[:n])
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("jail: /proc/self/stat: parent pid %q", f[1])
	}
	return ppid, nil
}

// pdeathWindow runs between the credential change that clears the
// parent-death signal and its re-arming (a test kills the launcher there).
var pdeathWindow = func() {}

// pivotRoot is unix.PivotRoot (a test makes it fail as on an initial
// ramfs root).
var pivotRoot = unix.PivotRoot

// pivot makes the jail directory the root of this mount namespace.
func pivot(path string, want unix.Stat_t) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("jail: making mounts private: %w", err)
	}
	if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("jail: bind-mounting %s: %w", path, err)
	}
	// A bind remount sets the mount's flags to exactly those given: the
	// ones the directory's mount had (read-only above all) are kept.
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV|mountFlags(fs.Flags), ""); err != nil {
		return fmt.Errorf("jail: remounting %s nosuid,nodev: %w", path, err)
	}
	if err := unix.Chdir(path); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(".", &st); err != nil || st.Dev != want.Dev || st.Ino != want.Ino {
		return fmt.Errorf("jail: %s is no longer the directory flint checked", path)
	}
	switch err := pivotRoot(".", "."); err {
	case nil:
		// The old root is stacked on the new one at "."; detach it.
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("jail: detaching the host's root: %w", err)
		}
	case unix.EINVAL:
		// The host's root is the initial ramfs (a diskless host, the
		// nested test host), which pivot_root refuses: move the jail's
		// mount onto / and chroot into it, as runc does without
		// pivot_root. The host's other mounts stay in this namespace,
		// unreachable by any path; getting out of a chroot takes
		// CAP_SYS_CHROOT, which drop takes away.
		if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("jail: moving %s onto / (no pivot_root on this root): %w", path, err)
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("jail: chroot into %s: %w", path, err)
		}
	default:
		return fmt.Errorf("jail: pivot_root into %s: %w", path, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	return nil
}

// isolateNetwork moves every thread into one new, empty network
// namespace (before pivot: it opens the namespace through /proc). The
// jail's mount namespace hides host paths, but a unix socket in the
// abstract namespace (a name starting with NUL: X11's, D-Bus's, a
// container runtime's shim) is found by its network namespace, not by
// any path: from the host's, a jailed flint whose filter allows connect
// (a vsock device) could reach them, and with --seccomp off every TCP
// service on the host's loopback. Nothing flint does after setup needs
// the host's namespace: its TAPs (TUNSETQUEUE, TUNSETOFFLOAD,
// TUNSETSTEERINGEBPF act on the open file), its listening sockets and
// a vsock device's dial of <uds_path>_<port> (a path, found by inode)
// work from any namespace. The namespace is per thread, hence one made
// on a locked thread and entered by all (setns, needs CAP_SYS_ADMIN:
// before drop). A flint built with cgo cannot run a call on every
// thread: it keeps the host's network namespace.
func isolateNetwork() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("jail: the network namespace: %w", err)
	}
	defer unix.Close(host)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("jail: a new network namespace: %w", err)
	}
	ns, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(ns)
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_SETNS, uintptr(ns), unix.CLONE_NEWNET, 0); e == 0 {
			return nil
		} else if e != syscall.ENOTSUP {
			err = e
		}
	}
	// This thread alone would be in the new namespace: back to the host's.
	if rerr := unix.Setns(host, unix.CLONE_NEWNET); rerr != nil {
		return fmt.Errorf("jail: back to the network namespace of the other threads: %w", rerr)
	}
	if err != nil {
		return fmt.Errorf("jail: entering a new network namespace: %w", err)
	}
	return nil
}

// mountFlags maps statfs's per-mount ST_* flags to the MS_* flags that
// keep them on a remount.
func mountFlags(st int64) uintptr {
	var ms uintptr
	for _, f := range []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st&f.st != 0 {
			ms |= f.ms
		}
	}
	return ms
}

// limit sets the resource limits (before the capabilities go: raising a
// hard limit needs CAP_SYS_RESOURCE).
func limit(s Spec) error {
	for _, l := range []struct {
		name string
		res  int
		v    uint64
	}{{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, s.NoFile}, {"RLIMIT_FSIZE", unix.RLIMIT_FSIZE, s.FSize}} {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.v, Max: l.v}); err != nil {
			return fmt.Errorf("jail: %s %d: %w", l.name, l.v, err)
		}
	}
	return nil
}

// drop leaves no privilege: capability bounding and ambient sets empty,
// no supplementary groups, the gid and uid (every thread: Go's
// syscall.Setresuid and friends run on all threads without cgo), and
// no_new_privs on every thread.
func drop(s Spec, lastCap int, l launcher) error {
	for c := 0; c <= lastCap; c++ {
		if err := allThreadsPrctl(unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("jail: dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := allThreadsPrctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("jail: clearing ambient capabilities: %w", err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("jail: setgroups: %w", err)
	}
	if err := syscall.Setresgid(s.GID, s.GID, s.GID); err != nil {
		return fmt.Errorf("jail: setresgid %d: %w", s.GID, err)
	}
	if err := syscall.Setresuid(s.UID, s.UID, s.UID); err != nil {
		return fmt.Errorf("jail: setresuid %d: %w", s.UID, err)
	}
	// The new credentials cleared the parent-death signal Launch armed
	// (the kernel does at any change of the effective uid or gid): armed
	// again, the jailed flint still dies with its launcher, so a
	// supervisor that kills the launcher does not leave the VM running.
	// A launcher that died before the re-arming left this process to a
	// new parent, whose death is not the launcher's: gone.
	pdeathWindow()
	if err := allThreadsPrctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0); err != nil {
		return fmt.Errorf("jail: parent-death signal: %w", err)
	}
	if ppid, err := l.parent(); err != nil {
		return err
	} else if ppid != l.pid {
		return fmt.Errorf("jail: the launcher (pid %d) died while the jail was set up", l.pid)
	}
	if err := allThreadsPrctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("jail: no_new_privs: %w", err)
	}
	// What is left: nothing, or the jail is refused.
	var h unix.CapUserHeader
	h.Version = unix.LINUX_CAPABILITY_VERSION_3
	var d [2]unix.CapUserData
	if err := unix.Capget(&h, &d[0]); err != nil {
		return fmt.Errorf("jail: capget: %w", err)
	}
	if d[0].Effective|d[0].Permitted|d[0].Inheritable|d[1].Effective|d[1].Permitted|d[1].Inheritable != 0 {
		return fmt.Errorf("jail: capabilities left after dropping to uid %d", s.UID)
	}
	return nil
}

// allThreadsPrctl runs prctl on every thread of the process (capability
// bounding sets and no_new_privs are per thread).
func allThreadsPrctl(op int, a2, a3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, uintptr(op), a2, a3); e != 0 {
		if e == syscall.ENOTSUP { // built with cgo: this thread only
			return unix.Prctl(op, a2, a3, 0, 0)
		}
		return e
	}
	return nil
}

// lastCapability is the highest capability number the kernel knows.
func lastCapability() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return 63 // PR_CAPBSET_DROP of an unknown one is EINVAL, ignored
}

// largestWritable is the size of the largest regular file this process
// has open for writing (drive images), from /proc/self/fd.
func largestWritable() uint64 {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	var most uint64
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_ACCMODE == unix.O_RDONLY {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			most = max(most, uint64(st.Size))
		}
	}
	return most
}
