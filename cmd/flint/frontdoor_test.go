package main

// Front-door cases: bad input on the command line or in a config file is
// one line on stderr naming the flag or key and the value, exit code 2,
// and no VM. Each table holds the cases of one fix; the other front-door
// checks live next to the code they cover (app_test, config_test, ...).

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm"
)

// TestKernelContentErrorsNameTheFile: a kernel file that reads fine but is
// no kernel Flint can boot (garbage, a truncated boot sector, an empty
// file, a vmlinux that does not fit the memory or lacks the asked entry)
// is an error naming the flag or config key and the file, as an unreadable
// one is: not a bare "kernel: ..." or "no kernel".
func TestKernelContentErrorsNameTheFile(t *testing.T) {
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	files := map[string]string{
		"garbage":   writeFile(t, "garbage", garbage),
		"truncated": writeFile(t, "truncated", []byte("MZ")),
		"empty":     writeFile(t, "empty", nil),
		"zeros":     writeFile(t, "zeros", make([]byte, 600)),
		"vmlinux":   writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n")),
	}
	for _, c := range []struct {
		file  string
		extra []string
		want  string
	}{
		{"garbage", nil, "kernel: not a bzImage (boot flag at 0x1fe"},
		{"truncated", nil, "kernel: truncated: file has 2 bytes"},
		{"empty", nil, "kernel: the file is empty"},
		{"zeros", nil, "kernel: not a bzImage (boot flag at 0x1fe is 0x0000"},
		{"vmlinux", []string{"--memory", "16"}, "does not fit in guest RAM"},
		{"vmlinux", []string{"--kernel-entry", "pvh"}, "no PVH entry note"},
	} {
		p := files[c.file]
		t.Run(c.file+fmt.Sprint(c.extra), func(t *testing.T) {
			wantUsageError(t, append([]string{"run", "--kernel", p}, c.extra...), "--kernel: "+p+": ")
			wantUsageError(t, append([]string{"run", "--kernel", p}, c.extra...), c.want)
			conf := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}}`, p))
			wantUsageError(t, append([]string{"run", "--config", conf}, c.extra...),
				"--config "+conf+": boot-source.kernel_image_path: "+p+": ")
		})
	}
}

// TestIntegerFlagValues: every integer flag, whatever its Go type, says
// what it wants for a value that is no number (the flag package's own
// reason is a bare "parse error").
func TestIntegerFlagValues(t *testing.T) {
	k := writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n"))
	run := []string{"run", "--kernel", k}
	fc := []string{"firecracker", "--no-api"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(run, "--console-limit", "abc"), `--console-limit "abc": want a whole number`},
		{append(run, "--console-limit", "1.5"), `--console-limit "1.5": want a whole number`},
		{append(run, "--jail-nofile", "-1"), `--jail-nofile "-1": want a whole number, 0 or more`},
		{append(run, "--jail-fsize", "lots"), `--jail-fsize "lots": want a whole number, 0 or more`},
		{append(run, "--jail-fsize", "99999999999999999999999"), `--jail-fsize "99999999999999999999999": out of range`},
		{append(fc, "--http-api-max-payload-size", "abc"), `--http-api-max-payload-size "abc": want a whole number`},
		{append(fc, "--start-time-us", "-5"), `--start-time-us "-5": want a whole number, 0 or more`},
		{[]string{"net-backend", "--jail-nofile", "x"}, `--jail-nofile "x": want a whole number, 0 or more`},
	} {
		t.Run(c.want, func(t *testing.T) { wantUsageError(t, c.args, c.want) })
	}
}

// TestNetBackendErrorsNameTheFlag: a bad net-backend value is named by
// its flag and value, as typed, not by the --net spec net-backend builds
// from its flags (whose field order changed from run to run).
func TestNetBackendErrorsNameTheFlag(t *testing.T) {
	base := []string{"net-backend", "--socket", "/nonexistent/nb.sock"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mac", "zz"}, `net-backend: --mac "zz": want a MAC like`},
		{[]string{"--mac", "01:00:00:00:00:01"}, `net-backend: --mac "01:00:00:00:00:01": a multicast address`},
		{[]string{"--mtu", "0"}, `net-backend: --mtu "0": out of range [68, 65535]`},
		{[]string{"--mtu", "65536"}, `net-backend: --mtu "65536": out of range [68, 65535]`},
		{[]string{"--queues", "0"}, `net-backend: --queues "0": out of range [1, 64]`},
		{[]string{"--queues", "-1"}, `net-backend: --queues "-1": out of range [1, 64]`},
		{[]string{"--rx-irq-gap", "-1s"}, `net-backend: --rx-irq-gap "-1s": want a duration from 0 to 1ms`},
		{[]string{"--tx-irq-gap", "abc"}, `net-backend: --tx-irq-gap "abc": want a duration`},
		{[]string{"--irq-resend", "99999h"}, `net-backend: --irq-resend "99999h": want a duration`},
		{[]string{"--mrg-rxbuf", "yes"}, `net-backend: --mrg-rxbuf "yes": want on or off`},
		{[]string{"--event-idx", "1"}, `net-backend: --event-idx "1": want on or off`},
		{[]string{"--indirect", "x"}, `net-backend: --indirect "x": want on or off`},
		{[]string{"--tap", "abcdefghijklmnop"}, `net-backend: --tap "abcdefghijklmnop": not a valid interface name`},
		{[]string{"--tap", "a/b"}, `net-backend: --tap "a/b": not a valid interface name`},
	} {
		args := append(append([]string{}, base...), c.args...)
		if c.args[0] != "--tap" {
			args = append(args, "--tap", "t0")
		}
		t.Run(c.want, func(t *testing.T) { wantUsageError(t, args, c.want) })
	}
}

// TestNetBackendSocketPath: a --socket path that cannot be bound because
// of what the user typed is a usage error (exit 2) naming it, found
// before the TAP is opened: before, it was exit 1 after the TAP.
func TestNetBackendSocketPath(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, "file", nil)
	long := dir + "/" + strings.Repeat("s", 120)
	for _, c := range []struct{ path, want string }{
		{dir, "--socket " + dir + ": exists and is not a socket"},
		{file, "--socket " + file + ": exists and is not a socket"},
		{dir + "/missing/nb.sock", "--socket " + dir + "/missing/nb.sock: " + dir + "/missing: no such file or directory"},
		{file + "/nb.sock", "--socket " + file + "/nb.sock: " + file + " is not a directory"},
		{long, fmt.Sprintf("--socket %s: %d bytes, a unix socket path has at most 107", long, len(long))},
		{"a\nb/nb.sock", `--socket "a\nb/nb.sock": "a\nb": no such file or directory`},
	} {
		t.Run(c.want, func(t *testing.T) {
			wantUsageError(t, []string{"net-backend", "--socket", c.path, "--tap", "fdtest0"}, c.want)
		})
	}
}

// TestRepeatedFlagRefused: a flag that is not repeatable, given twice, is
// an error naming it, whichever way it is written (--f V, --f=V, a bare
// boolean), in every command; the repeatable ones (--net, --share, --env)
// and words after "--" (the command's own) are not counted, nor is a
// flag-like word that is another flag's value.
func TestRepeatedFlagRefused(t *testing.T) {
	k := writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n"))
	conf := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}}`, k))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--kernel", k, "--cpus", "1", "--cpus", "2"}, "run: --cpus given twice"},
		{[]string{"run", "--kernel", k, "--memory=64", "--memory", "128"}, "run: --memory given twice"},
		{[]string{"run", "--kernel", k, "--kernel", k}, "run: --kernel given twice"},
		{[]string{"run", "--kernel", k, "--timing", "--timing=false"}, "run: --timing given twice"},
		{[]string{"run", "-kernel", k, "--kernel", k}, "run: --kernel given twice"},
		{[]string{"firecracker", "--no-api", "--config-file", conf, "--config-file", conf}, "firecracker: --config-file given twice"},
		{[]string{"net-backend", "--socket", "/nonexistent/s", "--tap", "a", "--tap", "b"}, "net-backend: --tap given twice"},
	} {
		t.Run(c.want, func(t *testing.T) { wantUsageError(t, c.args, c.want) })
	}
	for _, args := range [][]string{
		{"run", "--kernel", k, "--net", "tap=a", "--net", "tap=b"},
		{"run", "--kernel", k, "--cmdline", "--cpus", "--cpus", "2"}, // the first --cpus is --cmdline's value
	} {
		if code, _, stderr, cfg := runArgs(t, args...); code != 0 || cfg == nil {
			t.Errorf("%q: exit code %d: %s", args, code, stderr)
		}
	}
}

// TestEmptyValueRefused: a flag given with an empty value, which would
// read as the flag not given (no initrd, no exit marker, no config file,
// the default log level, a MAC derived from the TAP), is an error naming
// the flag. --cmdline "" stays a valid (empty) command line.
func TestEmptyValueRefused(t *testing.T) {
	k := writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n"))
	conf := configFile(t, fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}}`, k))
	for _, f := range []string{"kernel", "config", "api-sock", "initrd", "exit-marker", "log-level", "jail"} {
		args := []string{"run", "--" + f, ""}
		if f != "kernel" {
			args = append(args, "--kernel", k)
		}
		t.Run(f, func(t *testing.T) { wantUsageError(t, args, "run: --"+f+": empty value") })
	}
	for _, f := range []string{"level", "config-file"} {
		args := []string{"firecracker", "--" + f, ""}
		if f != "config-file" {
			args = append(args, "--no-api", "--config-file", conf)
		}
		t.Run(f, func(t *testing.T) { wantUsageError(t, args, "firecracker: --"+f+": empty value") })
	}
	for _, f := range []string{"mac", "jail"} {
		args := []string{"net-backend", "--socket", "/nonexistent/s", "--tap", "t0", "--" + f, ""}
		t.Run(f, func(t *testing.T) { wantUsageError(t, args, "net-backend: --"+f+": empty value") })
	}
	if code, _, stderr, cfg := runArgs(t, "run", "--kernel", k, "--cmdline", ""); code != 0 || cfg == nil || cfg.Cmdline != "" {
		t.Errorf(`--cmdline "": exit code %d, cfg %v: %s`, code, cfg != nil, stderr)
	}
}

// TestDashDashWithoutCommand: `flint run --kernel K --` with nothing
// after the "--" is an error (the command was forgotten), not a plain
// boot of K, nor a complaint about command-mode flags.
func TestDashDashWithoutCommand(t *testing.T) {
	k := writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n"))
	wantUsageError(t, []string{"run", "--kernel", k, "--"}, "run: no command after --")
	wantUsageError(t, []string{"run", "--kernel", k, "--modules", "builtin", "--"}, "run: no command after --")
	// "--" as a flag's value is no end of the flags.
	if code, _, stderr, cfg := runArgs(t, "run", "--kernel", k, "--cmdline", "--"); code != 0 || cfg == nil || cfg.Cmdline != "--" {
		t.Errorf(`--cmdline --: exit code %d: %s`, code, stderr)
	}
}

// TestAPIModeChecksFlagsAtOnce: `flint run --api-sock` without --config
// checks its flags before it listens: a bad one is exit 2 naming it, and
// no socket is left, instead of an API that waits for a client whose
// InstanceStart would then fail on the flag.
func TestAPIModeChecksFlagsAtOnce(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/api.sock"
	garbage := writeFile(t, "garbage", make([]byte, 1024))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cpus", "0"}, "--cpus 0: must be between 1 and"},
		{[]string{"--memory", "8"}, "--memory 8: must be between"},
		{[]string{"--timeout", "-1s"}, "--timeout -1s: must not be negative"},
		{[]string{"--kernel-entry", "bios"}, `--kernel-entry "bios"`},
		{[]string{"--console", "tty"}, `--console: console "tty"`},
		{[]string{"--console-limit", "-1"}, "--console-limit -1"},
		{[]string{"--net", "tap=t0,mtu=1"}, `--net "tap=t0,mtu=1": mtu="1"`},
		{[]string{"--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"--kernel", garbage}, "--kernel: " + garbage + ": kernel: not a bzImage"},
		{[]string{"--kernel", dir + "/missing"}, "--kernel: " + dir + "/missing: no such file"},
		{[]string{"--initrd", dir}, "--initrd: " + dir + ": a directory"},
	} {
		t.Run(c.want, func(t *testing.T) {
			wantUsageError(t, append([]string{"run", "--api-sock", sock}, c.args...), c.want)
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Fatalf("the socket is left: %v", err)
			}
		})
	}
}

// TestVMErrorsAreOneLine: an error from building or running the VM that
// quotes a name with a line break as the user wrote it (vmm opens the
// console file, the metrics file and the vsock socket itself) still
// prints as one line, the break escaped.
func TestVMErrorsAreOneLine(t *testing.T) {
	var b strings.Builder
	err := &vmm.ConfigError{Err: errors.New("console file: open /nonexistent/a\nb\tc: no such file or directory")}
	if code := vmExitCode(err, &b); code != vmm.ExitUsage {
		t.Errorf("exit code %d, want %d", code, vmm.ExitUsage)
	}
	if want := "flint: console file: open /nonexistent/a\\nb\\tc: no such file or directory\n"; b.String() != want {
		t.Errorf("stderr %q, want %q", b.String(), want)
	}
	b.Reset()
	runMachine(&failedMachine{err: errors.New("vsock: uds_path: listen unix /x/a\nb: bind")}, vmm.Config{}, &b)
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `/x/a\nb: bind`) {
		t.Errorf("stderr %q: want the error on one line, then the exit line", b.String())
	}
}

// failedMachine is a VM whose Run fails with err (stopError).
type failedMachine struct {
	fakeMachine
	err error
}

func (f *failedMachine) Run() vmm.Result { return vmm.Result{Reason: vmm.StopReason(8), Err: f.err} }

// TestNetHelpListsEveryKey: `flint run --help` lists every key a --net
// spec takes (the list the parser gives for an unknown key), so none is
// accepted without being documented.
func TestNetHelpListsEveryKey(t *testing.T) {
	_, err := configs.ParseNetFlag("tap=t0,nosuchkey=1")
	_, list, ok := strings.Cut(fmt.Sprint(err), "(want ")
	if !ok {
		t.Fatalf("unknown key error %v lists no keys", err)
	}
	var usage string
	for _, f := range runCommand(&app{}, nil).Flags {
		if sf, ok := f.(*cli.StringSliceFlag); ok && sf.Name == "net" {
			usage = sf.Usage
		}
	}
	for _, k := range strings.Split(strings.TrimSuffix(list, ")"), ", ") {
		if !strings.Contains(usage, k+"=") {
			t.Errorf("--net's help does not list %s=: %s", k, usage)
		}
	}
}

// TestFailOnNamedOnce: a bad --fail-on names the flag once, not twice
// (verdict's own errors start with it).
func TestFailOnNamedOnce(t *testing.T) {
	k := writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n"))
	for _, c := range []struct{ val, want string }{
		{"bogus", `--fail-on "bogus": unknown kind "bogus" (valid names:`},
		{"", `--fail-on "": empty list`},
		{"all,-bogus", `--fail-on "all,-bogus": unknown kind`},
	} {
		t.Run(c.val, func(t *testing.T) {
			wantUsageError(t, []string{"run", "--kernel", k, "--modules", "builtin", "--fail-on", c.val, "--", "true"}, c.want)
		})
	}
}

// TestErrorsNameTheirCommand: every usage error of a command starts with
// the command's name, as its flag-parsing errors did ("run: unknown flag
// --x"): a bad value found by a check the commands share (buildConfig's,
// the integer flags', the seccomp and jail flags') was "flint: --cpus 0:
// ..." in run and net-backend, with the prefix only here and there.
func TestErrorsNameTheirCommand(t *testing.T) {
	k := writeFile(t, "vmlinux", tinyELF("Linux version 6.1.0 (x@y) #1\n"))
	garbage := writeFile(t, "garbage", []byte("x"))
	empty := configFile(t, `{}`)
	dir := t.TempDir()
	run := []string{"run", "--kernel", k}
	nb := []string{"net-backend", "--socket", dir + "/nb.sock", "--tap", "t0"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--kernel", dir + "/missing"}, "run: --kernel: " + dir + "/missing: no such file"},
		{[]string{"run", "--kernel", garbage}, "run: --kernel: " + garbage + ": kernel: truncated"},
		{append(run, "--cpus", "0"), "run: --cpus 0: must be between"},
		{append(run, "--cpus", "x"), `run: --cpus "x": want a whole number`},
		{append(run, "--memory", "1"), "run: --memory 1: must be between"},
		{append(run, "--timeout", "-1s"), "run: --timeout -1s: must not be negative"},
		{append(run, "--timeout", "x"), `run: --timeout "x": want a duration`},
		{append(run, "--timing=maybe"), `run: --timing "maybe": want true or false`},
		{append(run, "--kernel-entry", "bios"), `run: --kernel-entry "bios"`},
		{append(run, "--console", "tty"), `run: --console: console "tty"`},
		{append(run, "--console-limit", "-1"), "run: --console-limit -1"},
		{append(run, "--net", "bogus"), `run: --net "bogus"`},
		{append(run, "--net", "tap=t0,ip=10.0.0.2/24"), `run: --net "tap=t0,ip=10.0.0.2/24": ip= needs command mode`},
		{append(run, "--log-level", "loud"), `run: --log-level "loud"`},
		{append(run, "--initrd", dir), "run: --initrd: " + dir},
		{append(run, "--seccomp", "x"), `run: --seccomp "x"`},
		{append(run, "--jail", dir), "run: --jail needs --uid and --gid"},
		{append(run, "--uid", "5"), "run: --uid needs --jail"},
		{[]string{"run", "--config", empty}, "run: --config " + empty + ": boot-source is required"},
		{[]string{"run", "--config", dir + "/missing.json"}, "run: --config: " + dir + "/missing.json"},
		{[]string{"run", "--api-sock", dir + "/no/api.sock"}, "run: --api-sock " + dir + "/no/api.sock: listen unix"},
		{[]string{"run", "--api-sock", dir + "/api.sock", "--cpus", "0"}, "run: --cpus 0: must be between"},
		{append(run, "--modules", "builtin", "--fail-on", "bogus", "--", "true"), `run: --fail-on "bogus"`},
		{append(run, "--modules", "builtin", "--idle-timeout", "-1s", "--", "true"), "run: --idle-timeout -1s: must not be negative"},
		{append(run, "--modules", "builtin", "--env", "1=x", "--", "true"), `run: --env "1=x"`},
		{append(run, "--modules", "builtin", "--share", "x", "--", "true"), `run: --share "x"`},
		{append(run, "--modules", "builtin", "--report", dir+"/no/r.json", "--", "true"), "run: --report: "},
		{[]string{"firecracker", "--http-api-max-payload-size", "x"}, `firecracker: --http-api-max-payload-size "x": want a whole number`},
		{[]string{"firecracker", "--start-time-us", "-5"}, `firecracker: --start-time-us "-5"`},
		{[]string{"firecracker", "--api-sock", dir + "/no/fc.sock"}, "firecracker: --api-sock " + dir + "/no/fc.sock: listen unix"},
		{[]string{"firecracker", "--no-api", "--config-file", empty}, "firecracker: --config-file " + empty + ": boot-source is required"},
		{append(nb, "--mtu", "x"), `net-backend: --mtu "x": want a whole number`},
		{append(nb, "--queues", "x"), `net-backend: --queues "x": want a whole number`},
		{append(nb, "--log-level", "x"), `net-backend: --log-level "x"`},
		{append(nb, "--jail-nofile", "x"), `net-backend: --jail-nofile "x"`},
		{append(nb, "--seccomp", "x"), `net-backend: --seccomp "x"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, _, stderr, _ := runArgs(t, c.args...)
			if !strings.HasPrefix(stderr, "flint: "+c.want) {
				t.Errorf("stderr %q, want it to start with %q", stderr, "flint: "+c.want)
			}
			wantUsageError(t, c.args, c.want)
		})
	}
}
