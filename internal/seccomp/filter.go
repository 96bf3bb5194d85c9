// Package seccomp owns Flint's process-wide system-call filter: the
// allowlist of system calls, ioctl request numbers and socket families the
// VMM uses once its setup is done (memory, KVM VM and vCPUs, devices, TAPs,
// files and sockets all opened), the classic-BPF program that enforces it,
// and its installation on every thread of the process
// (PR_SET_NO_NEW_PRIVS, then seccomp(SECCOMP_SET_MODE_FILTER,
// SECCOMP_FILTER_FLAG_TSYNC)). Anything not allowed kills the whole process
// (SECCOMP_RET_KILL_PROCESS, SIGSYS: exit status 128+31) or, in Log mode,
// is allowed and reported to the kernel's audit log (SECCOMP_RET_LOG). Both
// actions are logged by the kernel as "audit: type=1326 ... syscall=N".
//
// One filter covers every thread: Go's scheduler moves goroutines between
// threads, so per-thread filters would not follow the code they guard.
// The filter only allows x86_64 system calls (other ABIs, including x32,
// are killed in every mode).
package seccomp

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// Mode is what the filter does with a call that is not allowed.
type Mode int

// Modes, as `--seccomp` spells them.
const (
	Off  Mode = iota // no filter
	Kill             // kill the process (the default)
	Log              // allow, and have the kernel log the call
)

// ParseMode reads "kill", "log" or "off".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "kill":
		return Kill, nil
	case "log":
		return Log, nil
	case "off":
		return Off, nil
	}
	return Off, fmt.Errorf("seccomp mode %q: want kill, log or off", s)
}

func (m Mode) String() string {
	switch m {
	case Kill:
		return "kill"
	case Log:
		return "log"
	}
	return "off"
}

// action is the filter's return value for a call outside the allowlist.
func (m Mode) action() uint32 {
	if m == Log {
		return unix.SECCOMP_RET_LOG
	}
	return unix.SECCOMP_RET_KILL_PROCESS
}

// syscalls is every system call Flint and the Go runtime make after setup,
// allowed with any arguments. Calls allowed with argument checks are in
// Build (ioctl, socket, clone, kill, tgkill, mmap, mprotect, fcntl,
// madvise, prctl).
var syscalls = map[string]uint32{
	// Files, TAP queues, eventfds, disk images, the console and logs.
	"read": unix.SYS_READ, "write": unix.SYS_WRITE,
	"readv": unix.SYS_READV, "writev": unix.SYS_WRITEV, // TAP frames
	"pread64": unix.SYS_PREAD64, "pwrite64": unix.SYS_PWRITE64, // runtime's cgroup reads; os.File.ReadAt
	"preadv": unix.SYS_PREADV, "pwritev": unix.SYS_PWRITEV, // virtio-blk
	"fdatasync": unix.SYS_FDATASYNC, "fsync": unix.SYS_FSYNC, // virtio-blk flush
	"lseek": unix.SYS_LSEEK, "close": unix.SYS_CLOSE,
	"fstat": unix.SYS_FSTAT, "newfstatat": unix.SYS_NEWFSTATAT, // vhost-user fd checks, os.File.Stat
	// vhost-user's check of what a passed fd is (fdkind.go) and the
	// queue engine's of its kick file at each activation (virtio's
	// kickkind.go): the file system, and /proc/self/fd/N's link to tell
	// an eventfd.
	"fstatfs": unix.SYS_FSTATFS, "readlinkat": unix.SYS_READLINKAT, "readlink": unix.SYS_READLINK,
	"eventfd2": unix.SYS_EVENTFD2,
	"pipe2":    unix.SYS_PIPE2,
	// Queue engines' interrupt gaps (virtio's irqgap.go): a timerfd each.
	"timerfd_create": unix.SYS_TIMERFD_CREATE, "timerfd_settime": unix.SYS_TIMERFD_SETTIME,
	"ppoll":    unix.SYS_PPOLL,                               // TAP queue waits; kickkind.go without /proc
	"unlinkat": unix.SYS_UNLINKAT, "unlink": unix.SYS_UNLINK, // the API socket on exit
	"getrandom": unix.SYS_GETRANDOM,
	// A multiqueue TAP's steering pin waits out an RCU grace period
	// (net/tap's PinToFirst: MEMBARRIER_CMD_GLOBAL).
	"membarrier": unix.SYS_MEMBARRIER,
	// Unix sockets already open: the API server and the vhost-user channel.
	"accept4": unix.SYS_ACCEPT4, "recvmsg": unix.SYS_RECVMSG, "sendmsg": unix.SYS_SENDMSG,
	"recvfrom": unix.SYS_RECVFROM, "sendto": unix.SYS_SENDTO, "shutdown": unix.SYS_SHUTDOWN,
	"getsockname": unix.SYS_GETSOCKNAME, "getpeername": unix.SYS_GETPEERNAME,
	"getsockopt": unix.SYS_GETSOCKOPT, "setsockopt": unix.SYS_SETSOCKOPT,
	// The Go runtime: memory, threads, scheduling, timers, the netpoller.
	"munmap": unix.SYS_MUNMAP,
	"futex":  unix.SYS_FUTEX, "sched_yield": unix.SYS_SCHED_YIELD,
	"sched_getaffinity": unix.SYS_SCHED_GETAFFINITY, // GOMAXPROCS updates
	"nanosleep":         unix.SYS_NANOSLEEP, "clock_nanosleep": unix.SYS_CLOCK_NANOSLEEP,
	"clock_gettime": unix.SYS_CLOCK_GETTIME, "gettimeofday": unix.SYS_GETTIMEOFDAY, // when the vDSO is missing
	"epoll_create1": unix.SYS_EPOLL_CREATE1, "epoll_ctl": unix.SYS_EPOLL_CTL,
	"epoll_pwait": unix.SYS_EPOLL_PWAIT, "epoll_pwait2": unix.SYS_EPOLL_PWAIT2, "epoll_wait": unix.SYS_EPOLL_WAIT,
	"getpid": unix.SYS_GETPID, "gettid": unix.SYS_GETTID,
	"exit": unix.SYS_EXIT, "exit_group": unix.SYS_EXIT_GROUP,
	"restart_syscall": unix.SYS_RESTART_SYSCALL,
	// glibc's per-thread setup, in a flint built with cgo (threads come
	// from pthread_create; `make build` is static and makes neither call).
	"set_robust_list": unix.SYS_SET_ROBUST_LIST, "rseq": unix.SYS_RSEQ,
	// Signals: SIGINT/TERM/HUP, SIGUSR1 dumps, SIGURG (preemption and the
	// vCPU kick), the runtime's per-thread signal stacks and masks.
	"rt_sigaction": unix.SYS_RT_SIGACTION, "rt_sigprocmask": unix.SYS_RT_SIGPROCMASK,
	"rt_sigreturn": unix.SYS_RT_SIGRETURN, "sigaltstack": unix.SYS_SIGALTSTACK,
}

// FileServerSyscalls are the calls a virtio-fs device (virtio/fs) makes
// while it serves a host directory to the guest, allowed with any
// arguments only when Options.FileServer asks for them: one path
// component below a directory descriptor (openat2 with RESOLVE_BENEATH,
// the *at calls), reopening through /proc/self/fd, directory listing,
// attribute changes and data I/O. The device's confinement does not rest
// on the filter: these calls open nothing the device does not ask for.
var FileServerSyscalls = map[string]uint32{
	"openat2": unix.SYS_OPENAT2, "getdents64": unix.SYS_GETDENTS64,
	"mkdirat": unix.SYS_MKDIRAT, "mknodat": unix.SYS_MKNODAT, "symlinkat": unix.SYS_SYMLINKAT,
	"linkat": unix.SYS_LINKAT, "renameat2": unix.SYS_RENAMEAT2, "unlinkat": unix.SYS_UNLINKAT,
	"readlinkat": unix.SYS_READLINKAT, "newfstatat": unix.SYS_NEWFSTATAT, "fstat": unix.SYS_FSTAT,
	"fstatfs": unix.SYS_FSTATFS, "fchmod": unix.SYS_FCHMOD, "fchmodat": unix.SYS_FCHMODAT,
	"fchownat": unix.SYS_FCHOWNAT, "utimensat": unix.SYS_UTIMENSAT, "ftruncate": unix.SYS_FTRUNCATE,
	"fallocate": unix.SYS_FALLOCATE, "fsync": unix.SYS_FSYNC, "fdatasync": unix.SYS_FDATASYNC,
	"lseek": unix.SYS_LSEEK, "preadv": unix.SYS_PREADV, "pwritev": unix.SYS_PWRITEV, "close": unix.SYS_CLOSE,
}

// An Ioctl is one request number the filter allows, named as the code
// that issues it names it (Go identifier for KVM's, which kvm keeps
// unexported; unix constant name for the others).
type Ioctl struct {
	Name string
	Req  uint32
}

// RuntimeIoctls are the ioctl requests Flint issues after setup: KVM_RUN,
// interrupt delivery and routing (MSI-X and BAR changes happen at run
// time), the SIGUSR1 state dump's reads, the TAP's offloads (set on every
// feature negotiation), queue attach/detach and the steering pin around
// a detach (TUNSETQUEUE, TUNSETSTEERINGEBPF: a multiqueue device's
// VQ_PAIRS_SET, at run time), and the console terminal's mode
// (restored on exit).
// Every other ioctl request is refused; SetupIoctls lists the ones used
// before the filter is installed.
var RuntimeIoctls = []Ioctl{
	{"kvmRun", 0xAE80},
	{"kvmIRQLine", 0x4008AE61},
	{"kvmSetGSIRouting", 0x4008AE6A},
	{"kvmIRQFD", 0x4020AE76},
	{"kvmIOEventFD", 0x4040AE79},
	{"kvmSignalMSI", 0x4020AEA5},
	{"kvmGetRegs", 0x8090AE81},
	{"kvmGetSregs", 0x8138AE83},
	{"kvmGetMSRs", 0xC008AE88},
	{"kvmGetLAPIC", 0x8400AE8E},
	{"kvmGetMPState", 0x8004AE98},
	{"kvmGetVCPUEvents", 0x8040AE9F},
	{"kvmGetIRQChip", 0xC208AE62},
	{"TUNSETOFFLOAD", unix.TUNSETOFFLOAD},
	{"TUNSETQUEUE", unix.TUNSETQUEUE},
	{"TUNSETSTEERINGEBPF", unix.TUNSETSTEERINGEBPF},
	{"TCGETS", unix.TCGETS},
	{"TCSETS", unix.TCSETS},
}

// SetupIoctls are the ioctl requests Flint's code issues only while it
// builds the VM or opens a TAP, before the filter: they stay refused.
// filter_test.go checks that every request the code names is in one of
// the two lists, so a new ioctl cannot be added without deciding which.
var SetupIoctls = []string{
	"kvmGetAPIVersion", "kvmCreateVM", "kvmCheckExtension", "kvmGetVCPUMmapSize",
	"kvmGetSupportedCPUID", "kvmCreateVCPU", "kvmSetUserMemRegion", "kvmSetTSSAddr",
	"kvmSetIdentityMapAddr", "kvmCreateIRQChip", "kvmCreatePIT2", "kvmSetRegs",
	"kvmSetSregs", "kvmGetFPU", "kvmSetFPU", "kvmSetLAPIC", "kvmSetCPUID2",
	"kvmSetMSRs", "kvmSetMPState",
	"TUNGETFEATURES", "TUNSETIFF", "TUNGETIFF", "TUNSETVNETHDRSZ", "TUNGETVNETHDRSZ",
	"TUNSETVNETLE", "TUNSETPERSIST",
	"SIOCGIFHWADDR", "SIOCGIFMTU", "SIOCSIFMTU", "SIOCGIFFLAGS", "SIOCSIFFLAGS", "SIOCGIFINDEX",
}

// seccomp_data offsets (linux/seccomp.h): nr, arch, instruction pointer,
// then six 64-bit arguments; on little-endian x86_64 an argument's low 32
// bits come first.
const (
	offNR   = 0
	offArch = 4
	offArg0 = 16
)

func argLow(i int) uint32 { return uint32(offArg0 + 8*i) }

// namespaceFlags are clone's flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// x32 system calls have this bit set in nr; they share the x86_64 arch
// value, so the number itself must be checked.
const x32SyscallBit = 0x40000000

// program is a classic-BPF program under construction.
type program []unix.SockFilter

func (p *program) stmt(code uint16, k uint32) {
	*p = append(*p, unix.SockFilter{Code: code, K: k})
}

func (p *program) jump(code uint16, k uint32, jt, jf uint8) {
	*p = append(*p, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
}

func (p *program) load(off uint32) { p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (p *program) ret(v uint32)    { p.stmt(unix.BPF_RET|unix.BPF_K, v) }

// allowIf appends "if A == k: allow" as two instructions.
func (p *program) allowIf(k uint32) {
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, k, 0, 1)
	p.ret(unix.SECCOMP_RET_ALLOW)
}

// guarded appends "if nr == sysno: <body>", where body (built on a fresh
// program) must end in a return; the accumulator holds nr after it when
// nr differs.
func (p *program) guarded(sysno uint32, body program) error {
	if len(body) > 255 {
		return fmt.Errorf("seccomp: argument check for syscall %d is %d instructions (limit 255)", sysno, len(body))
	}
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, sysno, 0, uint8(len(body)))
	*p = append(*p, body...)
	return nil
}

// Options are the run-time facts the filter's argument checks need.
type Options struct {
	Mode Mode
	// PID is the process's id: kill and tgkill may only signal it
	// (InstallWith fills it in when 0).
	PID int
	// FileServer also allows FileServerSyscalls, for a VMM with a
	// virtio-fs device. Off by default.
	FileServer bool
	// Connect also allows connect(2), for a VMM with a virtio-vsock
	// device (it dials <uds_path>_<port> for each guest connection).
	// Sockets opened after setup are AF_UNIX only, so it reaches only
	// unix sockets. Off by default.
	Connect bool
}

// Build returns the filter's BPF program. It does not install it.
func Build(o Options) ([]unix.SockFilter, error) {
	if o.Mode == Off {
		return nil, fmt.Errorf("seccomp: no filter in mode off")
	}
	deny := o.Mode.action()
	var p program
	p.load(offArch)
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_X86_64, 1, 0)
	p.ret(unix.SECCOMP_RET_KILL_PROCESS)
	p.load(offNR)
	p.jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32SyscallBit, 0, 1)
	p.ret(unix.SECCOMP_RET_KILL_PROCESS)

	for _, nr := range sortedSyscalls(o.FileServer) {
		p.allowIf(nr)
	}
	if o.Connect {
		p.allowIf(unix.SYS_CONNECT)
	}
	type check struct {
		nr   uint32
		body program
	}
	checks := []check{
		{unix.SYS_IOCTL, ioctlCheck(deny)},
		// The API socket and the vhost-user channel are unix sockets,
		// accepted; the only socket opened after setup is a vsock
		// device's stream to <uds_path>_<port>. A datagram socket would
		// reach any datagram socket on the host (journald, /dev/log,
		// sd_notify) by sendto or sendmsg, without connect.
		{unix.SYS_SOCKET, socketCheck(deny)},
		// Threads only: a clone without CLONE_THREAD would be a fork,
		// and a thread in namespaces of its own is not the runtime's.
		{unix.SYS_CLONE, bitCheck(argLow(0), unix.CLONE_THREAD, namespaceFlags, deny)},
		// Descriptor flags, close-on-exec and F_DUPFD_CLOEXEC (Go's os,
		// net and runtime; SetNonblock on fds a vhost-user frontend
		// passes; the kick kind check). Not F_SETOWN/F_SETSIG: with
		// O_ASYNC they have the kernel signal any process, around the
		// kill check; not leases, locks or pipe sizes.
		{unix.SYS_FCNTL, equalCheck(argLow(1), []uint32{unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL, unix.F_DUPFD_CLOEXEC}, deny)},
		// The runtime's and glibc's advice (DONTNEED, FREE, HUGEPAGE,
		// NOHUGEPAGE, COLLAPSE: all below 100), never MADV_HWPOISON (100)
		// or MADV_SOFT_OFFLINE (101), which take host pages out of
		// service for good.
		{unix.SYS_MADVISE, belowCheck(argLow(2), unix.MADV_HWPOISON, deny)},
		// The runtime names each anonymous mapping it makes (Go 1.25+,
		// GODEBUG decoratemappings, on by default for this module's go
		// version) with prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) when the
		// kernel has CONFIG_ANON_VMA_NAME: on every heap growth after
		// setup. No other prctl option.
		{unix.SYS_PRCTL, prctlCheck(deny)},
		// Signals to this process only (the runtime's preemption and
		// crash paths, the vCPU kick).
		{unix.SYS_KILL, equalCheck(argLow(0), []uint32{uint32(o.PID)}, deny)},
		{unix.SYS_TGKILL, equalCheck(argLow(0), []uint32{uint32(o.PID)}, deny)},
		// Memory, never executable: guest RAM and vhost-user regions are
		// mapped during setup or with PROT_READ|PROT_WRITE.
		{unix.SYS_MMAP, bitCheck(argLow(2), 0, unix.PROT_EXEC, deny)},
		// glibc's thread stacks' guard pages, with cgo.
		{unix.SYS_MPROTECT, bitCheck(argLow(2), 0, unix.PROT_EXEC, deny)},
		// clone3's flags are in memory the filter cannot read: ENOSYS
		// makes glibc (cgo builds) fall back to clone, which is checked.
		{unix.SYS_CLONE3, program{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}}},
	}
	for _, c := range checks {
		if err := p.guarded(c.nr, c.body); err != nil {
			return nil, err
		}
	}
	p.ret(deny)
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: filter is %d instructions (limit %d)", len(p), unix.BPF_MAXINSNS)
	}
	return p, nil
}

// sortedSyscalls is the allowlist's numbers (with FileServerSyscalls if
// fileServer), sorted, each once.
func sortedSyscalls(fileServer bool) []uint32 {
	set := map[uint32]bool{}
	for _, nr := range syscalls {
		set[nr] = true
	}
	if fileServer {
		for _, nr := range FileServerSyscalls {
			set[nr] = true
		}
	}
	nrs := make([]uint32, 0, len(set))
	for nr := range set {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	return nrs
}

// ioctlCheck allows the RuntimeIoctls requests. The kernel reads the
// request as a 32-bit unsigned int, so only the argument's low word counts.
func ioctlCheck(deny uint32) program {
	reqs := make([]uint32, len(RuntimeIoctls))
	for i, r := range RuntimeIoctls {
		reqs[i] = r.Req
	}
	return equalCheck(argLow(1), reqs, deny)
}

// requireEqual appends "if the 32-bit word at off != v: deny".
func (p *program) requireEqual(off, v, deny uint32) {
	p.load(off)
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, v, 1, 0)
	p.ret(deny)
}

// prctlCheck allows prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ...).
func prctlCheck(deny uint32) program {
	var b program
	b.requireEqual(argLow(0), unix.PR_SET_VMA, deny)
	b.requireEqual(argLow(1), unix.PR_SET_VMA_ANON_NAME, deny)
	b.ret(unix.SECCOMP_RET_ALLOW)
	return b
}

// socketCheck allows socket(AF_UNIX, SOCK_STREAM with any flags).
func socketCheck(deny uint32) program {
	var b program
	b.requireEqual(argLow(0), unix.AF_UNIX, deny)
	b.load(argLow(1))
	b.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, sockTypeMask)
	b.allowIf(unix.SOCK_STREAM)
	b.ret(deny)
	return b
}

// sockTypeMask is socket(2)'s type without its SOCK_NONBLOCK and
// SOCK_CLOEXEC flags (the kernel's SOCK_TYPE_MASK).
const sockTypeMask = 0xf

// equalCheck allows the call when the 32-bit word at off is one of vals.
func equalCheck(off uint32, vals []uint32, deny uint32) program {
	var b program
	b.load(off)
	for _, v := range vals {
		b.allowIf(v)
	}
	b.ret(deny)
	return b
}

// belowCheck allows the call when the 32-bit word at off, unsigned, is
// below limit.
func belowCheck(off, limit, deny uint32) program {
	var b program
	b.load(off)
	b.jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, limit, 0, 1)
	b.ret(deny)
	b.ret(unix.SECCOMP_RET_ALLOW)
	return b
}

// bitCheck allows the call when the 32-bit word at off has every bit of
// must set and no bit of mustNot.
func bitCheck(off, must, mustNot uint32, deny uint32) program {
	var b program
	b.load(off)
	if mustNot != 0 {
		b.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, mustNot, 0, 1)
		b.ret(deny)
	}
	if must != 0 {
		b.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, must)
		b.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, must, 0, 1)
	}
	b.ret(unix.SECCOMP_RET_ALLOW)
	if must != 0 {
		b.ret(deny)
	}
	return b
}
