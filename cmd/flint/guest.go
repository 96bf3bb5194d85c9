package main

// Command mode's guest: the kernel modules it needs, the agent's Spec, and
// the generated initramfs (the running flint binary as /init).

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/boot/initramfs"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm"
)

// selfExe is the running flint binary, which becomes the guest's /init.
var selfExe = "/proc/self/exe"

// modulesRoot is where installed module trees are looked for (tests move it).
var modulesRoot = "/"

// guest is what command mode puts into the guest.
type guest struct {
	argv       []string
	kernel     string // --kernel's path
	kver       string // the kernel's release; "" when unknown (--modules given, or a build tree)
	kverErr    error  // why kver is unknown
	modules    string // --modules: a tree, builtinModules, or "" to look for one
	buildTree  string // the build tree the kernel lies in, or ""
	noHostRoot bool
	stdin      bool // the command gets a stdin device
	shares     []shareFlag
	env        []string     // --env: NAME=VALUE entries
	source     moduleSource // where prepare took the modules from
	loaded     int          // how many modules the guest loads
	cwd        string       // the host's working directory, the command's in a shared root
	modsMount  modulesMount // the module directory the guest sees at /lib/modules/RELEASE
	// vmShares is what prepare decided the VMM serves.
	vmShares []vmm.Share
	// mergeOutput: Flint's stdout and stderr are one file, so the
	// command's stderr is its stdout pipe (the stdout device).
	mergeOutput bool
}

// wantedModules are the modules the guest needs for cfg: command mode's
// own devices are virtio-mmio consoles; shares add virtiofs (and overlay
// for the host's root), --net adds virtio_net, and virtio_pci for an
// interface on PCI.
func (g *guest) wantedModules(cfg *vmm.Config) []string {
	mods := []string{"virtio_mmio", "virtio_console"}
	if !g.noHostRoot || len(g.shares) > 0 || g.modsMount.host != "" {
		mods = append(mods, "virtiofs")
	}
	if !g.noHostRoot {
		mods = append(mods, "overlay")
	}
	pci := false
	for _, n := range cfg.Net {
		pci = pci || n.Transport != configs.TransportMMIO
	}
	if pci {
		mods = append(mods, "virtio_pci")
	}
	if len(cfg.Net) > 0 {
		mods = append(mods, "virtio_net")
	}
	return mods
}

// builtinModules is --modules' value for a kernel with the guest's drivers
// built in: no modules are loaded.
const builtinModules = "builtin"

// moduleSource is where the guest's modules come from: the tree Resolve
// reads, or none (dir "") when the drivers are built into the kernel.
type moduleSource struct {
	dir, what string // what: for the debug log and messages
}

// moduleSource finds the kernel's modules, in this order: --modules (a
// tree, or builtin), the build tree the kernel lies in, then
// /lib/modules/RELEASE (or /usr/lib/modules/RELEASE). Without any, a
// kernel whose configuration beside it (/boot/config-RELEASE) builds every
// driver of wanted in needs none; anything else is a usageError naming
// --modules DIR and --modules builtin.
func (g *guest) moduleSource(wanted []string) (moduleSource, error) {
	switch {
	case g.modules == builtinModules:
		return moduleSource{what: "none: the drivers are built into the kernel (--modules builtin)"}, nil
	case g.modules != "":
		what := "--modules " + g.modules
		if initramfs.IsBuildTree(g.modules) {
			what += " (a build tree)"
		}
		return moduleSource{g.modules, what}, nil
	case g.buildTree != "":
		return moduleSource{g.buildTree, "the build tree " + g.buildTree + " around the kernel"}, nil
	case g.kver == "":
		return moduleSource{}, usagef("--kernel %s: cannot tell the kernel's version to find its modules (%v) and it lies in no build tree; give its module directory with --modules DIR, or --modules builtin if its drivers are built in",
			g.kernel, g.kverErr)
	}
	dir, err := initramfs.FindTree(modulesRoot, g.kver)
	if err == nil {
		return moduleSource{dir, "the installed tree " + dir}, nil
	}
	conf, cerr := g.bootConfig()
	if cerr != nil {
		return moduleSource{}, usagef("%v, or --modules builtin if its drivers are built in (no config-%s beside the kernel or in /boot tells)", err, g.kver)
	}
	if berr := conf.CheckBuiltin(wanted); berr != nil {
		return moduleSource{}, usagef("%v (%v)", err, berr)
	}
	return moduleSource{what: "none: the drivers are built into the kernel (" + conf.Path + ")"}, nil
}

// bootConfig reads the configuration an installed kernel has beside it:
// config-RELEASE in the kernel's directory (/boot), in the directory a
// symbolic link to the kernel leads to, or in /boot (a kernel copied out
// of it); the first error when there is none.
func (g *guest) bootConfig() (*initramfs.Kconfig, error) {
	name := "config-" + g.kver
	dirs := []string{filepath.Dir(g.kernel)}
	if target, err := filepath.EvalSymlinks(g.kernel); err == nil {
		dirs = append(dirs, filepath.Dir(target))
	}
	var first error
	for _, dir := range append(dirs, filepath.Join(modulesRoot, "boot")) {
		conf, err := initramfs.ReadKconfig(filepath.Join(dir, name))
		if err == nil {
			return conf, nil
		}
		first = cmp.Or(first, err)
	}
	return nil, first
}

// checkTreeRelease refuses a build tree that built another release than
// the kernel's (a kernel from elsewhere, a tree rebuilt since): its modules
// carry the tree's release and would not load into the kernel, a boot
// failure far from its cause. A tree that does not say its release, or a
// kernel whose own release is unknown, passes.
func (g *guest) checkTreeRelease(dir string) error {
	if dir == "" || g.kver == "" || !initramfs.IsBuildTree(dir) {
		return nil
	}
	file := filepath.Join(dir, initramfs.ReleasePath)
	built, err := boot.ReadReleaseFile(file)
	if err != nil || built == g.kver {
		return nil
	}
	return usagef("--kernel %s is Linux %s, but the build tree %s built %s (%s): its modules would not load; build that kernel there (make), or give the kernel's own modules with --modules DIR",
		g.kernel, g.kver, dir, built, file)
}

// checkModuleRelease compares the kernel's release with the one its
// modules were built for (the first module's vermagic): Linux refuses a
// module of another release unless it carries symbol versions, so that is
// a usageError naming both, not a modules-stage boot failure in the guest;
// with symbol versions it may load, and a warning says why it might not.
// A module that cannot be read is left to the initramfs build to report.
func (g *guest) checkModuleRelease(mods []initramfs.Module, src moduleSource, log *slog.Logger) error {
	if g.kver == "" || len(mods) == 0 {
		return nil
	}
	mr, err := initramfs.ReadModuleRelease(mods[0].Path)
	if err != nil || mr.Release == g.kver {
		return nil
	}
	if !mr.Modversions {
		return usagef("--kernel %s is Linux %s, but the modules of %s are for %s (the vermagic of %s): the kernel would refuse them; give the kernel's own modules with --modules DIR",
			g.kernel, g.kver, src.what, mr.Release, mods[0].Path)
	}
	if log != nil {
		log.Warn("command mode: the modules are for another release (they load only if their symbol versions match the kernel's)",
			"kernel", g.kver, "modules", mr.Release, "from", src.what)
	}
	return nil
}

// spec is the agent's Spec for modules (load order) and the interfaces
// (those with an ip= address).
func (g *guest) spec(mods []initramfs.Module, nets []configs.NetInterface) *agent.Spec {
	s := &agent.Spec{Argv: g.argv, Env: commandEnv(!g.noHostRoot, g.env), Dir: "/", Stdout: vmm.StdoutDevice, Stderr: vmm.StderrDevice}
	if g.stdin {
		s.Stdin = vmm.StdinDevice
	}
	if g.mergeOutput {
		s.Stderr = s.Stdout
	}
	for _, n := range nets {
		if n.GuestIP.IsValid() {
			s.Interfaces = append(s.Interfaces, agent.Interface{MAC: vmm.NetMAC(n).String(), Addr: n.GuestIP.String()})
		}
	}
	for _, m := range mods {
		s.Modules = append(s.Modules, initramfs.ModuleDir+"/"+m.Name+".ko")
	}
	g.vmShares = shareLayout(s, g.shares, g.noHostRoot, g.cwd, g.modsMount)
	return s
}

// prepare resolves the modules and replaces cfg.Initrd with the user's
// initrd (if any) followed by the generated archive. Every problem with
// the input is a usageError.
func (g *guest) prepare(cfg *vmm.Config) error {
	wanted := g.wantedModules(cfg)
	src, err := g.moduleSource(wanted)
	if err != nil {
		return err
	}
	if err := g.checkTreeRelease(src.dir); err != nil {
		return err
	}
	g.modsMount = g.modulesMount(src, cfg.Log)
	var mods []initramfs.Module
	if src.dir != "" {
		if mods, err = g.resolve(src.dir, cfg); err != nil {
			if errors.Is(err, initramfs.ErrNoModuleTree) {
				return usagef("--modules %s: %v", src.dir, err)
			}
			return usagef("the guest needs a module %s cannot give: %v (use --modules DIR to name another tree, or --modules builtin if the drivers are built in)", src.what, err)
		}
	}
	if err := g.checkModuleRelease(mods, src, cfg.Log); err != nil {
		return err
	}
	g.source, g.loaded = src, len(mods)
	if cfg.Log != nil {
		names := make([]string, len(mods))
		for i, m := range mods {
			names[i] = m.Name
		}
		cfg.Log.Debug("command mode: kernel modules", "release", g.kver, "from", src.what, "load", strings.Join(names, " "))
	}
	s := g.spec(mods, cfg.Net)
	if err := s.Validate(); err != nil {
		return usagef("run: %v", err)
	}
	specJSON, err := json.Marshal(s)
	if err != nil {
		return err
	}
	libs, err := dynamicFiles(selfExe)
	if err != nil {
		return usagef("run: this flint binary is dynamically linked and its libraries cannot be put into the guest (%v): build it with CGO_ENABLED=0", err)
	}
	opt := initramfs.Options{InitFile: selfExe, Modules: mods,
		Files: append(libs, initramfs.File{Path: agent.SpecPath, Data: specJSON})}
	if cfg.Initrd != nil {
		opt.UserInitrd = bytes.NewReader(cfg.Initrd)
	}
	var buf bytes.Buffer
	buf.Grow(archiveEstimate(len(cfg.Initrd), mods, opt.Files))
	if _, err := initramfs.Build(&buf, opt); err != nil {
		return fmt.Errorf("building the guest's initramfs: %w", err)
	}
	if uint64(buf.Len()) >= uint64(cfg.MemoryMiB)<<20/2 {
		return usagef("--memory %d: the guest's initramfs is %d MiB; give the guest more memory", cfg.MemoryMiB, buf.Len()>>20)
	}
	cfg.Initrd = buf.Bytes()
	return nil
}

// resolve resolves the modules the guest needs from the tree dir. The
// module directory's own share (modsMount without the host's root) needs
// virtiofs: a kernel without it goes without the share, not without the
// run.
func (g *guest) resolve(dir string, cfg *vmm.Config) ([]initramfs.Module, error) {
	mods, err := initramfs.Resolve(dir, g.wantedModules(cfg))
	if err != nil && g.noHostRoot && g.modsMount.host != "" {
		if cfg.Log != nil {
			cfg.Log.Info("command mode: the module directory is not shown at /lib/modules in the guest (no virtiofs)", "err", err)
		}
		g.modsMount = modulesMount{}
		mods, err = initramfs.Resolve(dir, g.wantedModules(cfg))
	}
	return mods, err
}

// archiveEstimate is the generated initramfs's size as far as the host
// files tell (compressed modules grow larger, and the buffer with them):
// one allocation instead of a doubling series of copies of the agent.
func archiveEstimate(userInitrd int, mods []initramfs.Module, files []initramfs.File) int {
	n := userInitrd + 1<<20 // headers, directories, the Spec
	size := func(p string) {
		if fi, err := os.Stat(p); err == nil && fi.Size() < 1<<30 {
			n += int(fi.Size())
		}
	}
	size(selfExe)
	for _, m := range mods {
		size(m.Path)
	}
	for _, f := range files {
		if f.HostPath != "" {
			size(f.HostPath)
		}
	}
	return n
}
