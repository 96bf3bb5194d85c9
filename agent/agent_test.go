package agent

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

func decoded(t *testing.T, w uint32) exitdev.Report {
	t.Helper()
	r, err := exitdev.Decode(w)
	if err != nil {
		t.Fatalf("status word 0x%08x: %v", w, err)
	}
	return r
}

// TestRunCommand runs real commands (no chroot) and checks the status word
// the exit device would get, and the streams.
func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	out, errf := filepath.Join(dir, "out"), filepath.Join(dir, "err")
	for _, f := range []string{out, errf} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "GREETING=hello"}
	for _, tc := range []struct {
		name  string
		argv  []string
		want  exitdev.Report
		errno syscall.Errno
	}{
		{"exit 0", []string{"true"}, exitdev.Report{Kind: exitdev.KindExited, Code: 0}, 0},
		{"exit 7", []string{"sh", "-c", "exit 7"}, exitdev.Report{Kind: exitdev.KindExited, Code: 7}, 0},
		{"killed", []string{"sh", "-c", "kill -9 $$"}, exitdev.Report{Kind: exitdev.KindSignaled, Signal: 9}, 0},
		{"not found", []string{"no-such-command-flint"}, exitdev.Report{Kind: exitdev.KindAgentFailed, Stage: exitdev.StageExec}, syscall.ENOENT},
		{"no such path", []string{dir + "/missing"}, exitdev.Report{Kind: exitdev.KindAgentFailed, Stage: exitdev.StageExec}, syscall.ENOENT},
		{"not executable", []string{notExec}, exitdev.Report{Kind: exitdev.KindAgentFailed, Stage: exitdev.StageExec}, syscall.EACCES},
	} {
		s := &Spec{Argv: tc.argv, Env: env}
		r := decoded(t, RunCommand(s, func(exitdev.Stage) {}))
		want := tc.want
		want.Errno = uint16(tc.errno)
		if r.Kind != want.Kind || r.Code != want.Code || r.Signal != want.Signal || r.Stage != want.Stage || r.Errno != want.Errno {
			t.Errorf("%s: %+v (%s), want %+v", tc.name, r, r, want)
		}
	}

	s := &Spec{Argv: []string{"sh", "-c", `echo "$GREETING from $(pwd)"; echo oops >&2`}, Env: env, Dir: dir, Stdout: out, Stderr: errf}
	if r := decoded(t, RunCommand(s, func(exitdev.Stage) {})); r.Kind != exitdev.KindExited || r.Code != 0 {
		t.Fatalf("echo: %s", r)
	}
	if b, _ := os.ReadFile(out); string(b) != "hello from "+dir+"\n" {
		t.Errorf("stdout %q", b)
	}
	if b, _ := os.ReadFile(errf); string(b) != "oops\n" {
		t.Errorf("stderr %q (must not be mixed with stdout)", b)
	}
	s.Stdout = filepath.Join(dir, "no-such-dir", "out")
	if r := decoded(t, RunCommand(s, func(exitdev.Stage) {})); r.Kind != exitdev.KindAgentFailed || r.Stage != exitdev.StageExec {
		t.Errorf("missing stdout device: %s, want an exec-stage failure", r)
	}
}

// TestLookPathInRoot: the command is found in the chroot's PATH, not the
// agent's.
func TestLookPathInRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "opt/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "opt/bin/tool"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := lookPath(root, "/", "tool", []string{"PATH=/usr/bin:/opt/bin"}); err != nil || p != "/opt/bin/tool" {
		t.Errorf("lookPath: %q, %v", p, err)
	}
	if _, err := lookPath(root, "/", "sh", []string{"PATH=/opt/bin"}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("sh outside the root's PATH: %v, want ENOENT", err)
	}
	if _, err := lookPath(root, "/", "tool", []string{"PATH=relative:/nowhere"}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("relative PATH entries must be ignored: %v", err)
	}
	// An absolute symbolic link resolves inside the root (the host's
	// /bin/sh -> /bin/busybox in a shared root), not in the agent's.
	if err := os.Symlink("/opt/bin/tool", filepath.Join(root, "opt/bin/link")); err != nil {
		t.Fatal(err)
	}
	if p, err := lookPath(root, "/", "link", []string{"PATH=/opt/bin"}); err != nil || p != "/opt/bin/link" {
		t.Errorf("absolute link in the root: %q, %v", p, err)
	}
	if p, err := lookPath(root, "/opt", "./bin/tool", nil); err != nil || p != "./bin/tool" {
		t.Errorf("a relative path from the working directory: %q, %v", p, err)
	}
}

// recSystem records what Prepare asks of the kernel; fail makes one call
// fail. (The real calls need PID 1 in a guest: the end-to-end tests run them.)
type recSystem struct {
	calls    []string
	fail     string
	progress []exitdev.Stage
}

func (r *recSystem) do(call string) error {
	r.calls = append(r.calls, call)
	if r.fail != "" && strings.HasPrefix(call, r.fail) {
		return syscall.ENODEV
	}
	return nil
}
func (r *recSystem) Progress(s exitdev.Stage)  { r.progress = append(r.progress, s) }
func (r *recSystem) EarlyMounts() error        { return r.do("early") }
func (r *recSystem) LoopbackUp() error         { return r.do("lo") }
func (r *recSystem) LoadModule(p string) error { return r.do("module " + p) }
func (r *recSystem) Mount(m Mount) error {
	if m.InRoot != "" {
		return r.do("mount " + m.FSType + " " + m.Target + " in " + m.InRoot)
	}
	return r.do("mount " + m.FSType + " " + m.Target)
}
func (r *recSystem) WaitDevice(p string, d time.Duration) error {
	return r.do("wait " + p + " " + d.String())
}
func (r *recSystem) ConfigureInterface(mac string, a netip.Prefix) error {
	return r.do("if " + mac + " " + a.String())
}

func TestPrepareOrderAndStages(t *testing.T) {
	s, err := DecodeSpec(strings.NewReader(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	var rec recSystem
	if err := Prepare(s, &rec); err != nil {
		t.Fatal(err)
	}
	want := []string{"early", "module /flint/modules/virtio.ko", "module /flint/modules/virtio_ring.ko",
		"wait /dev/hvc1 5s", "wait /dev/hvc2 5s", "mount virtiofs /flint/lower",
		"mount none /flint/root/proc", "mount none /flint/root/sys", "mount none /flint/root/dev",
		"mount virtiofs /flint/root/tmp/share in /flint/root", // made as the command sees the root
		"lo", "if 52:54:00:12:34:56 10.0.2.15/24"}
	if !slices.Equal(rec.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", rec.calls, want)
	}
	wantProgress := []exitdev.Stage{exitdev.StageEarly, exitdev.StageModules, exitdev.StageMounts, exitdev.StageNetwork, exitdev.StageExec}
	if !slices.Equal(rec.progress, wantProgress) {
		t.Errorf("progress %v, want %v", rec.progress, wantProgress)
	}
	for fail, stage := range map[string]exitdev.Stage{
		"early": exitdev.StageEarly, "module /flint/modules/virtio_ring": exitdev.StageModules,
		"mount virtiofs": exitdev.StageMounts, "mount none /flint/root/dev": exitdev.StageMounts,
		"lo": exitdev.StageNetwork, "if ": exitdev.StageNetwork, "wait /dev/hvc2": exitdev.StageModules,
	} {
		rec := recSystem{fail: fail}
		err := Prepare(s, &rec)
		var se *StepError
		if !errors.As(err, &se) || se.Stage != stage || se.Errno() != syscall.ENODEV {
			t.Errorf("%s failing: %v, want stage %s with ENODEV", fail, err, stage)
			continue
		}
		if r := decoded(t, se.Word()); r.Kind != exitdev.KindAgentFailed || r.Stage != stage || r.Errno != uint16(syscall.ENODEV) {
			t.Errorf("%s failing: word says %s", fail, r)
		}
		if last := rec.calls[len(rec.calls)-1]; !strings.HasPrefix(last, fail) {
			t.Errorf("%s failing: a step ran after it (%q)", fail, last)
		}
	}
}

// TestPrepareOverlay: upperdir and workdir are created, and the opaque
// directories in the upperdir carry the overlay's opaque mark.
func TestPrepareOverlay(t *testing.T) {
	dir := t.TempDir()
	upper, work := filepath.Join(dir, "rw/upper"), filepath.Join(dir, "rw/work")
	m := Mount{Source: "overlay", Target: filepath.Join(dir, "root"), FSType: "overlay",
		Options: []string{"lowerdir=/", "upperdir=" + upper, "workdir=" + work}, Opaque: []string{"proc", "sys"}}
	err := prepareOverlay(m)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) {
		t.Skipf("no trusted.* attributes here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{upper, work, filepath.Join(upper, "proc"), filepath.Join(upper, "sys")} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(upper, "proc"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("proc not opaque: %q %v", buf[:n], err)
	}
	m.Options = []string{"lowerdir=/"}
	if err := prepareOverlay(m); err == nil {
		t.Error("opaque directories without an upperdir accepted")
	}
}

// TestWaitDeviceMissing: a stream device that never appears (its driver
// is missing from the guest) ends the wait within its bound with ENODEV,
// which Prepare reports as a modules-stage failure: a boot failure (120),
// not the command's 126 or 127.
func TestWaitDeviceMissing(t *testing.T) {
	start := time.Now()
	err := Linux{}.WaitDevice(filepath.Join(t.TempDir(), "hvc0"), 50*time.Millisecond)
	if !errors.Is(err, syscall.ENODEV) || time.Since(start) > 5*time.Second {
		t.Fatalf("WaitDevice: %v after %v, want ENODEV within the bound", err, time.Since(start))
	}
	se := &StepError{exitdev.StageModules, err}
	if r := decoded(t, se.Word()); r.Stage != exitdev.StageModules || r.Errno != uint16(syscall.ENODEV) {
		t.Errorf("status word %s", r)
	}
}

// TestRunLogsExecFailure: a command that cannot start is an error for the
// console log naming what failed, beside its status word; before, only
// Prepare's steps were logged.
func TestRunLogsExecFailure(t *testing.T) {
	dir := t.TempDir()
	s := &Spec{Argv: []string{"no-such-command-flint"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir}
	word, err := Run(s, &recSystem{})
	if r := decoded(t, word); r.Kind != exitdev.KindAgentFailed || r.Stage != exitdev.StageExec || r.Errno != uint16(syscall.ENOENT) {
		t.Errorf("status %s, want an exec-stage failure, ENOENT", r)
	}
	if err == nil || !strings.Contains(err.Error(), "no-such-command-flint") {
		t.Errorf("error %v, want one naming the command", err)
	}
}

// TestRunMissingWorkingDirectory: a working directory the guest cannot
// enter (a host directory the shared root does not show) fails the run
// at the mounts stage, naming the directory: it was an exec-stage ENOENT,
// which the host reports as "the command was not found" (127) for a
// command that is there.
func TestRunMissingWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir   string
		errno syscall.Errno
	}{{filepath.Join(dir, "gone"), syscall.ENOENT}, {file, syscall.ENOTDIR}} {
		s := &Spec{Argv: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: tc.dir}
		word, err := Run(s, &recSystem{})
		if r := decoded(t, word); r.Kind != exitdev.KindAgentFailed || r.Stage != exitdev.StageMounts || r.Errno != uint16(tc.errno) {
			t.Errorf("%s: status %s, want a mounts-stage failure with %v", tc.dir, r, tc.errno)
		}
		if err == nil || !strings.Contains(err.Error(), "working directory "+tc.dir) {
			t.Errorf("%s: error %v, want one naming the working directory", tc.dir, err)
		}
	}
}

// TestRunCommandReapsOrphans: the agent is PID 1, so every process the
// command orphans becomes its child; one that exits while the command
// runs was left a zombie for the rest of the run (a test suite that
// orphans thousands runs out of PIDs). The test process stands in for
// PID 1 as a child subreaper; the command's own status still comes
// through.
func TestRunCommandReapsOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	// Each subshell forks a child and exits at once: the child is
	// orphaned, reparented to the subreaper, and exits.
	s := &Spec{Argv: []string{"sh", "-c", "for i in 1 2 3 4 5; do (true &); done; sleep 0.3; exit 3"}, Env: []string{"PATH=/usr/bin:/bin"}}
	if r := decoded(t, RunCommand(s, func(exitdev.Stage) {})); r.Kind != exitdev.KindExited || r.Code != 3 {
		t.Fatalf("status %s, want exit 3", r)
	}
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if err == nil && info.Signo != 0 {
		t.Errorf("a zombie child is left (waitid found one): %+v", info)
	}
	// Reap what this test left, if anything, so later tests see no strays.
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
			break
		}
	}
}

// TestRunCommandScriptWithoutShebang: a script with no #! line runs under
// /bin/sh, as execvp(3) and every shell run it (and virtme-ng and vmtest,
// which start the command through a shell); it was "could not be
// executed" (126, ENOEXEC).
func TestRunCommandScriptWithoutShebang(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("echo \"$0 $1\"; exit 5\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Spec{Argv: []string{"./script", "arg"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Stdout: out}
	if r := decoded(t, RunCommand(s, func(exitdev.Stage) {})); r.Kind != exitdev.KindExited || r.Code != 5 {
		t.Fatalf("status %s, want exit 5", r)
	}
	if b, _ := os.ReadFile(out); string(b) != "./script arg\n" {
		t.Errorf("stdout %q, want the script's own name and argument", b)
	}
	// A binary the kernel cannot run (another machine's) is not a script.
	if err := os.WriteFile(script, []byte("\x7fELF\x02\x01\x01 not for this machine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := decoded(t, RunCommand(s, func(exitdev.Stage) {}))
	if r.Kind != exitdev.KindAgentFailed || r.Stage != exitdev.StageExec || r.Errno != uint16(syscall.ENOEXEC) {
		t.Errorf("ELF file: status %s, want an exec failure with ENOEXEC", r)
	}
}

// TestRunCommandOwnSession: the command leads its own session and process
// group. It shared the agent's, the kernel's group 0 with PID 1 and every
// other process in it, so `kill 0` in the command's script (trap 'kill 0'
// EXIT) signalled the agent too.
func TestRunCommandOwnSession(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// /proc/PID/stat: pid (comm) state ppid pgrp session ...
	s := &Spec{Argv: []string{"sh", "-c", `set -- $(cat /proc/$$/stat); echo "$1 $5 $6"`}, Env: []string{"PATH=/usr/bin:/bin"}, Stdout: out}
	if r := decoded(t, RunCommand(s, func(exitdev.Stage) {})); r.Kind != exitdev.KindExited || r.Code != 0 {
		t.Fatalf("status %s", r)
	}
	b, _ := os.ReadFile(out)
	f := strings.Fields(string(b))
	if len(f) != 3 || f[1] != f[0] || f[2] != f[0] {
		t.Errorf("pid, process group, session: %q, want all three the same", b)
	}
}

// TestPrepareOptionalMount: an optional mount that fails (the kernel's
// module directory at /lib/modules) is a console line and the steps go
// on; a mount that is not optional still ends the run at the mounts stage.
func TestPrepareOptionalMount(t *testing.T) {
	var log strings.Builder
	old := prepareLog
	prepareLog = &log
	t.Cleanup(func() { prepareLog = old })
	s := &Spec{Argv: []string{"true"}, Root: "/flint/root", After: []Mount{
		{Source: "/flint/lower/mods", Target: "/flint/root/lib/modules/6.1", FSType: "none", Options: []string{"bind", "ro"}, Optional: true},
		{Source: "flintshare0", Target: "/flint/root/mnt", FSType: "virtiofs"},
	}}
	rec := recSystem{fail: "mount none /flint/root/lib"}
	if err := Prepare(s, &rec); err != nil {
		t.Fatalf("optional mount failing: %v", err)
	}
	if !slices.Contains(rec.calls, "mount virtiofs /flint/root/mnt in /flint/root") || rec.calls[len(rec.calls)-1] != "lo" {
		t.Errorf("calls after the optional mount failed: %q", rec.calls)
	}
	if l := log.String(); !strings.HasPrefix(l, LogPrefix) || !strings.Contains(l, "/flint/root/lib/modules/6.1 (optional, left out)") {
		t.Errorf("console line %q", l)
	}
	s.After[0].Optional = false
	var se *StepError
	if err := Prepare(s, &recSystem{fail: "mount none /flint/root/lib"}); !errors.As(err, &se) || se.Stage != exitdev.StageMounts {
		t.Errorf("mandatory mount failing: %v, want a mounts-stage failure", err)
	}
}
