package tap

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file passes the steering program and its license string to
// bpf(BPF_PROG_LOAD).
//
// Why it is safe:
//   - progLoadAttr is a local struct laid out as the head of the kernel's
//     union bpf_attr for BPF_PROG_LOAD; the kernel reads size bytes of it
//     and treats the rest of the union as zero.
//   - insns and license are package-level arrays: globals are never freed
//     or moved, so their addresses stay valid while they travel in the
//     struct as integers.
//   - The struct's own address is converted in the Syscall argument list
//     (unsafe.Pointer rule 4).
//   - The kernel copies the instructions and the license during the call
//     and keeps no pointer to either.

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr up to
// prog_name (linux/bpf.h).
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
}

// firstQueueInsns is the steering program: r0 = 0; exit. Two struct
// bpf_insn of 8 bytes (opcode, registers, 16-bit offset, 32-bit
// immediate): only the opcode bytes are not zero, so the bytes are the
// same on either byte order.
var firstQueueInsns = [16]byte{
	0: 0xb7, // BPF_ALU64|BPF_MOV|BPF_K, dst r0, imm 0
	8: 0x95, // BPF_JMP|BPF_EXIT
}

// bpfLicense is the empty license string: the program calls no helper,
// so none that is GPL-only.
var bpfLicense = [1]byte{0}

func loadFirstQueueProgram() (int, error) {
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  uint32(len(firstQueueInsns) / 8),
		insns:    uint64(uintptr(unsafe.Pointer(&firstQueueInsns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&bpfLicense[0]))),
	}
	copy(attr.progName[:], "flint_steer_q0")
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, fmt.Errorf("load steering program: %w", os.NewSyscallError("bpf", errno))
	}
	// The kernel opens every BPF object's fd close-on-exec.
	return int(fd), nil
}
