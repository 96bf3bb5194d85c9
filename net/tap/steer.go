package tap

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNoSteering is PinToFirst's error on a TAP whose steering program
// could not be loaded (a kernel without BPF socket filters, or a process
// without CAP_BPF or CAP_SYS_ADMIN when Open ran and
// kernel.unprivileged_bpf_disabled set, as most distributions ship it)
// and on a single-queue TAP, which has no use for one.
var ErrNoSteering = errors.New("tap: no steering program (needs a multiqueue TAP and BPF_PROG_LOAD when it was opened)")

// steering is a multiqueue TAP's steering program: a BPF socket filter
// that returns 0 for every frame, which TUNSETSTEERINGEBPF makes the
// queue choice of every frame the host sends to the interface (the
// kernel takes its result modulo the queues attached, and the first
// queue is index 0). It is loaded once, by Open, because loading needs
// privileges and the bpf system call that the process may lose later
// (the jail drops capabilities, seccomp refuses bpf); attaching it needs
// neither.
type steering struct {
	mu  sync.Mutex // serialises the ioctl with close, so fd is never a reused number
	fd  int        // program fd, -1 when not loaded or closed
	err error      // why it was not loaded
}

func (s *steering) load() {
	s.fd, s.err = loadFirstQueueProgram()
	if s.err != nil {
		s.fd = -1
	}
}

func (s *steering) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// PinToFirst, on, steers every frame the host sends to the interface to
// its first queue; off gives the choice back to the kernel's own flow
// steering. It acts on the whole interface (whichever queue it is called
// on) and is how a queue is detached without losing frames: Linux drops
// what is still queued on a queue it detaches (tun_queue_purge), and with
// the pin on no new frame is steered to it, so once its reader has drained
// it nothing is left to drop. A frame already being steered when the pin
// goes on can still land on the old queue: the kernel swaps the program
// under RCU without waiting for the senders, so PinToFirst(true) waits
// for an RCU grace period (membarrier) before it returns; a frame that
// sits in the queue's qdisc (when another CPU was running it) is handed
// on by the next qdisc run, so wait a moment more (a millisecond is
// ample) before trusting Pending. Any of the TAP's queue files will do,
// even a detached one (TUNSETSTEERINGEBPF acts on the interface the file
// belongs to); a device calls it on its first queue, which it never
// detaches. It fails with ErrNoSteering when Open could not load the
// program.
func (q *Queue) PinToFirst(on bool) error {
	s := q.steer
	if s == nil {
		return ErrNoSteering
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		if s.err != nil {
			return fmt.Errorf("%w: %w", ErrNoSteering, s.err)
		}
		return os.ErrClosed
	}
	prog := -1
	if on {
		prog = s.fd
	}
	err := q.control("ioctl TUNSETSTEERINGEBPF", func(fd int) error { return setSteeringProgram(fd, prog) })
	if err == nil && on {
		// Best effort: without it the caller's wait is all there is.
		waitGracePeriod()
	}
	return err
}

// memBarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL (linux/membarrier.h).
const memBarrierCmdGlobal = 1

// waitGracePeriod waits until every CPU has left the RCU read-side
// sections it was in: membarrier(MEMBARRIER_CMD_GLOBAL) runs
// synchronize_rcu. A sender picks a TAP queue inside one
// (__dev_queue_xmit), and the frame is on that queue's ring, or in its
// qdisc, before the section ends. It fails with EINVAL on a nohz_full
// kernel and ENOSYS on one without membarrier.
func waitGracePeriod() error {
	_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, memBarrierCmdGlobal, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// clearStalePin takes off a steering program the interface kept from an
// earlier process: Linux keeps it as long as the interface exists, so a
// persistent TAP whose last user died while pinned would otherwise send
// every frame to its first queue. Errors are ignored (a kernel without
// TUNSETSTEERINGEBPF has nothing to clear).
func clearStalePin(fd int) { setSteeringProgram(fd, -1) }

// setSteeringProgram attaches BPF program prog as the steering program
// of the interface TAP file fd belongs to, or detaches it with -1.
func setSteeringProgram(fd, prog int) error {
	return unix.IoctlSetPointerInt(fd, unix.TUNSETSTEERINGEBPF, prog)
}

// SteeringError says why PinToFirst cannot work on a multiqueue TAP (the
// program could not be loaded at Open), or nil when it can; nil too for
// a single-queue TAP.
func (t *Tap) SteeringError() error {
	if t.steer == nil || t.steer.err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNoSteering, t.steer.err)
}
