// Package umlhost runs Debian's stock User-Mode-Linux kernel (the test and
// benchmark harness for Flint's vhost-user backend) on hosts where it
// cannot run as it is.
//
// UML 6.1 keeps each guest process's FPU state in a fixed-size buffer and
// restores it with PTRACE_SETREGSET NT_X86_XSTATE. Linux accepts that only
// with a buffer of the host's whole user XSAVE size; on CPUs with AMX the
// size is about 11 KiB, more than UML's buffer, every restore fails with
// EFAULT ("userspace - ptrace set fp regs failed, errno = 14") and the
// guest's init dies. UML falls back to PTRACE_GETFPREGS/SETFPREGS (the
// legacy FXSAVE area) when the NT_X86_XSTATE regset is refused at start,
// as on a host without XSAVE. That fallback saves only the x87/SSE state,
// and a guest process's AVX registers come back zeroed from every page
// fault (UML takes faults through a signal handler in the process, which
// starts with a cleared FPU), so glibc's AVX string functions corrupt
// memory. On such hosts Exec therefore (1) installs a seccomp filter that
// refuses exactly those ptrace calls with EIO, and (2) adds glibc tunables
// to UML's command line, which the guest kernel hands to init's
// environment, so that guest programs use glibc's SSE2 routines. The guest
// kernel, its virtio_net driver and the data path stay stock. Elsewhere
// Exec only executes UML.
package umlhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Ptrace requests and the regset the filter refuses (linux/ptrace.h, elf.h).
const (
	ptraceGetRegset = 0x4204
	ptraceSetRegset = 0x4205
	ntX86Xstate     = 0x202
	auditArchX8664  = 0xc000003e // AUDIT_ARCH_X86_64
)

// seccomp_data field offsets: nr, arch, then args[] (little-endian u64s).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16
	offArg2 = 32
)

// BPF opcodes (linux/filter.h) and seccomp return values.
const (
	bpfLdW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeqK  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfRetK  = unix.BPF_RET | unix.BPF_K
	retAllow = 0x7fff0000 // SECCOMP_RET_ALLOW
	retErrno = 0x00050000 // SECCOMP_RET_ERRNO
)

// xstateFilter is the filter program: ptrace(PTRACE_GETREGSET or
// PTRACE_SETREGSET, pid, NT_X86_XSTATE, ...) fails with EIO; every other
// system call, and every call from a non-x86-64 ABI, is allowed.
func xstateFilter() []unix.SockFilter {
	return []unix.SockFilter{
		/* 0 */ {Code: bpfLdW, K: offArch},
		/* 1 */ {Code: bpfJeqK, K: auditArchX8664, Jt: 0, Jf: 8}, // -> allow
		/* 2 */ {Code: bpfLdW, K: offNr},
		/* 3 */ {Code: bpfJeqK, K: unix.SYS_PTRACE, Jt: 0, Jf: 6}, // -> allow
		/* 4 */ {Code: bpfLdW, K: offArg0},
		/* 5 */ {Code: bpfJeqK, K: ptraceGetRegset, Jt: 1, Jf: 0}, // -> 7
		/* 6 */ {Code: bpfJeqK, K: ptraceSetRegset, Jt: 0, Jf: 3}, // -> allow
		/* 7 */ {Code: bpfLdW, K: offArg2},
		/* 8 */ {Code: bpfJeqK, K: ntX86Xstate, Jt: 0, Jf: 1}, // -> allow
		/* 9 */ {Code: bpfRetK, K: retErrno | uint32(unix.EIO)},
		/* 10 */ {Code: bpfRetK, K: retAllow},
	}
}

// GuestTunables is the UML command-line parameter that keeps glibc in the
// guest's programs off AVX (see the package comment).
const GuestTunables = "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX_Fast_Unaligned_Load"

// forceEnv overrides Needed: 1 applies the workaround, 0 never does.
const forceEnv = "FLINT_UML_FXSAVE"

// atMinSigStkSz is AT_MINSIGSTKSZ: the kernel's minimum signal stack,
// which grows with the host's largest user XSAVE area.
const atMinSigStkSz = 51

// xstateLimit is the largest AT_MINSIGSTKSZ with which Debian's UML 6.1
// restores FPU state through NT_X86_XSTATE: hosts with AVX-512 (an XSAVE
// area of 2.7 KiB, AT_MINSIGSTKSZ about 3.6 KiB) work; hosts with AMX
// tile data (11 KiB, AT_MINSIGSTKSZ near 12 KiB) do not.
const xstateLimit = 5120

// Needed reports whether UML needs the workaround on this host, and why.
func Needed() (bool, string) {
	switch os.Getenv(forceEnv) {
	case "1":
		return true, forceEnv + "=1"
	case "0":
		return false, forceEnv + "=0"
	}
	auxv, err := unix.Auxv()
	if err != nil {
		return false, "no auxiliary vector: " + err.Error()
	}
	for _, kv := range auxv {
		if kv[0] == atMinSigStkSz {
			why := fmt.Sprintf("AT_MINSIGSTKSZ %d (limit %d): the host's XSAVE area is larger than UML 6.1's FPU buffer", kv[1], xstateLimit)
			return kv[1] > xstateLimit, why
		}
	}
	return false, "no AT_MINSIGSTKSZ"
}

// Exec replaces the process with argv[0] (looked up in PATH), with the
// workaround when Needed (then noted on stderr). It returns only on
// failure.
func Exec(argv []string) error {
	if len(argv) == 0 {
		return errors.New("umlhost: no program to run")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("umlhost: %w", err)
	}
	need, why := Needed()
	if !need {
		return fmt.Errorf("umlhost: exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
	}
	fmt.Fprintf(os.Stderr, "umlhost: %s; UML saves FPU state with FXSAVE and guest glibc avoids AVX\n", why)
	argv = append(argv[:len(argv):len(argv)], GuestTunables)
	// The filter belongs to the calling thread; execve keeps that thread.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("umlhost: PR_SET_NO_NEW_PRIVS: %w", err)
	}
	if err := installFilter(xstateFilter()); err != nil {
		return fmt.Errorf("umlhost: installing the seccomp filter: %w", err)
	}
	return fmt.Errorf("umlhost: exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
}

// reexecEnv names the environment variable with which a test binary that
// calls MaybeExec first thing in TestMain becomes Exec of its arguments.
const reexecEnv = "FLINT_UMLHOST_EXEC"

// CommandContext returns a command that runs argv under Exec by
// re-executing the current binary, whose TestMain (or main) must call
// MaybeExec first. Add to its Env; do not replace it.
func CommandContext(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/proc/self/exe", argv...)
	cmd.Env = append(os.Environ(), reexecEnv+"=1")
	return cmd
}

// MaybeExec does nothing unless the process was started by Command; then it
// runs Exec(os.Args[1:]) and exits 127 if that fails.
func MaybeExec() {
	if os.Getenv(reexecEnv) != "1" {
		return
	}
	os.Unsetenv(reexecEnv)
	err := Exec(os.Args[1:])
	fmt.Fprintln(os.Stderr, err)
	os.Exit(127)
}
