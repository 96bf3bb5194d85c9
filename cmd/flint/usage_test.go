package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestUsageErrorsAreOneLine: every way of misusing the command line (flags
// the command does not have, flags without their values, values of the
// wrong type, stray arguments, unknown commands) is one line on stderr
// naming the problem, exit code 2, and no usage text.
func TestUsageErrorsAreOneLine(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	nb := []string{"net-backend", "--socket", "/nonexistent/nb.sock", "--tap", "t0"}
	cases := []struct {
		name string
		args []string
		want string // substring of the one line
	}{
		// Flags a command does not have.
		{"run unknown flag", []string{"run", "--kernel", k, "--bogus-flag"}, "run: unknown flag --bogus-flag (try: flint help run)"},
		{"run unknown flag first", []string{"run", "--bogus-flag", "--kernel", k}, "run: unknown flag --bogus-flag"},
		{"run unknown short flag", []string{"run", "--kernel", k, "-x"}, "run: unknown flag -x"},
		{"run unknown flag with value", []string{"run", "--kernel", k, "--config-file=vm.json"}, "run: unknown flag --config-file"},
		{"run flag of net-backend", []string{"run", "--kernel", k, "--socket", "s"}, "run: unknown flag --socket"},
		{"net-backend unknown flag", append(nb, "--bogus-flag"), "net-backend: unknown flag --bogus-flag (try: flint help net-backend)"},
		{"net-backend flag of run", append(nb, "--kernel", k), "net-backend: unknown flag --kernel"},
		{"version unknown flag", []string{"version", "--bogus-flag"}, "version: unknown flag --bogus-flag"},
		{"help unknown flag", []string{"help", "--bogus-flag"}, "help: unknown flag --bogus-flag"},
		{"global unknown flag", []string{"--bogus-flag", "run"}, "unknown flag --bogus-flag (try: flint help)"},
		{"global --version", []string{"--version"}, "unknown flag --version"},
		{"bad flag syntax", []string{"run", "---kernel", k}, "bad flag syntax: ---kernel"},

		// Flags missing their values.
		{"run --kernel without value", []string{"run", "--kernel"}, "run: --kernel needs a value"},
		{"run --cpus without value", []string{"run", "--kernel", k, "--cpus"}, "run: --cpus needs a value"},
		{"run --net without value", []string{"run", "--kernel", k, "--net"}, "run: --net needs a value"},
		{"run --timeout without value", []string{"run", "--kernel", k, "--timeout"}, "run: --timeout needs a value"},
		{"net-backend --socket without value", []string{"net-backend", "--tap", "t0", "--socket"}, "net-backend: --socket needs a value"},
		{"net-backend --mtu without value", append(nb, "--mtu"), "net-backend: --mtu needs a value"},
		{"net-backend without --socket", []string{"net-backend", "--tap", "t0"}, "net-backend: --socket is required"},
		{"net-backend without --tap", []string{"net-backend", "--socket", "s"}, "net-backend: --tap is required"},

		// Values of the wrong type.
		{"cpus not a number", []string{"run", "--kernel", k, "--cpus", "two"}, `--cpus "two": want a whole number`},
		{"cpus out of range", []string{"run", "--kernel", k, "--cpus", "99999999999999999999"}, `--cpus "99999999999999999999": out of range`},
		{"memory a fraction", []string{"run", "--kernel", k, "--memory=1.5"}, `--memory "1.5": want a whole number`},
		{"timeout not a duration", []string{"run", "--kernel", k, "--timeout", "soon"}, `--timeout "soon": want a duration`},
		{"timing not a bool", []string{"run", "--kernel", k, "--timing=maybe"}, `--timing "maybe": want true or false`},
		{"net-backend mtu not a number", append(nb, "--mtu", "big"), `--mtu "big": want a whole number`},

		// Stray arguments and unknown commands.
		{"run stray argument", []string{"run", "--kernel", k, "extra"}, `run: unexpected argument "extra" (try: flint help run)`},
		{"run stray argument first", []string{"run", "extra", "--kernel", k}, `run: unexpected argument "extra"`},
		{"run help", []string{"run", "--kernel", k, "help"}, `run: unexpected argument "help"`},
		{"run lone dash", []string{"run", "--kernel", k, "-"}, `run: unexpected argument "-"`},
		{"net-backend stray argument", append(nb, "extra"), `net-backend: unexpected argument "extra"`},
		{"version stray argument", []string{"version", "extra"}, `version: unexpected argument "extra"`},
		{"unknown command", []string{"launch"}, `unknown command "launch" (try: flint help)`},
		{"firecracker-style flags", []string{"--config-file", "vm.json"}, "unknown flag --config-file"},
		{"help for an unknown command", []string{"help", "launch"}, `help: unknown command "launch"`},
		{"help with two commands", []string{"help", "run", "version"}, `help: unexpected argument "version"`},
		{"--help with an argument", []string{"run", "--help", "extra"}, `no help for "extra"`},

		// "--" ends the flags and starts command mode, which needs the
		// kernel's version (the test kernel has none) to find its modules.
		{"run command after --", []string{"run", "--kernel", k, "--", "echo", "hi"}, `cannot tell the kernel's version`},
		{"run flag after --", []string{"run", "--kernel", k, "--", "--cpus", "2"}, `cannot tell the kernel's version`},
		{"run -- after a bool flag", []string{"run", "--kernel", k, "--timing", "--", "x"}, `cannot tell the kernel's version`},
		{"run -- as a flag's value", []string{"run", "--kernel", k, "--cmdline", "--", "x"}, `run: unexpected argument "x"`},
		{"run -- after a flag's value --", []string{"run", "--kernel", k, "--cmdline", "--", "--", "x"}, `cannot tell the kernel's version`},
		{"run -- after a stray argument", []string{"run", "--kernel", k, "x", "--", "y"}, `run: unexpected argument "x"`},
		{"global -- then run", []string{"--", "run", "--kernel", k, "--", "x"}, `cannot tell the kernel's version`},
		{"command-mode flag without --", []string{"run", "--kernel", k, "--fail-on", "all"}, `run: --fail-on needs command mode`},
		{"--net ip= without --", []string{"run", "--kernel", k, "--net", "tap=t0,ip=10.0.0.2/24"}, `ip= needs command mode`},
		{"--report without --", []string{"run", "--kernel", k, "--report", "r.json"}, `run: --report needs command mode`},
		{"--env without --", []string{"run", "--kernel", k, "--env", "A=1"}, `run: --env needs command mode`},
		{"--env bad name", []string{"run", "--kernel", k, "--env", "1A=x", "--", "true"}, `--env "1A=x": "1A" is not a variable name`},
		{"--env empty name", []string{"run", "--kernel", k, "--env", "=x", "--", "true"}, `--env "=x": "" is not a variable name`},
		{"--exit-marker in command mode", []string{"run", "--kernel", k, "--exit-marker", "OK", "--", "true"}, `run: --exit-marker cannot be used with a command after --`},
		{"net-backend after --", append(nb, "--", "x"), `net-backend: unexpected argument "x"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantUsageError(t, c.args, c.want) })
	}
}

// TestHelp: `flint help [command]`, --help and -h print the full usage
// text on stdout with exit code 0; `flint help run` and `flint run --help`
// print the same text.
func TestHelp(t *testing.T) {
	cases := []struct {
		args []string
		want string // substring of stdout
	}{
		{nil, "COMMANDS:"},
		{[]string{"help"}, "COMMANDS:"},
		{[]string{"--help"}, "COMMANDS:"},
		{[]string{"-h"}, "COMMANDS:"},
		{[]string{"help", "run"}, "flint run - "},
		{[]string{"run", "--help"}, "--kernel"},
		{[]string{"run", "-h"}, "--kernel"},
		{[]string{"-h", "run"}, "--kernel"},
		{[]string{"run", "--kernel", "K", "--help"}, "--kernel"},
		{[]string{"help", "net-backend"}, "--socket"},
		{[]string{"net-backend", "--help"}, "--socket"},
		{[]string{"help", "version"}, "flint version - "},
		{[]string{"help", "help"}, "flint help - "},
	}
	outputs := map[string]string{}
	for _, c := range cases {
		name := strings.Join(c.args, " ")
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr, cfg := runArgs(t, c.args...)
			if code != 0 || stderr != "" || cfg != nil {
				t.Fatalf("exit code %d, stderr %q, launched %v", code, stderr, cfg != nil)
			}
			if !strings.Contains(stdout, c.want) || !strings.Contains(stdout, "USAGE:") {
				t.Fatalf("stdout %q: want the usage text with %q", stdout, c.want)
			}
			outputs[name] = stdout
		})
	}
	// --jail's text is shared; only run has a command mode to exclude.
	if !strings.Contains(outputs["help run"], "(not with command mode)") || strings.Contains(outputs["help net-backend"], "command mode") {
		t.Fatalf("--jail's usage: run's must say it is not for command mode, net-backend's must not mention it")
	}
	if outputs["help run"] != outputs["run --help"] || outputs["help"] != outputs["--help"] {
		t.Fatalf("`flint help run` and `flint run --help` differ:\n%s\n---\n%s", outputs["help run"], outputs["run --help"])
	}
}

// TestMainUsageErrors runs the real main (this test binary, re-executed)
// to check that nothing reaches the process's stdout or stderr behind the
// app's writers.
func TestMainUsageErrors(t *testing.T) {
	const env = "FLINT_TEST_MAIN_ARGS"
	if j := os.Getenv(env); j != "" {
		var args []string
		if err := json.Unmarshal([]byte(j), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"flint"}, args...)
		main() // exits
	}
	cases := []struct {
		args   []string
		code   int
		stderr string // the whole of stderr; stdout must be empty
	}{
		{[]string{"run", "--kernel", "K", "--bogus-flag"}, vmm.ExitUsage, "flint: run: unknown flag --bogus-flag (try: flint help run)\n"},
		{[]string{"run", "--kernel"}, vmm.ExitUsage, "flint: run: --kernel needs a value\n"},
		{[]string{"net-backend", "--bogus-flag"}, vmm.ExitUsage, "flint: net-backend: unknown flag --bogus-flag (try: flint help net-backend)\n"},
		{[]string{"net-backend", "--tap", "t0"}, vmm.ExitUsage, "flint: net-backend: --socket is required\n"},
		{[]string{"bogus"}, vmm.ExitUsage, "flint: unknown command \"bogus\" (try: flint help)\n"},
	}
	for _, c := range cases {
		j, _ := json.Marshal(c.args)
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainUsageErrors$")
		cmd.Env = append(os.Environ(), env+"="+string(j))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || stdout.Len() != 0 || stderr.String() != c.stderr {
			t.Errorf("flint %s: exit code %d, stdout %q, stderr %q; want %d, nothing, %q",
				strings.Join(c.args, " "), code, stdout.String(), stderr.String(), c.code, c.stderr)
		}
	}
}
