package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// earlyMount is one of the filesystems the agent mounts first.
type earlyMount struct {
	Mount
	// optional: a kernel built without it (or a mount that fails) is
	// logged and skipped; the command may well not need it.
	optional bool
	// kernelDir: the kernel makes the target itself (a directory in
	// sysfs, present when the filesystem is built): none, nothing to do.
	kernelDir bool
}

// earlyMounts are what every command expects of a Linux system, as
// virtme-ng's and vmtest's init mount them: /proc, /sys and /dev, with
// /dev/pts (openpty, script, expect) and /dev/shm (shm_open, sem_open:
// Python's multiprocessing), /tmp and /run, and the kernel's own
// filesystems a kernel developer reaches for (cgroup2, debugfs, tracefs,
// bpf). Parents come before what is mounted in them.
var earlyMounts = []earlyMount{
	{Mount: Mount{Source: "proc", Target: "/proc", FSType: "proc", Options: []string{"nosuid", "nodev", "noexec"}}},
	{Mount: Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs", Options: []string{"nosuid", "nodev", "noexec"}}},
	{Mount: Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Options: []string{"nosuid", "mode=755"}}},
	{Mount: Mount{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Options: []string{"nosuid", "noexec", "gid=5", "mode=620", "ptmxmode=666"}}, optional: true},
	{Mount: Mount{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}}},
	{Mount: Mount{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}}},
	{Mount: Mount{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}}},
	{Mount: Mount{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Options: []string{"nosuid", "nodev", "noexec"}}, optional: true, kernelDir: true},
	{Mount: Mount{Source: "debugfs", Target: "/sys/kernel/debug", FSType: "debugfs", Options: []string{"nosuid", "nodev", "noexec"}}, optional: true, kernelDir: true},
	{Mount: Mount{Source: "tracefs", Target: "/sys/kernel/tracing", FSType: "tracefs", Options: []string{"nosuid", "nodev", "noexec"}}, optional: true, kernelDir: true},
	{Mount: Mount{Source: "bpf", Target: "/sys/fs/bpf", FSType: "bpf", Options: []string{"nosuid", "nodev", "noexec", "mode=700"}}, optional: true, kernelDir: true},
}

// devLinks are the links in /dev that udev (or systemd) makes on a host
// and devtmpfs lacks: without them `echo x >/dev/stderr` in a shell that
// does not emulate the name (dash, busybox ash) wrote a regular file in
// /dev and the output never reached the command's stderr; `cat
// /dev/stdin` and bash's <(...) failed.
var devLinks = [][2]string{
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// setupEarly mounts earlyMounts with mount (a mount already there, EBUSY,
// is fine), logging to log each optional one that failed, then makes
// devLinks in dev. exists tells whether a kernelDir target is there.
func setupEarly(mount func(Mount) error, exists func(string) bool, dev string, log io.Writer) error {
	for _, m := range earlyMounts {
		if m.kernelDir && !exists(m.Target) {
			continue // not built into this kernel
		}
		err := mount(m.Mount)
		switch {
		case err == nil || errors.Is(err, unix.EBUSY):
		case m.optional:
			logf(log, "%s on %s: %v (skipped)", m.FSType, m.Target, err)
		default:
			return fmt.Errorf("%s on %s: %w", m.FSType, m.Target, err)
		}
	}
	for _, l := range devLinks {
		p := path.Join(dev, l[0])
		if err := os.Symlink(l[1], p); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	return nil
}

// guestHostname names a guest the kernel gave no name (no hostname= on
// its command line). The kernel's default, "(none)", is what the command
// saw in hostname, uname -n and its tools' logs and prompts.
const guestHostname = "flint"

// nameGuest sets the guest's host name to guestHostname when the kernel's
// (read) is still "(none)".
func nameGuest(read func() (string, error), set func(string) error) error {
	cur, err := read()
	if err != nil || strings.TrimSpace(cur) != "(none)" {
		return err
	}
	return set(guestHostname)
}
