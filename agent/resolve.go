package agent

import (
	"errors"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// openat2 is unix.Openat2 (tests stand in a kernel without it).
var openat2 = unix.Openat2

// maxLinks is how many symbolic links one lookup follows, as Linux's
// MAXSYMLINKS (ELOOP beyond).
const maxLinks = 40

// statInRoot stats p (absolute) as a process chrooted into root would see
// it (openInRoot).
func statInRoot(root, p string) (*unix.Stat_t, error) {
	fd, err := openInRoot(root, p, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// openInRoot opens p (absolute) with flags as a process chrooted into
// root would: symbolic links, absolute ones included, resolve inside root
// (openat2 RESOLVE_IN_ROOT; a shared host root's /bin/sh -> /bin/busybox
// must not be looked up in the agent's own root). A kernel older than 5.6
// has no openat2 (ENOSYS): walkInRoot resolves the same way. root "" is
// "/".
func openInRoot(root, p string, flags int) (int, error) {
	if root == "" {
		root = "/"
	}
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dfd)
	fd, err := openat2(dfd, "."+p, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT})
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	rel, err := walkInRoot(dfd, p)
	if err != nil {
		return -1, err
	}
	return unix.Openat(dfd, rel, flags|unix.O_CLOEXEC, 0)
}

// walkInRoot resolves p below the directory dfd one component at a time,
// as RESOLVE_IN_ROOT does: ".." stops at the root, and a symbolic link's
// target (an absolute one from the root) replaces the component. It
// returns the path relative to dfd, free of symbolic links.
func walkInRoot(dfd int, p string) (string, error) {
	todo := strings.Split(p, "/")
	cur := "." // resolved so far, relative to dfd, no symbolic links
	links := 0
	var st unix.Stat_t
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		if err := unix.Fstatat(dfd, next, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "", err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", unix.ELOOP
		}
		target, err := readlinkat(dfd, next)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "."
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}

// readlinkat is readlinkat(2) into a buffer that grows to fit.
func readlinkat(dfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// mkdirInRoot makes the directory p (absolute, clean) as a process
// chrooted into root would (mkdir -p there: symbolic links, absolute ones
// included, resolve inside root, openInRoot) and returns its path as the
// agent sees it, free of symbolic links, to mount on. A mount target in a
// shared host root made with os.MkdirAll(root+p) followed an absolute link
// out of it (Debian's /var/run -> /run: a --share at /var/run/x was made
// and mounted at the agent's own /run/x, which the command never sees).
func mkdirInRoot(root, p string) (string, error) {
	fd, err := openDirInRoot(root, p)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
}

// openDirInRoot opens the directory p in root (O_PATH), making it and
// its missing parents first.
func openDirInRoot(root, p string) (int, error) {
	fd, err := openInRoot(root, p, unix.O_PATH|unix.O_DIRECTORY)
	if !errors.Is(err, unix.ENOENT) || p == "/" {
		return fd, err
	}
	parent, err := openDirInRoot(root, path.Dir(p))
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(parent, path.Base(p), 0o755)
	unix.Close(parent)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return openInRoot(root, p, unix.O_PATH|unix.O_DIRECTORY)
}
