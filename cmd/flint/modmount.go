package main

// Command mode's /lib/modules/RELEASE in the guest: the kernel's own
// module directory, so that modprobe (a test suite's, a developer's
// `modprobe nf_tables`) finds the modules of the kernel under test, not
// the host's, which exist only when the host runs the same release.

import (
	"errors"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/flintvm/flint/boot/initramfs"
)

// modulesTag is the virtio-fs tag of the module directory's own share
// (only without the host's root: with it, the directory is a bind mount
// of the root share's view of it).
const modulesTag = "flintmodules"

// modulesMount is the host's module directory the guest sees at
// /lib/modules/Release; host "" means none.
type modulesMount struct {
	host    string // absolute, free of symbolic links
	release string
}

// installedLayout reports whether dir is laid out as `make
// modules_install` and a distribution package leave /lib/modules/RELEASE
// (what modprobe reads): it has modules.dep (or its binary index) or a
// kernel/ directory.
func installedLayout(dir string) bool {
	if isFile(filepath.Join(dir, "modules.dep")) || isFile(filepath.Join(dir, depIndex)) {
		return true
	}
	fi, err := os.Stat(filepath.Join(dir, "kernel"))
	return err == nil && fi.IsDir()
}

// depIndex is depmod's binary index of modules.dep: kmod's modprobe (most
// distributions') reads only that; busybox's reads modules.dep.
const depIndex = "modules.dep.bin"

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// modulesMount decides which host directory the guest sees at
// /lib/modules/RELEASE: the installed-layout directory the modules came
// from (--modules DIR, /lib/modules/RELEASE), or for a build tree its
// installed modules (/lib/modules/RELEASE after `make modules_install`);
// none when that is what the shared host root shows there already, for
// --modules builtin, a kernel whose release is unknown, or a tree that is
// not installed (a build tree's .ko files lie where they were built:
// modprobe needs modules_install's layout and depmod's index). log (may
// be nil) hears why there is none, and a warning when the directory has
// no modules.dep.bin.
func (g *guest) modulesMount(src moduleSource, log *slog.Logger) modulesMount {
	if src.dir == "" || !validRelease(g.kver) {
		return modulesMount{}
	}
	dir := src.dir
	if initramfs.IsBuildTree(dir) {
		installed, err := initramfs.FindTree(modulesRoot, g.kver)
		if err != nil {
			if log != nil {
				log.Info("command mode: modprobe in the guest finds no module of the build tree: its modules are not installed; run make modules_install INSTALL_MOD_PATH=DIR there and give --modules DIR/lib/modules/"+g.kver,
					"tree", dir)
			}
			return modulesMount{}
		}
		dir = installed
	}
	if !installedLayout(dir) {
		if log != nil {
			log.Info("command mode: the module directory has neither modules.dep nor kernel/: not shown at /lib/modules in the guest", "dir", dir)
		}
		return modulesMount{}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err == nil && !utf8.ValidString(real) {
		err = errors.New("its path is not UTF-8")
	}
	if err != nil {
		if log != nil {
			log.Info("command mode: the module directory is not shown at /lib/modules in the guest", "dir", dir, "err", err)
		}
		return modulesMount{}
	}
	if !g.noHostRoot {
		seen, serr := os.Stat(filepath.Join(modulesRoot, "lib/modules", g.kver))
		fi, ferr := os.Stat(real)
		if serr == nil && ferr == nil && os.SameFile(seen, fi) {
			return modulesMount{} // the host root shows it there already
		}
		if d := guestOwnDir(real); d != "" {
			if log != nil {
				log.Warn("command mode: the module directory lies in "+d+", which the guest replaces with its own: not shown at /lib/modules in the guest", "dir", real)
			}
			return modulesMount{}
		}
	}
	if !isFile(filepath.Join(real, depIndex)) && log != nil {
		log.Warn("command mode: the module directory has no "+depIndex+" (a package unpacked, not installed): modprobe in the guest (kmod's) finds no module until depmod has run ("+depmodHint(real, g.kver)+")",
			"dir", real)
	}
	return modulesMount{host: real, release: g.kver}
}

// validRelease reports whether release can name a directory of
// /lib/modules in the guest's Spec: one path element, UTF-8 (the Spec is
// JSON text).
func validRelease(release string) bool {
	return release != "" && release != "." && release != ".." && !strings.ContainsAny(release, "/\x00") && utf8.ValidString(release)
}

// depmodHint is the host command that writes dir's modules.dep.
func depmodHint(dir, release string) string {
	if base, ok := strings.CutSuffix(dir, "/lib/modules/"+release); ok {
		if base == "" {
			base = "/"
		}
		return "depmod -b " + base + " " + release
	}
	return "depmod -b BASE " + release + ", with the directory at BASE/lib/modules/" + release
}

// modulesTarget is where the guest mounts m: /lib/modules/RELEASE in the
// command's root (prefix: the chroot's directory, or "" for the
// initramfs's own root).
func (m modulesMount) target(prefix string) string {
	return prefix + path.Join("/lib/modules", m.release)
}
