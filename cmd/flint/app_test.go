package main

import (
	"bytes"
	"github.com/flintvm/flint/internal/seccomp"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/internal/testenv"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// runArgs runs the CLI with a launcher that records the config instead of
// starting a VM.
func runArgs(t testing.TB, args ...string) (code int, stdout, stderr string, got *vmm.Config) {
	var out, errb bytes.Buffer
	launch := func(cfg vmm.Config, _ io.Writer) int {
		got = &cfg
		return 0
	}
	a := newApp(&out, &errb, launch)
	a.installFilter = recordFilter
	// --api-sock: a VM built by InstanceStart is recorded the same way, and
	// the wait for InstanceStart ends at once.
	stop := make(chan struct{})
	close(stop)
	a.apiStop = stop
	a.newVM = func(cfg vmm.Config) (machine, error) {
		got = &cfg
		return &fakeMachine{}, nil
	}
	code = a.run(append([]string{"flint"}, args...))
	return code, out.String(), errb.String(), got
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunDefaults(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	code, _, stderr, cfg := runArgs(t, "run", "--kernel", k)
	if code != 0 || cfg == nil {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	if cfg.CPUs != 1 || cfg.MemoryMiB != 256 || cfg.Cmdline != defaultCmdline || cfg.Console != "stdio" || !cfg.HandleSignals ||
		cfg.KernelEntry != boot.EntryAuto {
		t.Fatalf("defaults: %+v", cfg)
	}
	if !strings.Contains(cfg.Cmdline, "console=ttyS0") {
		t.Fatalf("default command line %q has no serial console", cfg.Cmdline)
	}
}

func TestRunFlags(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	i := writeFile(t, "initrd", []byte("initrd bytes"))
	code, _, stderr, cfg := runArgs(t, "run", "--kernel", k, "--initrd", i, "--cmdline", "console=ttyS0 quiet",
		"--cpus", "2", "--memory", "512", "--console", "none", "--exit-marker", "OK", "--timeout", "30s",
		"--net", "tap=tap0,mtu=9000,mrg_rxbuf=off", "--net", "tap=tap1,transport=mmio", "--kernel-entry", "linux64")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if cfg.CPUs != 2 || cfg.MemoryMiB != 512 || cfg.Cmdline != "console=ttyS0 quiet" || cfg.Console != "none" ||
		string(cfg.Initrd) != "initrd bytes" || cfg.ExitMarker != "OK" || cfg.Timeout.Seconds() != 30 ||
		len(cfg.Net) != 2 || cfg.Net[0].TAP != "tap0" || cfg.Net[0].MTU != 9000 || cfg.Net[0].MrgRxbuf ||
		cfg.Net[1].TAP != "tap1" || cfg.Net[1].Transport != "mmio" || cfg.KernelEntry != boot.EntryLinux64 {
		t.Fatalf("config: %+v", cfg)
	}
}

func TestBadInputIsOneLineAndExitCode2(t *testing.T) {
	good := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	garbage := writeFile(t, "garbage", bytes.Repeat([]byte("not a kernel "), 100))
	truncated := writeFile(t, "truncated", vmmtest.BzImage(vmmtest.Spin)[:700])
	bigInitrd := writeFile(t, "big", make([]byte, 17<<20))
	dir := t.TempDir()
	nlConfig := writeFile(t, "c\nfg.json", []byte(`{"boot-source": {"kernel_image_path": "/nonexistent/k"}, "logger": {"log_path": "/nonexistent/l"}}`))
	cases := []struct {
		name string
		args []string
		want string // substring of the one-line message
	}{
		{"no kernel flag", []string{"run"}, "kernel"},
		{"missing kernel", []string{"run", "--kernel", "/nonexistent/bzImage"}, "/nonexistent/bzImage"},
		{"kernel is a directory", []string{"run", "--kernel", dir}, "not a regular file"},
		{"not a bzImage", []string{"run", "--kernel", garbage}, "not a bzImage"},
		{"truncated bzImage", []string{"run", "--kernel", truncated}, "truncated"},
		{"missing initrd", []string{"run", "--kernel", good, "--initrd", "/nonexistent/initrd"}, "--initrd"},
		{"initrd larger than memory", []string{"run", "--kernel", good, "--initrd", bigInitrd, "--memory", "16"}, "too large"},
		{"zero cpus", []string{"run", "--kernel", good, "--cpus", "0"}, "--cpus 0"},
		{"too many cpus", []string{"run", "--kernel", good, "--cpus", "1000"}, "--cpus 1000"},
		{"cpus not a number", []string{"run", "--kernel", good, "--cpus", "two"}, "cpus"},
		{"tiny memory", []string{"run", "--kernel", good, "--memory", "1"}, "--memory 1"},
		{"huge memory", []string{"run", "--kernel", good, "--memory", "99999999"}, "--memory"},
		{"bad console", []string{"run", "--kernel", good, "--console", "tty"}, "--console"},
		{"empty console file", []string{"run", "--kernel", good, "--console", "file:"}, "--console"},
		{"bad log level", []string{"run", "--kernel", good, "--log-level", "loud"}, "--log-level"},
		{"negative timeout", []string{"run", "--kernel", good, "--timeout", "-1s"}, "--timeout"},
		{"bad --net key", []string{"run", "--kernel", good, "--net", "tap=t0,speed=9"}, "speed"},
		{"bad --net mtu", []string{"run", "--kernel", good, "--net", "tap=t0,mtu=1"}, "mtu"},
		{"same TAP twice", []string{"run", "--kernel", good, "--net", "tap=t0", "--net", "tap=t0"}, "used twice"},
		{"net-backend without socket", []string{"net-backend", "--tap", "t0"}, "socket"},
		{"net-backend bad switch", []string{"net-backend", "--socket", "/tmp/x", "--tap", "t0", "--tso", "maybe"}, "tso"},
		{"net-backend queues", []string{"net-backend", "--socket", "/tmp/x", "--tap", "t0", "--queues", "65"}, "net-backend: --queues \"65\": out of range"},
		{"net-backend no queues", []string{"net-backend", "--socket", "/tmp/x", "--tap", "t0", "--queues", "0"}, "queues"},
		{"net-backend poll", []string{"net-backend", "--socket", "/tmp/x", "--tap", "t0", "--poll", "2ms"}, "net-backend: --poll \"2ms\": want a duration"},
		{"net poll", []string{"run", "--kernel", good, "--net", "tap=t0,poll=fast"}, "poll"},
		{"cmdline with NUL", []string{"run", "--kernel", good, "--cmdline", "a\x00b"}, "NUL"},
		{"bad kernel entry", []string{"run", "--kernel", good, "--kernel-entry", "efi"}, "--kernel-entry"},
		// File names with a line break are named quoted, not cut at it.
		{"missing kernel with a newline", []string{"run", "--kernel", "/nonexistent/a\nb"}, `"/nonexistent/a\nb"`},
		{"missing initrd with a newline", []string{"run", "--kernel", good, "--initrd", "/nonexistent/i\rd"}, `"/nonexistent/i\rd"`},
		{"bad config with a newline", []string{"run", "--config", nlConfig, "--kernel", good}, "--config " + strconv.Quote(nlConfig) + ": logger.log_path"},
		{"missing config with a newline", []string{"run", "--config", "/nonexistent/c\nfg.json"}, `"/nonexistent/c\nfg.json"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantUsageError(t, c.args, c.want) })
	}
}

// wantUsageError runs the CLI on args and fails unless it refuses them as
// bad input: exit code 2, no VM, nothing on stdout (no usage text), and one
// line on stderr, "flint: ..." containing want.
func wantUsageError(t *testing.T, args []string, want string) {
	t.Helper()
	code, stdout, stderr, cfg := runArgs(t, args...)
	if code != vmm.ExitUsage {
		t.Fatalf("exit code %d, want %d (stderr %q)", code, vmm.ExitUsage, stderr)
	}
	if cfg != nil {
		t.Fatal("a VM was launched")
	}
	if stdout != "" {
		t.Fatalf("stdout %q, want nothing", stdout)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "flint: ") || !strings.Contains(lines[0], want) {
		t.Fatalf("stderr %q: want one line naming %q", stderr, want)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _, _ := runArgs(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "flint ") {
		t.Fatalf("code %d stdout %q", code, stdout)
	}
}

// TestLaunchTinyKernel runs the real launcher end to end with a tiny kernel
// that prints its command line and resets.
func TestLaunchTinyKernel(t *testing.T) {
	testenv.RequireTinyGuests(t)
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Concat(vmmtest.PrintCmdline, vmmtest.ResetViaI8042)))
	out := filepath.Join(t.TempDir(), "console.log")
	var stderr bytes.Buffer
	// --no-seccomp: the test binary goes on after the VM (reads files).
	code := newApp(io.Discard, &stderr, launchVM).run([]string{"flint", "run", "--no-seccomp", "--kernel", k, "--memory", "64",
		"--cmdline", "hello from the cmdline", "--console", "file:" + out})
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	b, _ := os.ReadFile(out)
	if string(b) != "hello from the cmdline" {
		t.Fatalf("console %q", b)
	}
	// With an exit marker the guest must print it: resetting first is exit code 4.
	code = newApp(io.Discard, &stderr, launchVM).run([]string{"flint", "run", "--no-seccomp", "--kernel", k, "--memory", "64",
		"--console", "none", "--exit-marker", "NEVER-PRINTED"})
	if code != vmm.ExitNoMarker {
		t.Fatalf("exit code %d, want %d", code, vmm.ExitNoMarker)
	}
}

// FuzzRunArgs feeds arbitrary flag lists to the CLI: it must never panic,
// and every outcome is a launch or exit code 2 with one line on stderr.
func FuzzRunArgs(f *testing.F) {
	f.Add("run\x00--kernel\x00/dev/null")
	f.Add("run\x00--cpus\x00-5\x00--kernel\x00x")
	f.Add("run\x00--memory=abc")
	f.Add("run\x00--console\x00file:")
	f.Add("version")
	f.Add("run\x00--config\x00/nonexistent/vm.json")
	f.Add("run\x00--api-sock\x00/nonexistent/dir/api.sock")
	f.Add("run\x00--timeout\x001h\x00--kernel")
	f.Add("run\x00--kernel\x00K\x00--\x00echo\x00hi")
	f.Add("run\x00--cmdline\x00--\x00--\x00x")
	f.Add("net-backend\x00--bogus")
	f.Add("help\x00run")
	f.Add("-h\x00run\x00x")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		code, stdout, stderr, cfg := runArgs(t, args...)
		switch {
		case cfg != nil:
			if code != 0 {
				t.Fatalf("launched but exit code %d", code)
			}
		case code == 0:
			// help or version output
		case code == vmm.ExitUsage:
			if n := strings.Count(strings.TrimRight(stderr, "\n"), "\n"); n != 0 || stdout != "" {
				t.Fatalf("usage error on %d lines, stdout %q: %q", n+1, stdout, stderr)
			}
		default:
			t.Fatalf("exit code %d for %q: %s", code, args, stderr)
		}
	})
}

// filterModes records the modes tests' apps were asked to install.
var filterModes = make(chan seccomp.Mode, 16)

// recordFilter stands in for seccomp.InstallWith in tests that drive the
// CLI in-process: a real filter would end the test binary
// (internal/seccomp tests the filter itself in a child process).
func recordFilter(o seccomp.Options) error {
	select {
	case filterModes <- o.Mode:
	default:
	}
	return nil
}

// TestSeccompFlags: the filter is on (kill) unless asked otherwise, runs
// once setup is done (the launcher's BeforeRun), and bad values are usage
// errors.
func TestSeccompFlags(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.ResetViaI8042))
	for _, tc := range []struct {
		args []string
		want seccomp.Mode
		off  bool
	}{
		{nil, seccomp.Kill, false},
		{[]string{"--seccomp", "log"}, seccomp.Log, false},
		{[]string{"--seccomp", "off"}, 0, true},
		{[]string{"--no-seccomp"}, 0, true},
		{[]string{"--seccomp", "kill", "--no-seccomp"}, 0, true},
	} {
		code, _, stderr, cfg := runArgs(t, append([]string{"run", "--kernel", k}, tc.args...)...)
		if code != 0 || cfg == nil {
			t.Fatalf("%q: exit %d: %s", tc.args, code, stderr)
		}
		if tc.off {
			if cfg.BeforeRun != nil {
				t.Errorf("%q: a filter hook, want none", tc.args)
			}
			continue
		}
		if cfg.BeforeRun == nil {
			t.Fatalf("%q: no filter hook", tc.args)
		}
		if err := cfg.BeforeRun(cfg.SeccompOptions()); err != nil {
			t.Fatal(err)
		}
		if got := <-filterModes; got != tc.want {
			t.Errorf("%q: mode %v, want %v", tc.args, got, tc.want)
		}
	}
	code, _, stderr, _ := runArgs(t, "run", "--kernel", k, "--seccomp", "bogus")
	if code != 2 || !strings.Contains(stderr, "--seccomp") || strings.Count(strings.TrimRight(stderr, "\n"), "\n") != 0 {
		t.Errorf("--seccomp bogus: exit %d, stderr %q; want 2 and one line naming the flag", code, stderr)
	}
}
