package umlhost

// Booting UML for a test: the busybox initramfs and the run with its
// console captured, shared by the UML tests of the vhost-user transport
// and of the devices served over it (virtio/fs).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flintvm/flint/boot/initramfs"
)

// Where Debian's user-mode-linux and busybox-static packages install
// UML, its modules and busybox.
const (
	Binary  = "/usr/bin/linux.uml"
	Modules = "/usr/lib/uml/modules"
	Busybox = "/usr/bin/busybox"
)

// ErrMissing wraps Initramfs's errors about a part of the UML harness
// that is not installed (a test skips, or fails under CI, on it).
var ErrMissing = errors.New("the UML harness is not installed")

// Initramfs writes dir/initrd.cpio and returns its path: a busybox
// guest whose /init is init, with /bin/busybox, empty /proc, /sys,
// /dev and /tmp, and in /lib the UML kernel modules mods (paths below
// the first release's kernel/ directory, "fs/fuse/fuse.ko"). Errors
// about busybox, the modules or UML itself wrap ErrMissing.
func Initramfs(dir, init string, mods ...string) (string, error) {
	if _, err := os.Stat(Binary); err != nil {
		return "", fmt.Errorf("%w: no user-mode Linux: %v", ErrMissing, err)
	}
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return "", fmt.Errorf("%w: busybox: %v", ErrMissing, err)
	}
	rel, err := os.ReadDir(Modules)
	if err != nil || len(rel) == 0 {
		return "", fmt.Errorf("%w: UML modules: %v", ErrMissing, err)
	}
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	for _, d := range []string{"bin", "proc", "sys", "lib", "dev", "tmp"} {
		w.Dir(d, 0o755)
	}
	w.File("bin/busybox", 0o755, bb)
	w.File("init", 0o755, []byte(init))
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(Modules, rel[0].Name(), "kernel", m))
		if err != nil {
			return "", fmt.Errorf("%w: UML module: %v", ErrMissing, err)
		}
		w.File("lib/"+filepath.Base(m), 0o644, b)
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "initrd.cpio")
	return p, os.WriteFile(p, buf.Bytes(), 0o644)
}

// Run runs argv (UML and its command line) under Exec, through
// CommandContext (the test binary's TestMain must call MaybeExec), in
// dir with TMPDIR=dir: its console is stdin, a pipe kept open until it
// exits, and stdout and stderr, which Run returns. After timeout it
// kills the process group (UML runs as several processes) and returns
// the console so far with an error. UML's exit status is no error: it
// exits non-zero after poweroff -f on some versions.
func Run(dir string, timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := CommandContext(ctx, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = dir
	cmd.Env = append(cmd.Env, "TMPDIR="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer w.Close()
	cmd.Stdin = r
	err = cmd.Start()
	r.Close()
	if err != nil {
		return "", fmt.Errorf("umlhost: %w", err)
	}
	cmd.Wait()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("umlhost: %s timed out after %v", argv[0], timeout)
	}
	return out.String(), nil
}
