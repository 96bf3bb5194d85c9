package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/devices/exitdev"
	"github.com/flintvm/flint/vmm"
	"github.com/flintvm/flint/vmm/verdict"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// versionedBzImage is the test bzImage with a kernel_version string
// naming release (in its setup sectors, where the header's pointer says).
func versionedBzImage(release string) []byte {
	img := vmmtest.BzImage(vmmtest.Spin)
	const at = 0x380
	binary.LittleEndian.PutUint16(img[0x20e:], at-0x200)
	copy(img[at:], release+" (test@flint) #1\x00")
	return img
}

// tinyELF is an ELF vmlinux as far as Flint checks one: an x86-64
// executable with one PT_LOAD at 16 MiB holding text (e.g. a banner)
// after a hlt, entered at its start.
func tinyELF(text string) []byte {
	le := binary.LittleEndian
	const off, paddr = 0x1000, 0x1000000
	body := append([]byte{0xf4}, text...)
	b := make([]byte, off+len(body))
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], paddr)
	le.PutUint64(b[32:], 64) // e_phoff
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	ph := b[64:]
	le.PutUint32(ph, 1) // PT_LOAD
	le.PutUint64(ph[8:], off)
	le.PutUint64(ph[16:], 0xffffffff80000000+paddr)
	le.PutUint64(ph[24:], paddr)
	le.PutUint64(ph[32:], uint64(len(body)))
	le.PutUint64(ph[40:], uint64(len(body)))
	le.PutUint64(ph[48:], 0x1000)
	copy(b[off:], body)
	return b
}

// captureLog runs f with os.Stderr (where Flint's log goes) sent to a file
// and returns what was written there.
func captureLog(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	old := os.Stderr
	os.Stderr = tmp
	defer func() { os.Stderr = old }()
	f()
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kernelBuildTree makes a kernel build tree around fakeTree's modules
// (each module's file says which tree it is from): a Makefile,
// modules.order, the kernel at arch/x86/boot/bzImage and, when release is
// not "", include/config/kernel.release. It returns the tree and the
// kernel's path.
func kernelBuildTree(t *testing.T, kernel []byte, release string) (tree, bzImage string) {
	t.Helper()
	tree = fakeTree(t)
	files := map[string][]byte{"Makefile": []byte("VERSION = 6\n"), "modules.order": nil, "arch/x86/boot/bzImage": kernel}
	if release != "" {
		files["include/config/kernel.release"] = []byte(release + "\n")
	}
	ko, _ := filepath.Glob(filepath.Join(tree, "kernel/drivers/*.ko"))
	for _, p := range ko {
		files[strings.TrimPrefix(p, tree+"/")] = []byte("module " + strings.TrimSuffix(filepath.Base(p), ".ko") + " from the build tree")
	}
	for rel, data := range files {
		p := filepath.Join(tree, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tree, filepath.Join(tree, "arch/x86/boot/bzImage")
}

// guestOf returns the agent's Spec and the archive's files of a run.
func guestOf(t *testing.T, cfg *vmm.Config) (*agent.Spec, map[string][]byte) {
	t.Helper()
	files := newcFiles(t, cfg.Initrd)
	s, err := agent.DecodeSpec(bytes.NewReader(files["flint/agent.json"]))
	if err != nil {
		t.Fatal(err)
	}
	return s, files
}

// moduleFrom is what the archive's virtio_mmio.ko says of its tree ("" if absent).
func moduleFrom(files map[string][]byte) string {
	return string(files["flint/modules/virtio_mmio.ko"])
}

// withModulesRoot makes root the place installed module trees are found.
func withModulesRoot(t *testing.T, root string) {
	old := modulesRoot
	modulesRoot = root
	t.Cleanup(func() { modulesRoot = old })
}

// TestCommandModeBuildTree: a kernel run from its build tree takes its
// modules there (before an installed tree of the same release), its
// release from include/config/kernel.release when the image has none,
// and says in the debug log which tree it used; --modules wins over both.
func TestCommandModeBuildTree(t *testing.T) {
	tree, k := kernelBuildTree(t, vmmtest.BzImage(vmmtest.Spin), "6.13.0-rc1-dev")
	root := t.TempDir()
	installed := fakeTree(t)
	if err := os.MkdirAll(filepath.Join(root, "lib/modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(installed, filepath.Join(root, "lib/modules/6.13.0-rc1-dev")); err != nil {
		t.Fatal(err)
	}
	withModulesRoot(t, root)
	report := filepath.Join(t.TempDir(), "r.json")
	var code int
	var stderr string
	var cfg *vmm.Config
	log := captureLog(t, func() {
		code, _, stderr, cfg = runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--no-host-root", "--log-level", "debug",
			"--report", report, "--", "true")
	})
	if code != 0 || cfg == nil {
		t.Fatalf("code %d: %s", code, stderr)
	}
	s, files := guestOf(t, cfg)
	// Six: the consoles' four, and fuse and virtiofs for the share of
	// the installed modules at /lib/modules/RELEASE (modmount.go).
	if moduleFrom(files) != "module virtio_mmio from the build tree" || len(s.Modules) != 6 {
		t.Errorf("modules %q, virtio_mmio %q: want the build tree's", s.Modules, moduleFrom(files))
	}
	if !strings.Contains(log, "command mode: kernel modules") || !strings.Contains(log, "the build tree "+tree+" around the kernel") ||
		!strings.Contains(log, "release=6.13.0-rc1-dev") {
		t.Errorf("the debug log does not say the build tree was used: %s", log)
	}
	var rep struct{ Kernel string }
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil || rep.Kernel != "6.13.0-rc1-dev" {
		t.Errorf("report %s (%v): kernel %q, want kernel.release's", b, err, rep.Kernel)
	}

	// The same kernel outside any tree finds the installed one by the
	// release of its own header.
	plain := writeFile(t, "bzImage", versionedBzImage("6.13.0-rc1-dev"))
	code, _, stderr, cfg = runCommandArgs(t, passed(), nil, "run", "--kernel", plain, "--no-host-root", "--", "true")
	if code != 0 {
		t.Fatalf("installed tree: code %d: %s", code, stderr)
	}
	if _, files := guestOf(t, cfg); moduleFrom(files) != "module virtio_mmio" {
		t.Errorf("installed tree: virtio_mmio %q", moduleFrom(files))
	}

	// --modules DIR wins over the build tree, and may be a build tree.
	for _, dir := range []string{installed, tree} {
		code, _, stderr, cfg = runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", dir, "--no-host-root", "--", "true")
		if code != 0 {
			t.Fatalf("--modules %s: code %d: %s", dir, code, stderr)
		}
		want := "module virtio_mmio"
		if dir == tree {
			want += " from the build tree"
		}
		if _, files := guestOf(t, cfg); moduleFrom(files) != want {
			t.Errorf("--modules %s: virtio_mmio %q, want %q", dir, moduleFrom(files), want)
		}
	}
}

// TestCommandModeBuiltin: --modules builtin loads nothing; a kernel with no
// tree whose /boot/config-RELEASE builds every driver in needs none; a
// boot failure then says a driver may be missing.
func TestCommandModeBuiltin(t *testing.T) {
	withModulesRoot(t, t.TempDir())
	k := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	code, _, stderr, cfg := runCommandArgs(t, passed(), nil, "run", "--kernel", k, "--modules", "builtin", "--", "true")
	if code != 0 {
		t.Fatalf("--modules builtin: code %d: %s", code, stderr)
	}
	s, files := guestOf(t, cfg)
	if len(s.Modules) != 0 || moduleFrom(files) != "" {
		t.Errorf("--modules builtin: modules %q", s.Modules)
	}

	boot := t.TempDir()
	vmlinuz := filepath.Join(boot, "vmlinuz-6.1.0-test")
	if err := os.WriteFile(vmlinuz, versionedBzImage("6.1.0-test"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(boot, "config-6.1.0-test")
	allY := "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_VIRTIO_FS=y\nCONFIG_OVERLAY_FS=y\n"
	if err := os.WriteFile(config, []byte(allY), 0o644); err != nil {
		t.Fatal(err)
	}
	// A bzImage, and an ELF vmlinux whose release is in its banner.
	vmlinux := filepath.Join(boot, "vmlinux-6.1.0-test")
	if err := os.WriteFile(vmlinux, tinyELF("Linux version 6.1.0-test (dev@box) (gcc) #1 SMP\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kernel := range []string{vmlinuz, vmlinux} {
		log := captureLog(t, func() {
			code, _, stderr, cfg = runCommandArgs(t, passed(), nil, "run", "--kernel", kernel, "--log-level", "debug", "--", "true")
		})
		if code != 0 {
			t.Fatalf("%s, /boot/config all built in: code %d: %s", kernel, code, stderr)
		}
		if s, _ := guestOf(t, cfg); len(s.Modules) != 0 || !strings.Contains(log, config) || !strings.Contains(log, "release=6.1.0-test") {
			t.Errorf("%s, /boot/config all built in: modules %q; log %s", kernel, s.Modules, log)
		}
	}

	// A kernel copied out of /boot finds /boot/config-RELEASE.
	root := t.TempDir()
	withModulesRoot(t, root)
	if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(config, filepath.Join(root, "boot", "config-6.1.0-test")); err != nil {
		t.Fatal(err)
	}
	copied := writeFile(t, "vmlinuz", versionedBzImage("6.1.0-test"))
	code, _, stderr, cfg = runCommandArgs(t, passed(), nil, "run", "--kernel", copied, "--", "true")
	if code != 0 {
		t.Fatalf("a copied kernel, /boot/config all built in: code %d: %s", code, stderr)
	}
	if s, _ := guestOf(t, cfg); len(s.Modules) != 0 {
		t.Errorf("a copied kernel, /boot/config all built in: modules %q", s.Modules)
	}

	// The agent failed at the modules stage (a stream device never
	// appeared): a boot failure, with the hint.
	w := exitdev.AgentFailed(exitdev.StageModules, 19) // ENODEV
	r, err := exitdev.Decode(w)
	if err != nil {
		t.Fatal(err)
	}
	o := verdict.Outcome{Command: &r, FailOn: verdict.All}
	res := vmm.CommandResult{Outcome: o, Verdict: verdict.Judge(o)}
	code, _, stderr, _ = runCommandArgs(t, res, nil, "run", "--kernel", k, "--modules", "builtin", "--", "true")
	if code != verdict.CodeBootFailed || !strings.Contains(stderr, "stage modules") ||
		!strings.Contains(stderr, "the guest loaded no kernel modules (none: the drivers are built into the kernel (--modules builtin))") ||
		!strings.Contains(stderr, "virtio_mmio, virtio_console") {
		t.Errorf("missing driver: code %d, stderr %q", code, stderr)
	}
	// A tree whose modules.builtin says every driver is built in loads
	// none either: the hint names that tree.
	allBuiltin := t.TempDir()
	if err := os.WriteFile(filepath.Join(allBuiltin, "modules.builtin"),
		[]byte("kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/char/virtio_console.ko\nkernel/fs/fuse/virtiofs.ko\nkernel/fs/overlayfs/overlay.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr, _ = runCommandArgs(t, res, nil, "run", "--kernel", k, "--modules", allBuiltin, "--", "true")
	if code != verdict.CodeBootFailed || !strings.Contains(stderr, "the guest loaded no kernel modules (--modules "+allBuiltin+")") {
		t.Errorf("missing driver, a tree saying all are built in: code %d, stderr %q", code, stderr)
	}
	// Loaded modules and a boot failure: no such hint.
	code, _, stderr, _ = runCommandArgs(t, res, nil, "run", "--kernel", k, "--modules", fakeTree(t), "--", "true")
	if code != verdict.CodeBootFailed || strings.Contains(stderr, "loaded no kernel modules") {
		t.Errorf("boot failure with modules: code %d, stderr %q", code, stderr)
	}
}

// TestCommandModeTreeBadInput: each problem finding the modules is one
// line and exit 2 before any VM exists.
func TestCommandModeTreeBadInput(t *testing.T) {
	withModulesRoot(t, t.TempDir())
	boot := t.TempDir()
	vmlinuz := filepath.Join(boot, "vmlinuz-6.1.0-test")
	if err := os.WriteFile(vmlinuz, versionedBzImage("6.1.0-test"), 0o644); err != nil {
		t.Fatal(err)
	}
	noVersion := writeFile(t, "bzImage", vmmtest.BzImage(vmmtest.Spin))
	_, treeKernel := kernelBuildTree(t, vmmtest.BzImage(vmmtest.Spin), "")
	noMMIO, noMMIOKernel := kernelBuildTree(t, vmmtest.BzImage(vmmtest.Spin), "")
	os.Remove(filepath.Join(noMMIO, "modules.dep"))
	os.WriteFile(filepath.Join(noMMIO, ".config"), []byte("# CONFIG_VIRTIO_MMIO is not set\n"), 0o644)
	badELF := writeFile(t, "vmlinux", tinyELF("Linux version %s (not a banner)"))
	// A kernel of another release than the tree built (its modules would
	// not load): around the kernel, or named by --modules.
	devTree, otherKernel := kernelBuildTree(t, versionedBzImage("6.1.0-other"), "6.13.0-rc1-dev")
	devRelease := filepath.Join(devTree, "include/config/kernel.release")
	// An installed-style tree whose modules (vermagic 6.13.0-other, no
	// symbol versions) are for another release than the kernel's.
	otherMods := fakeTree(t)
	other, err := os.ReadFile("testdata/vermagic-6.13.0-other.ko")
	if err != nil {
		t.Fatal(err)
	}
	ko, _ := filepath.Glob(filepath.Join(otherMods, "kernel/drivers/*.ko"))
	for _, p := range ko {
		if err := os.WriteFile(p, other, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		kernel string
		config string // /boot/config-6.1.0-test, when not ""
		args   []string
		want   []string
	}{
		{"no version, no tree", noVersion, "", nil, []string{"cannot tell the kernel's version", "--modules DIR", "--modules builtin"}},
		{"an ELF without a banner", badELF, "", nil, []string{"cannot tell the kernel's version", "ELF", "--modules builtin"}},
		{"no installed tree, no config", vmlinuz, "", nil, []string{"no kernel module tree for kernel 6.1.0-test", "--modules DIR", "--modules builtin", "no config-6.1.0-test"}},
		{"no installed tree, a driver =m", vmlinuz, "CONFIG_VIRTIO_MMIO=m\n", nil, []string{"no kernel module tree", "virtio_mmio is a module (CONFIG_VIRTIO_MMIO=m in " + boot}},
		{"no installed tree, a driver missing", vmlinuz, "CONFIG_VIRTIO_MMIO=y\n", nil, []string{"the kernel has no virtio_console (CONFIG_VIRTIO_CONSOLE is not set"}},
		{"a build tree without a driver", noMMIOKernel, "", nil, []string{"the build tree " + noMMIO, `"virtio_mmio"`, "CONFIG_VIRTIO_MMIO is not set", "--modules builtin"}},
		{"a build tree, --modules missing", treeKernel, "", []string{"--modules", filepath.Join(boot, "nope")}, []string{"is not a directory"}},
		{"a build tree of another release", otherKernel, "", nil, []string{otherKernel, "6.1.0-other", devRelease, "6.13.0-rc1-dev", "--modules DIR"}},
		{"--modules: modules of another release", vmlinuz, "", []string{"--modules", otherMods}, []string{vmlinuz, "6.1.0-test", "6.13.0-other", otherMods, "vermagic", "--modules DIR"}},
		{"--modules: a build tree of another release", vmlinuz, "", []string{"--modules", devTree}, []string{vmlinuz, "6.1.0-test", devRelease, "6.13.0-rc1-dev"}},
	} {
		cfgPath := filepath.Join(boot, "config-6.1.0-test")
		os.Remove(cfgPath)
		if tc.config != "" {
			if err := os.WriteFile(cfgPath, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		args := append(append([]string{"run", "--kernel", tc.kernel}, tc.args...), "--", "true")
		code, _, stderr, cfg := runCommandArgs(t, passed(), nil, args...)
		ok := code == 2 && cfg == nil && strings.Count(stderr, "\n") == 1
		for _, w := range tc.want {
			ok = ok && strings.Contains(stderr, w)
		}
		if !ok {
			t.Errorf("%s: code %d, stderr %q: want exit 2 and one line with %q", tc.name, code, stderr, tc.want)
		}
	}
}
