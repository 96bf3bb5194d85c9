package main

// The --jail flags of `flint run` and `flint net-backend` (internal/jail
// does the work): in the process the user started they re-execute flint
// jailed and wait for it; in that jailed child they add jail.Enter to the
// hook that runs once setup is done, before the seccomp filter.

import (
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/internal/jail"
	"github.com/flintvm/flint/internal/seccomp"
	"github.com/flintvm/flint/vmm"
)

// jailFlags are the jail flags of `flint run` and `flint net-backend`;
// note ends --jail's usage (run's: not with command mode).
func jailFlags(note string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "jail", Usage: "once set up, run jailed: this existing directory becomes / (pivot_root, new mount, pid and IPC namespaces), as --uid/--gid with no capabilities; every file, TAP and socket is opened before" + note},
		&cli.StringFlag{Name: "uid", Usage: "with --jail: the numeric user id flint runs as (not 0)"},
		&cli.StringFlag{Name: "gid", Usage: "with --jail: the numeric group id flint runs as (not 0)"},
		&cli.Uint64Flag{Name: "jail-nofile", Usage: "with --jail: RLIMIT_NOFILE", Value: jail.DefaultNoFile},
		&cli.Uint64Flag{Name: "jail-fsize", Usage: "with --jail: RLIMIT_FSIZE in bytes (0: the largest drive image open for writing, at least 1 GiB)"},
	}
}

// exitCode is an Action's way to end flint with a given code (the jail
// launcher's: the jailed child's), with msg printed first unless empty.
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return e.msg }

// jailSpec reads the jail flags: nil without --jail. Bad values are one
// usage line.
func jailSpec(c *cli.Context) (*jail.Spec, error) {
	dir := c.String("jail")
	if dir == "" {
		for _, f := range []string{"uid", "gid", "jail-nofile", "jail-fsize"} {
			if c.IsSet(f) {
				return nil, usagef("--%s needs --jail", f)
			}
		}
		return nil, nil
	}
	if !c.IsSet("uid") || !c.IsSet("gid") {
		return nil, usagef("--jail needs --uid and --gid (numeric)")
	}
	uid, err := jail.ParseID("--uid", c.String("uid"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	gid, err := jail.ParseID("--gid", c.String("gid"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	if n := c.Uint64("jail-nofile"); n < 64 {
		return nil, usagef("--jail-nofile %d: at least 64 (flint itself holds dozens of descriptors)", n)
	} else if max, ok := nrOpen(); ok && n > max {
		// setrlimit would refuse it (EPERM) in the jailed child,
		// after the VM is set up: exit 1 instead of this line.
		return nil, usagef("--jail-nofile %d: at most %d (the kernel's fs.nr_open)", n, max)
	}
	s := &jail.Spec{Dir: dir, UID: uid, GID: gid, NoFile: c.Uint64("jail-nofile"), FSize: c.Uint64("jail-fsize")}
	if err := s.Validate(); err != nil {
		return nil, usagef("--jail: %v", err)
	}
	return s, nil
}

// jailHook wraps next (the seccomp hook, or nil) with the jail the flags
// ask for. Without --jail it returns next. In the launcher it runs the
// jailed child and returns its exit code as an exitCode error; in the
// child it returns a hook that enters the jail, then runs next. It
// decides once per app: API mode asks again for each VM.
func (a *app) jailHook(c *cli.Context, next func(seccomp.Options) error) (func(seccomp.Options) error, error) {
	spec, err := jailSpec(c)
	if err != nil {
		return nil, err
	}
	if !a.jailChecked {
		a.jailChecked = true
		a.jailDir, a.jailChild, err = a.childOfJail()
		if err != nil {
			return nil, exitCode{vmm.ExitVMMErr, "flint: " + err.Error()}
		}
	}
	switch {
	case spec == nil && a.jailChild:
		return nil, usagef("started as a jailed child without --jail")
	case spec == nil:
		return next, nil
	case len(afterDashDash(c, a.args)) > 0:
		return nil, usagef("--jail: command mode shares the host's files with the guest on purpose; run it without --jail")
	case !a.jailChild:
		code, err := a.launchJail(*spec, a.args)
		if err != nil {
			return nil, exitCode{vmm.ExitVMMErr, "flint: " + err.Error()}
		}
		return nil, exitCode{code: code}
	}
	dir := a.jailDir
	return func(o seccomp.Options) error {
		if dir == nil {
			return nil // entered already (API mode's next VM)
		}
		d := dir
		dir, a.jailDir = nil, nil
		if err := jail.Enter(*spec, d); err != nil {
			return err
		}
		if next != nil {
			return next(o)
		}
		return nil
	}, nil
}

// childOfJail is jail.Child (tests substitute it).
func childOfJail() (*os.File, bool, error) { return jail.Child() }

// nrOpen is the kernel's fs.nr_open, the largest RLIMIT_NOFILE a process
// can have; ok is false when it cannot be read.
func nrOpen() (uint64, bool) {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
