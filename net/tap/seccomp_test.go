package tap

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/internal/testenv"
)

// seccompNSEnv names the network namespace the re-executed test binary
// works in under Flint's filter (the parent made it and deletes it).
const seccompNSEnv = "FLINT_TAP_SECCOMP_NS"

// TestQueueUnderSeccomp: everything virtio-net does with a multiqueue
// TAP once the VMM is sandboxed (reads and writes, Pending, detach and
// attach with the steering pin around the detach, a park that ends at
// its deadline) runs under Flint's filter in kill mode: a system call
// the allowlist lacks kills the child with SIGSYS (a Pending that called
// poll(2) directly does, and so does a pin without TUNSETSTEERINGEBPF or
// membarrier on the allowlist).
func TestQueueUnderSeccomp(t *testing.T) {
	if name := os.Getenv(seccompNSEnv); name != "" {
		os.Exit(seccompChild(t, name))
	}
	ns := enterNetns(t)
	ws, out := testenv.RunSelf(t, "TestQueueUnderSeccomp", seccompNSEnv+"="+ns.name)
	if ws.Signaled() || ws.ExitStatus() != 0 {
		t.Fatalf("child under the filter: exit %d, signal %v: %s", ws.ExitStatus(), ws.Signal(), out)
	}
}

// seccompChild opens a two-queue TAP in namespace name, has the host
// send it frames, installs the filter and uses the queues; it returns
// the exit code (the step that failed).
func seccompChild(t *testing.T, name string) int {
	runtime.LockOSThread()
	f, err := os.Open("/run/netns/" + name)
	if err != nil || unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) != nil {
		return 10
	}
	ns := &netns{tb: t, name: name}
	l := ns.openLink("flt-secc", 9, Options{Queues: 2})
	c := udpSocket(t, l.hostIP, 0)
	for i := range 16 {
		if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: l.guestIP, Port: 7000 + i}); err != nil {
			return 11
		}
	}
	time.Sleep(50 * time.Millisecond)
	if err := seccomp.InstallWith(seccomp.Options{Mode: seccomp.Kill}); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 12
	}
	qs := l.tap.Queues()
	if !qs[0].Pending() && !qs[1].Pending() {
		return 13
	}
	buf := make([]byte, 2048)
	var frame []byte
	for _, q := range qs {
		for {
			n, err := q.TryReadv([][]byte{buf})
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				return 14
			}
			frame = append(frame[:0], buf[:n]...)
		}
		if q.Pending() {
			return 15
		}
	}
	if frame == nil {
		return 16
	}
	// A shrink: pinned, detached, unpinned; then attached again.
	if qs[0].PinToFirst(true) != nil || qs[1].SetEnabled(false) != nil || qs[0].PinToFirst(false) != nil ||
		qs[1].SetEnabled(true) != nil {
		return 17
	}
	if _, err := qs[0].Writev([][]byte{frame}); err != nil {
		return 18
	}
	if qs[1].SetReadDeadline(time.Now().Add(20*time.Millisecond)) != nil {
		return 19
	}
	if _, _, err := qs[1].ReadvOrPark([][]byte{buf}, func() {}); err != nil && err != os.ErrDeadlineExceeded {
		return 20
	}
	return 0
}
