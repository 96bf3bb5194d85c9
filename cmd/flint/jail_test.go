package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/internal/jail"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// jailApp is a test app whose jail launcher and child check are recorded
// stand-ins (the real ones re-execute the binary and pivot_root).
type jailApp struct {
	*app
	out, errb bytes.Buffer
	cfg       *vmm.Config
	launched  []jail.Spec
	args      [][]string
}

func newJailApp(child bool, childCode int) *jailApp {
	j := &jailApp{}
	j.app = newApp(&j.out, &j.errb, func(cfg vmm.Config, _ io.Writer) int { j.cfg = &cfg; return 0 })
	j.installFilter = recordFilter
	j.childOfJail = func() (*os.File, bool, error) {
		if !child {
			return nil, false, nil
		}
		f, err := os.Open(os.TempDir())
		return f, true, err
	}
	j.launchJail = func(s jail.Spec, args []string) (int, error) {
		j.launched = append(j.launched, s)
		j.args = append(j.args, args)
		return childCode, nil
	}
	return j
}

// TestJailFlags: bad jail flags are one usage line and exit 2; good ones
// re-execute flint jailed (the launcher) with the same arguments and exit
// with the jailed flint's code, 128+31 for a seccomp kill included.
func TestJailFlags(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.ResetViaI8042))
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--uid", "1000"}, "--uid needs --jail"},
		{[]string{"--gid", "1000"}, "--gid needs --jail"},
		{[]string{"--jail-nofile", "100"}, "--jail-nofile needs --jail"},
		{[]string{"--jail", dir}, "--jail needs --uid and --gid"},
		{[]string{"--jail", dir, "--uid", "1000"}, "--jail needs --uid and --gid"},
		{[]string{"--jail", filepath.Join(dir, "missing"), "--uid", "1000", "--gid", "1000"}, "no such file"},
		{[]string{"--jail", file, "--uid", "1000", "--gid", "1000"}, "not a directory"},
		{[]string{"--jail", "/", "--uid", "1000", "--gid", "1000"}, "the host's root"},
		{[]string{"--jail", dir, "--uid", "nobody", "--gid", "1000"}, `--uid "nobody": not a number`},
		{[]string{"--jail", dir, "--uid", "1000", "--gid", "-3"}, `--gid "-3": not a number`},
		{[]string{"--jail", dir, "--uid", "0", "--gid", "1000"}, "uid 0"},
		{[]string{"--jail", dir, "--uid", "1000", "--gid", "1000", "--jail-nofile", "3"}, "--jail-nofile 3"},
		{[]string{"--jail", dir, "--uid", "1000", "--gid", "1000", "--jail-nofile", "99999999999999"}, "--jail-nofile 99999999999999: at most"},
		{[]string{"--jail", dir, "--uid", "1000", "--gid", "1000", "--", "true"}, "command mode"},
	} {
		j := newJailApp(false, 0)
		code := j.run(append([]string{"flint", "run", "--kernel", k}, tc.args...))
		stderr := j.errb.String()
		if code != vmm.ExitUsage || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimRight(stderr, "\n"), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line with %q", tc.args, code, stderr, tc.want)
		}
		if len(j.launched) != 0 || j.cfg != nil {
			t.Errorf("%q: launched", tc.args)
		}
	}
	for _, cmd := range [][]string{
		{"run", "--kernel", k, "--jail", dir, "--uid", "1000", "--gid", "1001", "--jail-fsize", "4096"},
		{"net-backend", "--socket", filepath.Join(dir, "s"), "--tap", "t0", "--jail", dir, "--uid", "1000", "--gid", "1001", "--jail-fsize", "4096"},
	} {
		j := newJailApp(false, 128+31)
		args := append([]string{"flint"}, cmd...)
		if code := j.run(args); code != 128+31 {
			t.Fatalf("%s: exit %d, want the jailed flint's 159: %s", cmd[0], code, j.errb.String())
		}
		want := jail.Spec{Dir: dir, UID: 1000, GID: 1001, NoFile: jail.DefaultNoFile, FSize: 4096}
		if len(j.launched) != 1 || j.launched[0] != want || strings.Join(j.args[0], " ") != strings.Join(args, " ") {
			t.Fatalf("%s: launched %+v with %q", cmd[0], j.launched, j.args)
		}
		if j.cfg != nil {
			t.Fatalf("%s: the launcher built a VM itself", cmd[0])
		}
	}
	j := newJailApp(false, 0)
	j.launchJail = func(jail.Spec, []string) (int, error) { return 0, os.ErrPermission }
	if code := j.run([]string{"flint", "run", "--kernel", k, "--jail", dir, "--uid", "1", "--gid", "1"}); code != vmm.ExitVMMErr {
		t.Fatalf("a launch failure: exit %d", code)
	}
}

// TestJailChild: in the jailed child the flags build the VM as usual and
// the hook run once setup is done enters the jail (not called here: it
// would jail the test binary); a child without --jail is refused.
func TestJailChild(t *testing.T) {
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.ResetViaI8042))
	dir := t.TempDir()
	j := newJailApp(true, 0)
	if code := j.run([]string{"flint", "run", "--kernel", k, "--jail", dir, "--uid", "1000", "--gid", "1000"}); code != 0 || j.cfg == nil {
		t.Fatalf("child: exit %d, %s", code, j.errb.String())
	}
	if j.cfg.BeforeRun == nil || len(j.launched) != 0 {
		t.Fatal("child: no jail hook, or launched again")
	}
	j = newJailApp(true, 0)
	if code := j.run([]string{"flint", "run", "--kernel", k}); code != vmm.ExitUsage || !strings.Contains(j.errb.String(), "without --jail") {
		t.Fatalf("child without --jail: exit %d, %s", code, j.errb.String())
	}
}
