package seccomp

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// call is the part of a seccomp_data the filter reads.
type call struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

// run interprets prog on c, as the kernel would, for the instructions
// Build emits (absolute word loads, AND, JEQ/JGE/JSET with constants, RET).
func run(t *testing.T, prog []unix.SockFilter, c call) uint32 {
	t.Helper()
	word := func(off uint32) uint32 {
		switch {
		case off == offNR:
			return c.nr
		case off == offArch:
			return c.arch
		case off >= offArg0 && off < offArg0+48 && off%4 == 0:
			a := c.args[(off-offArg0)/8]
			if (off-offArg0)%8 == 4 {
				return uint32(a >> 32)
			}
			return uint32(a)
		}
		t.Fatalf("load at offset %d", off)
		return 0
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = word(in.K)
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var taken bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				taken = acc == in.K
			case unix.BPF_JGE:
				taken = acc >= in.K
			default:
				taken = acc&in.K != 0
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, in.Code)
		}
	}
	t.Fatal("fell off the end of the program")
	return 0
}

func sys(nr uint32, args ...uint64) call {
	c := call{arch: unix.AUDIT_ARCH_X86_64, nr: nr}
	copy(c.args[:], args)
	return c
}

// goClone is the Go runtime's clone flags for a new thread.
const goClone = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM | unix.CLONE_THREAD

func TestFilterDecisions(t *testing.T) {
	const pid = 4242
	const allow, kill, log = unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_RET_LOG
	cases := []struct {
		name string
		c    call
		want uint32 // in Kill mode; Log mode logs what Kill kills, but for the arch checks
	}{
		{"read", sys(unix.SYS_READ, 3), allow},
		{"futex", sys(unix.SYS_FUTEX), allow},
		{"KVM_RUN", sys(unix.SYS_IOCTL, 5, 0xAE80), allow},
		{"KVM_RUN with high bits", sys(unix.SYS_IOCTL, 5, 0xffffffff_0000AE80), allow},
		{"TUNSETOFFLOAD", sys(unix.SYS_IOCTL, 5, unix.TUNSETOFFLOAD), allow},
		{"TCSETS", sys(unix.SYS_IOCTL, 0, unix.TCSETS), allow},
		{"KVM_CREATE_VM", sys(unix.SYS_IOCTL, 5, 0xAE01), kill},
		{"TUNSETIFF", sys(unix.SYS_IOCTL, 5, unix.TUNSETIFF), kill},
		{"socket AF_UNIX", sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), allow},
		{"socket AF_INET", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM), kill},
		{"socket AF_UNIX stream, Go's flags", sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC), allow},
		// A datagram socket reaches any datagram socket on the host
		// (journald, /dev/log, sd_notify) with sendto or sendmsg,
		// no connect needed.
		{"socket AF_UNIX dgram", sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC), kill},
		{"socket AF_UNIX seqpacket", sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_SEQPACKET), kill},
		{"socket AF_UNIX dgram, stream in the high word", sys(unix.SYS_SOCKET, unix.AF_UNIX, 1<<32|unix.SOCK_DGRAM), kill},
		{"socket AF_NETLINK", sys(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW), kill},
		{"clone thread", sys(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_SYSVSEM|unix.CLONE_THREAD|unix.CLONE_SETTLS), allow},
		{"clone fork", sys(unix.SYS_CLONE, uint64(unix.SIGCHLD)), kill},
		{"tgkill self", sys(unix.SYS_TGKILL, pid, 7, uint64(unix.SIGURG)), allow},
		{"tgkill other", sys(unix.SYS_TGKILL, 1, 1, uint64(unix.SIGKILL)), kill},
		{"kill self", sys(unix.SYS_KILL, pid, uint64(unix.SIGABRT)), allow},
		{"kill other", sys(unix.SYS_KILL, 1, uint64(unix.SIGKILL)), kill},
		{"mmap rw", sys(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE), allow},
		{"mmap exec", sys(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_EXEC), kill},
		{"openat", sys(unix.SYS_OPENAT), kill},
		{"execve", sys(unix.SYS_EXECVE), kill},
		{"ptrace", sys(unix.SYS_PTRACE), kill},
		{"connect", sys(unix.SYS_CONNECT), kill},
		{"fork", sys(unix.SYS_FORK), kill},
		{"mprotect rw", sys(unix.SYS_MPROTECT, 0, 4096, unix.PROT_READ|unix.PROT_WRITE), allow},
		{"mprotect exec", sys(unix.SYS_MPROTECT, 0, 4096, unix.PROT_READ|unix.PROT_EXEC), kill},
		{"beyond the table", sys(1000), kill},
		// prctl: only the runtime's naming of its anonymous mappings
		// (Go 1.25+, on every heap growth where the kernel has
		// CONFIG_ANON_VMA_NAME).
		{"prctl PR_SET_VMA anon name", sys(unix.SYS_PRCTL, unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME, 0x7f0000000000, 4096, 0x7f0000001000), allow},
		{"prctl PR_SET_VMA other", sys(unix.SYS_PRCTL, unix.PR_SET_VMA, 1), kill},
		{"prctl PR_SET_NO_NEW_PRIVS", sys(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1), kill},
		{"prctl PR_SET_DUMPABLE", sys(unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, 1), kill},
		{"prctl PR_SET_SECCOMP", sys(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, 0), kill},
		// clone: a thread, never one in new namespaces (the kernel takes
		// CLONE_THREAD with CLONE_NEWNET, NEWNS, NEWUTS, NEWIPC, NEWCGROUP).
		{"clone thread newnet", sys(unix.SYS_CLONE, goClone|unix.CLONE_NEWNET), kill},
		{"clone thread newns", sys(unix.SYS_CLONE, goClone&^unix.CLONE_FS|unix.CLONE_NEWNS), kill},
		{"clone thread newuts", sys(unix.SYS_CLONE, goClone|unix.CLONE_NEWUTS), kill},
		{"clone thread newipc", sys(unix.SYS_CLONE, goClone&^unix.CLONE_SYSVSEM|unix.CLONE_NEWIPC), kill},
		{"clone thread newcgroup", sys(unix.SYS_CLONE, goClone|unix.CLONE_NEWCGROUP), kill},
		{"clone thread newuser", sys(unix.SYS_CLONE, goClone|unix.CLONE_NEWUSER), kill},
		{"clone thread newpid", sys(unix.SYS_CLONE, goClone|unix.CLONE_NEWPID), kill},
		// fcntl: what Go's runtime, os and net packages and Flint issue
		// (flags, close-on-exec, F_DUPFD_CLOEXEC); F_SETOWN/F_SETSIG
		// would have the kernel signal any process (SIGIO) for I/O on
		// an fd, around the kill/tgkill check; leases and locks are
		// not Flint's either.
		{"fcntl F_GETFD", sys(unix.SYS_FCNTL, 3, unix.F_GETFD), allow},
		{"fcntl F_SETFD", sys(unix.SYS_FCNTL, 3, unix.F_SETFD, unix.FD_CLOEXEC), allow},
		{"fcntl F_GETFL", sys(unix.SYS_FCNTL, 3, unix.F_GETFL), allow},
		{"fcntl F_SETFL", sys(unix.SYS_FCNTL, 3, unix.F_SETFL, unix.O_NONBLOCK), allow},
		{"fcntl F_DUPFD_CLOEXEC", sys(unix.SYS_FCNTL, 3, unix.F_DUPFD_CLOEXEC), allow},
		{"fcntl F_GETFL high bits", sys(unix.SYS_FCNTL, 3, 0xffffffff_00000000|unix.F_GETFL), allow},
		{"fcntl F_SETOWN", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN, 1), kill},
		{"fcntl F_SETOWN_EX", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN_EX), kill},
		{"fcntl F_SETSIG", sys(unix.SYS_FCNTL, 3, unix.F_SETSIG, uint64(unix.SIGKILL)), kill},
		{"fcntl F_SETLEASE", sys(unix.SYS_FCNTL, 3, unix.F_SETLEASE), kill},
		{"fcntl F_DUPFD", sys(unix.SYS_FCNTL, 3, unix.F_DUPFD), kill},
		{"fcntl F_SETOWN high bits", sys(unix.SYS_FCNTL, 3, 0x1_00000000|unix.F_SETOWN, 1), kill},
		// madvise: the runtime's and glibc's advice; never
		// MADV_HWPOISON/MADV_SOFT_OFFLINE, which (as root) take host
		// pages out of service for good.
		{"madvise DONTNEED", sys(unix.SYS_MADVISE, 0, 4096, unix.MADV_DONTNEED), allow},
		{"madvise FREE", sys(unix.SYS_MADVISE, 0, 4096, unix.MADV_FREE), allow},
		{"madvise HUGEPAGE", sys(unix.SYS_MADVISE, 0, 4096, unix.MADV_HUGEPAGE), allow},
		{"madvise NOHUGEPAGE", sys(unix.SYS_MADVISE, 0, 4096, unix.MADV_NOHUGEPAGE), allow},
		{"madvise COLLAPSE", sys(unix.SYS_MADVISE, 0, 4096, unix.MADV_COLLAPSE), allow},
		{"madvise HWPOISON", sys(unix.SYS_MADVISE, 0, 4096, unix.MADV_HWPOISON), kill},
		{"madvise SOFT_OFFLINE", sys(unix.SYS_MADVISE, 0, 4096, 101), kill}, // MADV_SOFT_OFFLINE
	}
	for _, mode := range []Mode{Kill, Log} {
		prog, err := Build(Options{Mode: mode, PID: pid})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			want := tc.want
			if mode == Log && want == kill {
				want = log
			}
			if got := run(t, prog, tc.c); got != want {
				t.Errorf("%s mode, %s: %#x, want %#x", mode, tc.name, got, want)
			}
		}
		// clone3 fails with ENOSYS in every mode (glibc then uses clone).
		if got := run(t, prog, sys(unix.SYS_CLONE3)); got != unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS) {
			t.Errorf("%s mode, clone3: %#x, want ENOSYS", mode, got)
		}
		// Another ABI is killed in every mode, even for allowed numbers.
		i386 := call{arch: unix.AUDIT_ARCH_I386, nr: unix.SYS_READ}
		x32 := sys(x32SyscallBit | unix.SYS_READ)
		for _, c := range []call{i386, x32} {
			if got := run(t, prog, c); got != kill {
				t.Errorf("%s mode, arch %#x nr %#x: %#x, want kill", mode, c.arch, c.nr, got)
			}
		}
	}
	if _, err := Build(Options{Mode: Off}); err == nil {
		t.Error("Build(Off) made a filter")
	}
}

// TestConnectOption: connect is refused unless Options.Connect (a
// virtio-vsock device) asks for it; bind and other sockets stay refused.
func TestConnectOption(t *testing.T) {
	const pid = 4242
	for _, on := range []bool{false, true} {
		p, err := Build(Options{Mode: Kill, PID: pid, Connect: on})
		if err != nil {
			t.Fatal(err)
		}
		want := uint32(unix.SECCOMP_RET_KILL_PROCESS)
		if on {
			want = unix.SECCOMP_RET_ALLOW
		}
		if got := run(t, p, sys(unix.SYS_CONNECT, 7, 0, 110)); got != want {
			t.Errorf("Connect %v: connect %#x, want %#x", on, got, want)
		}
		for _, c := range []call{sys(unix.SYS_BIND, 7, 0, 110), sys(unix.SYS_SOCKET, unix.AF_INET)} {
			if got := run(t, p, c); got != unix.SECCOMP_RET_KILL_PROCESS {
				t.Errorf("Connect %v: syscall %d: %#x, want kill", on, c.nr, got)
			}
		}
	}
}

// TestFileServerOption: the file-serving calls are refused unless
// Options.FileServer asks for them, and then every one is allowed.
func TestFileServerOption(t *testing.T) {
	const pid = 4242
	plain, err := Build(Options{Mode: Kill, PID: pid})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Build(Options{Mode: Kill, PID: pid, FileServer: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, nr := range FileServerSyscalls {
		if got := run(t, fs, sys(nr)); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("FileServer, %s: %#x, want allow", name, got)
		}
	}
	for _, nr := range []uint32{unix.SYS_OPENAT2, unix.SYS_GETDENTS64, unix.SYS_RENAMEAT2, unix.SYS_MKDIRAT, unix.SYS_FCHOWNAT} {
		if got := run(t, plain, sys(nr)); got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("without FileServer, syscall %d: %#x, want kill", nr, got)
		}
	}
	// Still refused with it: no plain openat, no exec, no other sockets.
	for _, c := range []call{sys(unix.SYS_OPENAT), sys(unix.SYS_EXECVE), sys(unix.SYS_SOCKET, unix.AF_INET)} {
		if got := run(t, fs, c); got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("FileServer, syscall %d: %#x, want kill", c.nr, got)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Off, Kill, Log} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("trap"); err == nil {
		t.Error("ParseMode(trap) accepted")
	}
}

// childEnv selects what the re-executed test binary does under the filter.
const childEnv = "FLINT_SECCOMP_TEST_CHILD"

// TestInstall re-executes the test binary, which installs the filter and
// then makes one call: allowed calls exit 0, forbidden ones must be killed
// with SIGSYS (or, in log mode, go through).
func TestInstall(t *testing.T) {
	if what := os.Getenv(childEnv); what != "" {
		os.Exit(child(what))
	}
	cases := []struct {
		what   string
		killed bool
	}{
		{"allowed", false},
		{"socket-inet", true},
		{"ioctl-unknown", true},
		{"other-thread", true}, // TSYNC: a thread that existed before Install is filtered too
		{"log-socket-inet", false},
		{"openat2", true},
		{"fileserver-openat2", false},
		{"runtime-fds", false},
		{"fcntl-setown", true},
		{"socket-unix-stream", false},
		{"socket-unix-dgram", true},
		{"heap-growth", false},
		{"prctl-vma-name", false},
		{"prctl-other", true},
		{"connect-unix-dial", false},
		{"unix-dial", true},
	}
	for _, tc := range cases {
		t.Run(tc.what, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestInstall$")
			cmd.Env = append(os.Environ(), childEnv+"="+tc.what, "TMPDIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok {
				t.Fatalf("no wait status: %v", err)
			}
			switch {
			case tc.killed && !(ws.Signaled() && ws.Signal() == syscall.SIGSYS):
				t.Fatalf("want death by SIGSYS, got %v: %s", err, out)
			case !tc.killed && (ws.Signaled() || ws.ExitStatus() != 0):
				t.Fatalf("want exit 0, got %v: %s", err, out)
			}
		})
	}
}

// child installs the filter and makes the call what names; its return is
// the exit code (the forbidden calls never return).
func child(what string) int {
	mode := Kill
	if what == "log-socket-inet" {
		mode = Log
	}
	other := make(chan chan struct{})
	if what == "other-thread" {
		go func() {
			// Locked to its thread, which exists before Install.
			runtime.LockOSThread()
			ready := make(chan struct{})
			other <- ready
			<-ready
			unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			os.Exit(0)
		}()
	}
	var ready chan struct{}
	if what == "other-thread" {
		ready = <-other
	}
	install := Install
	if what == "fileserver-openat2" {
		install = func(m Mode) error { return InstallWith(Options{Mode: m, FileServer: true}) }
	}
	var dialPath string
	if what == "connect-unix-dial" || what == "unix-dial" {
		// A vsock device's guest connection: Go's net dial of a unix
		// socket (vsock.UnixDialer), allowed only with Options.Connect.
		var err error
		if dialPath, err = echoListener(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 3
		}
		if what == "connect-unix-dial" {
			install = func(m Mode) error { return InstallWith(Options{Mode: m, Connect: true}) }
		}
	}
	if err := install(mode); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 3
	}
	switch what {
	case "allowed":
		// Ordinary runtime work: a goroutine, a pipe, a timer.
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return 4
		}
		done := make(chan struct{})
		go func() { unix.Write(p[1], []byte("x")); close(done) }()
		<-done
		return 0
	case "runtime-fds":
		// What Go's os package and Flint do with descriptors after
		// setup: an *os.File around a pipe (F_GETFL), Fd (F_SETFL),
		// SetNonblock, close-on-exec, a duplicate; and the runtime
		// returning memory (madvise).
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return 4
		}
		f := os.NewFile(uintptr(p[0]), "pipe")
		f.Fd()
		if err := unix.SetNonblock(p[1], true); err != nil {
			return 4
		}
		syscall.CloseOnExec(p[1])
		d, err := unix.FcntlInt(uintptr(p[1]), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return 4
		}
		unix.Close(d)
		debug.FreeOSMemory()
		return 0
	case "heap-growth":
		// The heap grows after setup (new arenas, stacks, spans): the
		// runtime maps memory and names it (prctl PR_SET_VMA), then
		// gives it back.
		var keep [][]byte
		for i := 0; i < 64; i++ {
			keep = append(keep, make([]byte, 4<<20))
		}
		runtime.KeepAlive(keep)
		keep = nil
		debug.FreeOSMemory()
		return 0
	case "prctl-vma-name", "prctl-other":
		// The runtime's own call (an empty range: the filter reads
		// only the option), made here for kernels without
		// CONFIG_ANON_VMA_NAME, where its first EINVAL (before the
		// filter) turned it off; then one it never makes.
		if what == "prctl-other" {
			unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
		}
		unix.Prctl(unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME, 0, 0, 0)
		return 0
	case "fcntl-setown":
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return 4
		}
		unix.FcntlInt(uintptr(p[0]), unix.F_SETOWN, os.Getpid())
		return 0
	case "socket-inet", "log-socket-inet", "socket-unix-stream", "socket-unix-dgram":
		family, typ := unix.AF_INET, unix.SOCK_DGRAM
		switch what {
		case "socket-unix-stream":
			family, typ = unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC
		case "socket-unix-dgram":
			family = unix.AF_UNIX
		}
		fd, err := unix.Socket(family, typ, 0)
		if err != nil {
			return 5
		}
		unix.Close(fd)
		return 0
	case "connect-unix-dial", "unix-dial":
		c, err := net.DialTimeout("unix", dialPath, 2*time.Second)
		if err != nil {
			return 8
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b := []byte("x")
		if _, err := c.Write(b); err != nil {
			return 9
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return 10
		}
		return 0
	case "ioctl-unknown":
		unix.IoctlGetInt(0, unix.TIOCGWINSZ)
		return 0
	case "other-thread":
		close(ready)
		select {}
	case "openat2", "fileserver-openat2":
		fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY, Resolve: unix.RESOLVE_BENEATH})
		if err != nil {
			return 7
		}
		unix.Close(fd)
		return 0
	}
	return 6
}

// echoListener listens on a unix socket in a new temporary directory and
// echoes what each connection sends; it returns the socket's path.
func echoListener() (string, error) {
	dir, err := os.MkdirTemp("", "seccomp-dial")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "echo.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return path, nil
}
