package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/vmm"
)

// modulesAt is the Spec's mount at /lib/modules/RELEASE of the command's
// root, if any.
func modulesAt(s *agent.Spec, root, release string) *agent.Mount {
	for i, m := range s.After {
		if m.Target == root+"/lib/modules/"+release {
			return &s.After[i]
		}
	}
	return nil
}

// TestCommandModeModulesMount: the guest sees the kernel's module
// directory at /lib/modules/RELEASE, where modprobe looks: with the host's
// root a read-only bind mount of the root share's view of it (no share
// more), without it a read-only share of its own (virtiofs loaded for
// it), optional (a guest that cannot mount it runs all the same); never
// when the shared root shows it there already. Without the
// feature modprobe in the guest found only the host's own modules.
func TestCommandModeModulesMount(t *testing.T) {
	const release = "6.1.0-test"
	k := writeFile(t, "bzImage", versionedBzImage(release))
	root := t.TempDir()
	withModulesRoot(t, root)
	tree := fakeTree(t)
	real, err := filepath.EvalSymlinks(tree)
	if err != nil {
		t.Fatal(err)
	}
	// Given through a symbolic link: the guest resolves the bind mount's
	// source in its own root, so the host resolves it first.
	link := filepath.Join(t.TempDir(), "mods")
	if err := os.Symlink(tree, link); err != nil {
		t.Fatal(err)
	}

	code, _, stderr, cfg := runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", link, "--", "modprobe", "dummy")
	if code != 0 {
		t.Fatalf("host root: code %d: %s", code, stderr)
	}
	s, _ := guestOf(t, cfg)
	m := modulesAt(s, guestRoot, release)
	if m == nil || m.Source != lowerDir+real || m.FSType != "none" || strings.Join(m.Options, ",") != "bind,ro" || !m.Optional {
		t.Errorf("host root: after mounts %+v, want a read-only bind of %s at %s/lib/modules/%s", s.After, lowerDir+real, guestRoot, release)
	}
	if len(cfg.Command.Shares) != 1 {
		t.Errorf("host root: VMM shares %+v, want the root's alone", cfg.Command.Shares)
	}

	// At most four --share directories still fit without the host's
	// root, the module directory's share taking the root's place; it
	// comes before them (a --share of /lib/modules/RELEASE wins).
	shareArgs := []string{"run", "--kernel", k, "--modules", link, "--no-host-root"}
	for i := range 4 {
		shareArgs = append(shareArgs, "--share", t.TempDir()+":/mnt/s"+string(rune('0'+i)))
	}
	code, _, stderr, cfg = runCommandArgs(t, passed(), nil, append(shareArgs, "--", "true")...)
	if code != 0 {
		t.Fatalf("--no-host-root: code %d: %s", code, stderr)
	}
	s, _ = guestOf(t, cfg)
	m = modulesAt(s, "", release)
	sh := cfg.Command.Shares
	if m == nil || &s.After[0] != m || m.Source != modulesTag || m.FSType != "virtiofs" || strings.Join(m.Options, ",") != "ro" || !m.Optional {
		t.Errorf("--no-host-root: after mounts %+v, want the %s share first at /lib/modules/%s", s.After, modulesTag, release)
	}
	if len(sh) != 5 || sh[0].Tag != modulesTag || sh[0].HostDir != real || !sh[0].ReadOnly {
		t.Errorf("--no-host-root: VMM shares %+v, want %s (%s, read-only) and the four --share", sh, modulesTag, real)
	}
	if len(sh) > vmm.MaxShares {
		t.Errorf("--no-host-root: %d shares, more than vmm.MaxShares", len(sh))
	}
	if !slices.Contains(s.Modules, "/flint/modules/virtiofs.ko") {
		t.Errorf("--no-host-root: modules %q lack virtiofs", s.Modules)
	}

	// The installed tree the host's root shows at /lib/modules/RELEASE
	// already needs nothing; without the host's root it is shared.
	if err := os.MkdirAll(filepath.Join(root, "lib/modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tree, filepath.Join(root, "lib/modules", release)); err != nil {
		t.Fatal(err)
	}
	for _, noRoot := range []bool{false, true} {
		args := []string{"run", "--kernel", k}
		if noRoot {
			args = append(args, "--no-host-root")
		}
		code, _, stderr, cfg = runCommandArgs(t, passed(), nil, append(args, "--", "true")...)
		if code != 0 {
			t.Fatalf("installed (no host root %v): code %d: %s", noRoot, code, stderr)
		}
		s, _ = guestOf(t, cfg)
		if got := len(s.After) > 0; got != noRoot {
			t.Errorf("installed (no host root %v): after mounts %+v", noRoot, s.After)
		}
	}

	// --modules builtin: nothing.
	code, _, stderr, cfg = runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", "builtin", "--no-host-root", "--", "true")
	if code != 0 {
		t.Fatalf("builtin: code %d: %s", code, stderr)
	}
	if s, _ = guestOf(t, cfg); len(s.After) != 0 || len(cfg.Command.Shares) != 0 || len(s.Modules) != 0 {
		t.Errorf("builtin: after %+v shares %+v modules %q", s.After, cfg.Command.Shares, s.Modules)
	}
}

// TestCommandModeModulesMountLayout: only an installed layout is shown
// (modprobe reads nothing else); one without modules.dep is, with a
// warning naming the depmod that writes it; a build tree is shown by its
// installed modules only, and says how to install them; a kernel without
// virtiofs runs without the module directory's share.
func TestCommandModeModulesMountLayout(t *testing.T) {
	const release = "6.1.0-test"
	k := writeFile(t, "bzImage", versionedBzImage(release))
	withModulesRoot(t, t.TempDir())
	run := func(name, kernel string, args ...string) (*agent.Spec, *vmm.Config, string) {
		t.Helper()
		var code int
		var stderr string
		var cfg *vmm.Config
		log := captureLog(t, func() {
			code, _, stderr, cfg = runCommandArgs(t, passed(), nil,
				append(append([]string{"run", "--kernel", kernel, "--log-level", "info"}, args...), "--", "true")...)
		})
		if code != 0 {
			t.Fatalf("%s: code %d: %s", name, code, stderr)
		}
		s, _ := guestOf(t, cfg)
		return s, cfg, log
	}

	// Unpacked from the kernel's package: kernel/ and no modules.dep or
	// modules.dep.bin (the package's install runs depmod). Resolve would read each
	// module's own depends=, which fakeTree's modules do not have: the
	// decision alone.
	base := t.TempDir()
	unpacked := filepath.Join(base, "lib/modules", release)
	if err := os.MkdirAll(filepath.Dir(unpacked), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fakeTree(t), unpacked); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(unpacked, "modules.dep")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	g := guest{kver: release}
	m := g.modulesMount(moduleSource{dir: unpacked}, slog.New(slog.NewTextHandler(&buf, nil)))
	realBase, _ := filepath.EvalSymlinks(base)
	if m.host != filepath.Join(realBase, "lib/modules", release) || m.target(guestRoot) != guestRoot+"/lib/modules/"+release {
		t.Errorf("no modules.dep: %+v, want the directory shown at /lib/modules/%s", m, release)
	}
	if log := buf.String(); !strings.Contains(log, "no modules.dep.bin") || !strings.Contains(log, "depmod -b "+realBase+" "+release) {
		t.Errorf("no modules.dep: the log does not say which depmod to run: %s", log)
	}
	// modules.dep alone does not do (kmod's modprobe reads only the
	// index); with the index there is nothing to say.
	for _, f := range []string{"modules.dep", "modules.dep.bin"} {
		if err := os.WriteFile(filepath.Join(unpacked, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		buf.Reset()
		g.modulesMount(moduleSource{dir: unpacked}, slog.New(slog.NewTextHandler(&buf, nil)))
		if warned := strings.Contains(buf.String(), "depmod"); warned != (f == "modules.dep") {
			t.Errorf("with %s: log %q", f, buf.String())
		}
	}
	for _, f := range []string{"modules.dep", "modules.dep.bin"} {
		if err := os.Remove(filepath.Join(unpacked, f)); err != nil {
			t.Fatal(err)
		}
	}

	// Neither modules.dep nor kernel/ (modules beside each other).
	flat := t.TempDir()
	ko, _ := filepath.Glob(filepath.Join(unpacked, "kernel/drivers/*.ko"))
	for _, p := range ko {
		if err := os.Rename(p, filepath.Join(flat, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	if m := g.modulesMount(moduleSource{dir: flat}, nil); m.host != "" {
		t.Errorf("flat: %+v, want none", m)
	}

	// A build tree, its modules not installed: nothing, and the log
	// says what would be needed.
	_, dev := kernelBuildTree(t, versionedBzImage(release), release)
	s, _, log := run("build tree", dev)
	if len(s.After) != 0 || !strings.Contains(log, "make modules_install INSTALL_MOD_PATH=DIR") {
		t.Errorf("build tree: after mounts %+v, log %s", s.After, log)
	}

	// No virtiofs in the tree: without the host's root, no share.
	s, cfg, _ := run("no virtiofs", k, "--modules", fakeTree(t, "virtiofs"), "--no-host-root")
	if len(s.After) != 0 || len(cfg.Command.Shares) != 0 {
		t.Errorf("no virtiofs: after %+v shares %+v, want none", s.After, cfg.Command.Shares)
	}
}

// TestModulesMountRelease: a release that is not one directory name
// (a crafted kernel header) is never a mount target.
func TestModulesMountRelease(t *testing.T) {
	tree := fakeTree(t)
	for _, r := range []string{"", ".", "..", "../../etc", "a/b", "x\x00", "caf\xe9"} {
		g := guest{kver: r, noHostRoot: true}
		if m := g.modulesMount(moduleSource{dir: tree}, nil); m.host != "" {
			t.Errorf("release %q: mounted %+v", r, m)
		}
	}
	g := guest{kver: "6.1.0", noHostRoot: true}
	if m := g.modulesMount(moduleSource{dir: tree}, nil); m.host == "" || m.target("") != "/lib/modules/6.1.0" {
		t.Errorf("release 6.1.0: %+v", m)
	}
}
