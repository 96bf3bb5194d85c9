package jail

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/net/tap"
)

// tapQueueEnv tells the re-executed test binary which TAP case
// TestTAPQueuesAfterDropChild plays.
const tapQueueEnv = "JAIL_TEST_TAPQ"

// tapQueueOK is what the child prints once every queue toggle passed.
const tapQueueOK = "tap queues toggled after the drop"

// TestTAPQueuesAfterDrop: a multiqueue net device detaches and
// re-attaches TAP queues (TUNSETQUEUE) whenever the guest changes its
// pair count, long after the jail dropped every privilege. Linux checks
// the TAP's owner, group or CAP_NET_ADMIN (tun_not_capable) only when a
// file attaches by name (TUNSETIFF); TUNSETQUEUE on a file that attached
// before asks only the LSM. So, in a child that opens the TAP as root
// and then drops exactly as Enter does, detach then attach (and the
// steering pin a device puts around a detach, TUNSETSTEERINGEBPF with
// the program Open loaded) works for a TAP it created, for one that
// existed before (no owner) and for one owned by some other uid, while
// creating a TAP is refused (the drop took CAP_NET_ADMIN). Should a kernel start checking ownership at
// TUNSETQUEUE, this test fails and `--jail` with queues>1 needs the TAP
// owned by the jail's uid.
func TestTAPQueuesAfterDrop(t *testing.T) {
	switch {
	case os.Geteuid() != 0:
		testenv.SkipOrFail(t, "TAP queues after the jail's drop: needs root")
		return
	case !fileExists(tap.DevicePath):
		testenv.SkipOrFail(t, "TAP queues after the jail's drop: no "+tap.DevicePath)
		return
	}
	for _, c := range []string{"created", "existing", "owned-by-other"} {
		t.Run(c, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestTAPQueuesAfterDropChild$", "-test.v")
			cmd.Env = append(os.Environ(), tapQueueEnv+"="+c)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tapQueueOK) {
				t.Fatalf("child: %v\n%s", err, out)
			}
		})
	}
}

// TestTAPQueuesAfterDropChild is TestTAPQueuesAfterDrop's child: in a
// network namespace of its own, it opens a 2-queue TAP as root, drops to
// uid/gid 65534, then detaches and re-attaches both queues.
func TestTAPQueuesAfterDropChild(t *testing.T) {
	c := os.Getenv(tapQueueEnv)
	if c == "" {
		t.Skip("run by TestTAPQueuesAfterDrop")
	}
	runtime.LockOSThread() // never unlocked: the namespace dies with the thread
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	const name, uid, gid = "fjailq0", 65534, 65534
	opts := tap.Options{Name: name, Mode: tap.CreateNew, Queues: 2}
	if c != "created" {
		// A TAP that existed before flint: persistent, made by root.
		pre := opts
		pre.Persist = true
		p, err := tap.Open(pre)
		if err != nil {
			t.Fatal(err)
		}
		if c == "owned-by-other" {
			if err := control(p.Queue(0), func(fd int) error { return unix.IoctlSetInt(fd, unix.TUNSETOWNER, 4242) }); err != nil {
				t.Fatal(err)
			}
		}
		p.Close()
		opts.Mode = tap.OpenExisting
	}
	tp, err := tap.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	// As Enter: out of the TAP's network namespace (with cgo, which
	// cannot move every thread, it stays).
	if err := isolateNetwork(); err != nil {
		t.Fatal(err)
	}
	l, err := openLauncher()
	if err != nil {
		t.Fatal(err)
	}
	defer l.stat.Close()
	if err := drop(Spec{UID: uid, GID: gid}, lastCapability(), l); err != nil {
		t.Fatal(err)
	}
	// Refused: by TUNSETIFF (no CAP_NET_ADMIN), or already by the open
	// where /dev/net/tun is not world-writable (mode 0600).
	if _, err := tap.Open(tap.Options{Name: "fjailq1", Mode: tap.CreateNew}); !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		t.Fatalf("creating a TAP after the drop: %v, want EPERM or EACCES", err)
	}
	for _, q := range tp.Queues() {
		for _, on := range []bool{false, true} {
			if err := q.SetEnabled(on); err != nil {
				t.Fatalf("queue %d: SetEnabled(%v) as uid %d: %v", q.Index(), on, os.Geteuid(), err)
			}
		}
	}
	// Attached again: a second attach is refused (nothing is detached).
	if err := tp.Queue(1).SetEnabled(true); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("attaching an attached queue: %v, want EINVAL", err)
	}
	// The steering pin a shrink puts around the detach: its program was
	// loaded by Open, as root; attaching it (TUNSETSTEERINGEBPF) needs
	// no privilege.
	for _, on := range []bool{true, false} {
		if err := tp.Queue(0).PinToFirst(on); err != nil {
			t.Fatalf("PinToFirst(%v) as uid %d: %v", on, os.Geteuid(), err)
		}
	}
	fmt.Println(tapQueueOK)
}

// control runs f on q's descriptor.
func control(q *tap.Queue, f func(fd int) error) error {
	rc, err := q.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
