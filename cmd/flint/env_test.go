package main

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestCommandModeEnv: --env sets variables in the command's environment
// (a value with commas and '=' whole), replaces the defaults' and an
// earlier entry's, passes a bare NAME's host value on and leaves out a
// bare NAME the host does not set.
func TestCommandModeEnv(t *testing.T) {
	t.Setenv("FLINT_TEST_FROM_HOST", "host value")
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	code, _, stderr, cfg := runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", fakeTree(t), "--no-host-root",
		"--env", "CFLAGS=-O2,-g -DX=1", "--env", "TERM=xterm", "--env", "A=1", "--env", "A=2",
		"--env", "FLINT_TEST_FROM_HOST", "--env", "FLINT_TEST_NOT_SET_ANYWHERE", "--", "env")
	if code != 0 || cfg == nil {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	s, err := agent.DecodeSpec(bytes.NewReader(newcFiles(t, cfg.Initrd)["flint/agent.json"]))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=" + defaultPath, "HOME=/root", "CFLAGS=-O2,-g -DX=1", "TERM=xterm", "A=2", "FLINT_TEST_FROM_HOST=host value"}
	if !reflect.DeepEqual(s.Env, want) {
		t.Errorf("environment\n%q\nwant\n%q", s.Env, want)
	}
}

// TestParseEnv covers the names and values --env refuses.
func TestParseEnv(t *testing.T) {
	lookup := func(n string) (string, bool) {
		if n == "NUL" {
			return "a\x00b", true
		}
		return "", false
	}
	for _, c := range []struct {
		in    string
		ok    bool
		entry string
	}{
		{"_A9=x", true, "_A9=x"}, {"a=", true, "a="}, {"X==", true, "X=="},
		{"9A=x", false, ""}, {"A-B=x", false, ""}, {"=x", false, ""}, {"", false, ""}, {"Ä=x", false, ""},
		{"V=a\x00b", false, ""}, {"NUL", false, ""}, {"MISSING", true, ""},
	} {
		env, err := parseEnv([]string{c.in}, lookup)
		switch {
		case c.ok && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case !c.ok && err == nil:
			t.Errorf("%q accepted: %q", c.in, env)
		case c.ok && c.entry == "" && len(env) != 0:
			t.Errorf("%q: %q, want nothing", c.in, env)
		case c.ok && c.entry != "" && (len(env) != 1 || env[0] != c.entry):
			t.Errorf("%q: %q, want %q", c.in, env, c.entry)
		}
	}
}

// TestGuestHome: the command's HOME is /root, except when an unprivileged
// flint shares the host's root: then /root is unreadable through
// virtio-fs and the host's own HOME serves, if it is a usable path.
func TestGuestHome(t *testing.T) {
	for _, c := range []struct {
		hostRoot bool
		euid     int
		home     string
		want     string
	}{
		{true, 0, "/root", "/root"},
		{true, 0, "/home/dev", "/root"},
		{true, 1000, "/home/dev", "/home/dev"},
		{false, 1000, "/home/dev", "/root"},
		{true, 1000, "", "/root"},
		{true, 1000, "relative", "/root"},
		{true, 1000, "/home/dev/../x", "/root"},
		{true, 1000, "/", "/root"},
		{true, 1000, "/proc/self", "/root"},
		{true, 1000, "/home/a\x00b", "/root"},
	} {
		if got := guestHome(c.hostRoot, c.euid, c.home); got != c.want {
			t.Errorf("guestHome(%v, %d, %q) = %q, want %q", c.hostRoot, c.euid, c.home, got, c.want)
		}
	}
}
