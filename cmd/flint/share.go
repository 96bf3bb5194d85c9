package main

// Command mode's shared host directories: the host's root (read-only, with
// a tmpfs overlay in the guest) unless --no-host-root, and each --share.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/flintvm/flint/agent"
	"github.com/flintvm/flint/vmm"
)

// The guest's layout for a shared host root.
const (
	rootTag   = "flintroot"
	lowerDir  = "/flint/lower" // the host's root, read-only
	rwDir     = "/flint/rw"    // the tmpfs holding the overlay's upper and work dirs
	guestRoot = "/flint/root"  // the overlay the command is chrooted into
)

// guestOwn are the host root's directories the guest covers with its own
// (the agent's rootMounts), opaque in the overlay.
var guestOwn = []string{"proc", "sys", "dev"}

// guestOwnDir is the directory of guestOwn that dir (absolute) lies in, or
// "": the command cannot start in such a directory of the host.
func guestOwnDir(dir string) string {
	for _, d := range guestOwn {
		if d = "/" + d; dir == d || strings.HasPrefix(dir, d+"/") {
			return d
		}
	}
	return ""
}

// shareFlag is one --share HOSTDIR:GUESTDIR[:rw].
type shareFlag struct {
	host, guest string
	rw          bool
}

// parseShare reads a --share value; HOSTDIR must be an existing directory
// (made absolute), GUESTDIR a clean absolute path other than /.
func parseShare(v string) (shareFlag, error) {
	parts := strings.Split(v, ":")
	var s shareFlag
	switch {
	case len(parts) == 3 && parts[2] == "rw":
		s.rw = true
	case len(parts) == 3 && parts[2] == "ro":
	case len(parts) != 2:
		return s, usagef("--share %q: want HOSTDIR:GUESTDIR or HOSTDIR:GUESTDIR:rw", v)
	}
	s.host, s.guest = parts[0], parts[1]
	if s.host == "" {
		return s, usagef("--share %q: empty host directory", v)
	}
	abs, err := filepath.Abs(s.host)
	if err != nil {
		return s, usagef("--share %q: %v", v, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return s, usagef("--share %q: host directory %q: %v", v, s.host, err)
	}
	if !fi.IsDir() {
		return s, usagef("--share %q: %q is not a directory", v, s.host)
	}
	s.host = abs
	if !path.IsAbs(s.guest) || path.Clean(s.guest) != s.guest || s.guest == "/" || strings.ContainsRune(s.guest, 0) {
		return s, usagef("--share %q: the guest directory %q must be a clean absolute path other than /", v, s.guest)
	}
	if !utf8.ValidString(s.guest) {
		return s, usagef("--share %q: the guest directory %q is not UTF-8", v, s.guest)
	}
	return s, nil
}

// parseShares reads every --share; the guest directories must differ.
func parseShares(vals []string) ([]shareFlag, error) {
	var out []shareFlag
	seen := map[string]bool{}
	for _, v := range vals {
		s, err := parseShare(v)
		if err != nil {
			return nil, err
		}
		if seen[s.guest] {
			return nil, usagef("--share %q: %s is shared twice", v, s.guest)
		}
		seen[s.guest] = true
		out = append(out, s)
	}
	if n := len(out); n+1 > vmm.MaxShares {
		return nil, usagef("--share: %d directories, at most %d (one more is the host's root)", n, vmm.MaxShares-1)
	}
	return out, nil
}

// shareLayout fills in the VMM's shares and the Spec's mounts: the host
// root overlay unless noHostRoot, then the kernel's module directory at
// /lib/modules/RELEASE (mods; a read-only bind mount of the root share's
// view of it, or its own share without the host's root: either way within
// vmm.MaxShares, as parseShares leaves one share for the root), then each
// share at its guest directory (inside the chroot when there is one; a
// --share of /lib/modules/RELEASE is the user's choice and wins). The
// module directory's mount is optional: a guest that cannot mount it
// runs the command all the same, as it did before it was mounted.
func shareLayout(s *agent.Spec, shares []shareFlag, noHostRoot bool, cwd string, mods modulesMount) []vmm.Share {
	var out []vmm.Share
	prefix := ""
	if !noHostRoot {
		out = append(out, vmm.Share{Tag: rootTag, HostDir: "/", ReadOnly: true})
		s.Mounts = append(s.Mounts,
			agent.Mount{Source: rootTag, Target: lowerDir, FSType: "virtiofs", Options: []string{"ro"}},
			agent.Mount{Source: "tmpfs", Target: rwDir, FSType: "tmpfs", Options: []string{"mode=755"}},
			agent.Mount{Source: "overlay", Target: guestRoot, FSType: "overlay",
				Options: []string{"lowerdir=" + lowerDir, "upperdir=" + rwDir + "/upper", "workdir=" + rwDir + "/work"},
				Opaque:  guestOwn})
		s.Root, prefix = guestRoot, guestRoot
		if cwd != "" {
			s.Dir = cwd
		}
	}
	switch {
	case mods.host == "":
	case noHostRoot:
		out = append(out, vmm.Share{Tag: modulesTag, HostDir: mods.host, ReadOnly: true})
		s.After = append(s.After, agent.Mount{Source: modulesTag, Target: mods.target(""), FSType: "virtiofs", Options: []string{"ro"},
			Optional: true})
	default:
		s.After = append(s.After, agent.Mount{Source: path.Join(lowerDir, mods.host), Target: mods.target(guestRoot), FSType: "none",
			Options: []string{"bind", "ro"}, Optional: true})
	}
	for i, sh := range shares {
		tag := fmt.Sprintf("flintshare%d", i)
		out = append(out, vmm.Share{Tag: tag, HostDir: sh.host, ReadOnly: !sh.rw})
		m := agent.Mount{Source: tag, Target: prefix + sh.guest, FSType: "virtiofs"}
		if !sh.rw {
			m.Options = []string{"ro"}
		}
		s.After = append(s.After, m)
	}
	return out
}
