package agent

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// rootTree is a directory to resolve paths in: a binary, links to it
// (absolute, relative, through ".."), a link loop and links that try to
// leave the root.
func rootTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "bin", "opt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/busybox"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"bin/sh":      "/usr/bin/busybox",   // absolute: inside the root
		"bin/ash":     "../usr/bin/busybox", // relative
		"opt/up":      "../../../../..",     // ".." stops at the root
		"opt/escape":  "/../../usr/bin/busybox",
		"opt/loop1":   "loop2",
		"opt/loop2":   "loop1",
		"opt/dirlink": "/usr/bin",
		"opt/dangle":  "/nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestWalkInRootMatchesOpenat2: without openat2 (Linux before 5.6) a
// path resolves in the root to the same file, or the same error, as with
// RESOLVE_IN_ROOT.
func TestWalkInRootMatchesOpenat2(t *testing.T) {
	root := rootTree(t)
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	for _, p := range []string{"/bin/sh", "/bin/ash", "/opt/up/usr/bin/busybox", "/opt/escape", "/opt/loop1",
		"/opt/dirlink/busybox", "/opt/dirlink/../bin/sh", "/opt/dangle", "/usr/bin/busybox/x", "/", "/..", "/usr/./bin/../bin/busybox"} {
		want, werr := statInRoot(root, p)
		if errors.Is(werr, unix.ENOSYS) {
			t.Skip("this kernel has no openat2 to compare with")
		}
		got, gerr := walkStat(dfd, p)
		switch {
		case werr != nil || gerr != nil:
			if !errors.Is(gerr, werr) && !errors.Is(werr, gerr) {
				t.Errorf("%s: error %v, openat2 says %v", p, gerr, werr)
			}
		case got.Ino != want.Ino || got.Dev != want.Dev:
			t.Errorf("%s: inode %d, openat2 finds %d", p, got.Ino, want.Ino)
		}
	}
}

// TestLookPathWithoutOpenat2: on a kernel without openat2 the command is
// still found in the root, through its links (it was "not found", 127,
// for every command).
func TestLookPathWithoutOpenat2(t *testing.T) {
	root := rootTree(t)
	saved := openat2
	openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
	defer func() { openat2 = saved }()
	for _, argv0 := range []string{"sh", "ash", "busybox"} {
		if p, err := lookPath(root, "/", argv0, []string{"PATH=/opt:/bin:/usr/bin"}); err != nil || filepath.Base(p) != argv0 {
			t.Errorf("%s: %q, %v", argv0, p, err)
		}
	}
	if p, err := lookPath(root, "/opt", "dirlink/busybox", nil); err != nil || p != "dirlink/busybox" {
		t.Errorf("relative path through a link: %q, %v", p, err)
	}
	if _, err := lookPath(root, "/", "loop1", []string{"PATH=/opt"}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("a link loop in PATH: %v, want not found", err)
	}
	if _, err := lookPath(root, "/", "/opt/loop1", nil); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("a link loop: %v, want ELOOP", err)
	}
}

// walkStat is walkInRoot, then a stat of what it resolved.
func walkStat(dfd int, p string) (*unix.Stat_t, error) {
	rel, err := walkInRoot(dfd, p)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, rel, &st, 0); err != nil {
		return nil, err
	}
	return &st, nil
}

// TestMkdirInRoot: a mount target in the command's root is made, and its
// path found, as the command sees the root: an absolute link (Debian's
// /var/run -> /run) leads to the root's own /run, not the agent's; with
// openat2 and without it (Linux before 5.6).
func TestMkdirInRoot(t *testing.T) {
	for _, noOpenat2 := range []bool{false, true} {
		if noOpenat2 {
			old := openat2
			openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
			t.Cleanup(func() { openat2 = old })
		}
		root := rootTree(t)
		real, err := filepath.EvalSymlinks(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"run", "usr/lib"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for link, target := range map[string]string{"var/run": "/run", "lib": "usr/lib"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
		}
		for p, want := range map[string]string{
			"/var/run/flint/share": "/run/flint/share",
			"/lib/modules/6.1.0":   "/usr/lib/modules/6.1.0",
			"/opt/dirlink/new":     "/usr/bin/new",
			"/usr/bin":             "/usr/bin", // there already
		} {
			got, err := mkdirInRoot(root, p)
			if err != nil || got != real+want {
				t.Errorf("openat2 %v: %s: %q %v, want %q", !noOpenat2, p, got, err, real+want)
				continue
			}
			if fi, err := os.Lstat(got); err != nil || !fi.IsDir() {
				t.Errorf("openat2 %v: %s: %s not made: %v", !noOpenat2, p, got, err)
			}
		}
		for _, p := range []string{"/usr/bin/busybox/x", "/opt/dangle/x"} {
			if got, err := mkdirInRoot(root, p); err == nil {
				t.Errorf("openat2 %v: %s made at %s, want an error", !noOpenat2, p, got)
			}
		}
	}
}
