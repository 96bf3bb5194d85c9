package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMakeRun runs the README's first command, `make run`, the way a
// newcomer does: on a terminal (a pseudo-terminal here), fetching and
// building what it needs, booting the stock cloud kernel into the busybox
// shell with networking, on this machine's KVM or inside the nested test
// host. In the guest's shell it checks the kernel, the interface's
// address, a ping of the host side and the host side's web page, then
// types `exit` and expects make to end with status 0 and flint with 0.
// A boot that never reaches the prompt, or never ends after `exit`, is run
// once more (a nested host can be lost; its console then goes silent);
// twice is a failure.
func TestMakeRun(t *testing.T) {
	e := setup(t)
	requireTools(t, "make")
	const attempts = 2
	var last string
	for i := 1; i <= attempts; i++ {
		out, stuck, err := e.makeRun(t)
		if err == nil {
			return
		}
		last = fmt.Sprintf("%v\nlast console output:\n%s", err, tail(out, 40))
		if !stuck {
			t.Fatalf("make run (attempt %d): %s", i, last)
		}
		t.Logf("make run (attempt %d) stuck: %v; running it again", i, err)
	}
	t.Fatalf("make run stuck %d times: %s", attempts, last)
}

// The guest shell's prompt, and what the commands typed into it print.
var (
	makeRunPrompt = regexp.MustCompile(`flint-guest:[^#\n]*# `)
	makeRunDone   = regexp.MustCompile(`MAKE-RUN-CHECKS-(\d+)-END`)
)

// makeRun runs `make run` once on a pseudo-terminal and checks the
// session. stuck reports a run that stopped making progress (no prompt,
// no end after exit), which TestMakeRun retries; any other error is a
// failure as it stands.
func (e *env) makeRun(t *testing.T) (out string, stuck bool, err error) {
	t.Helper()
	ptm, pts, err := openPTY()
	if err != nil {
		t.Fatalf("pseudo-terminal: %v", err)
	}
	defer ptm.Close()
	args := []string{"--no-print-directory", "run"}
	// The same place to boot as every other end-to-end test (FLINT_E2E_BOOT).
	if e.direct {
		args = append(args, "RUN_ARGS=--direct")
	} else {
		args = append(args, "RUN_ARGS=--nested")
	}
	cmd := exec.Command("make", args...)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "FLINT_CACHE="+e.cache, "TERM=dumb")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		pts.Close()
		t.Fatalf("make run: %v", err)
	}
	pts.Close()
	con := newConsole(ptm)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() {
		// make, the script, QEMU or flint: the whole session.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}

	start := time.Now()
	if !con.waitFor(makeRunPrompt, e.makeRunTimeout(), exited) {
		kill()
		return con.text(), true, fmt.Errorf("no guest shell prompt after %v", time.Since(start).Round(time.Second))
	}
	t.Logf("guest shell prompt after %v", time.Since(start).Round(time.Second))
	con.mark()
	checks := "uname -r; ip -o -4 addr show dev eth0; ping -c 2 10.0.2.1 >/dev/null && echo PING-OK; " +
		"wget -q -O - http://10.0.2.1/; echo; echo MAKE-RUN-CHECKS-$((40+2))-END\n"
	if _, err := ptm.Write([]byte(checks)); err != nil {
		kill()
		return con.text(), false, fmt.Errorf("typing into the guest shell: %v", err)
	}
	if !con.waitFor(makeRunDone, 2*time.Minute, exited) {
		kill()
		return con.text(), true, fmt.Errorf("the guest shell did not finish the checks")
	}
	session := con.since()
	for _, want := range []string{"cloud-amd64", "inet 10.0.2.15/24", "PING-OK", "This page comes from 10.0.2.1", "MAKE-RUN-CHECKS-42-END"} {
		if !strings.Contains(session, want) {
			kill()
			return con.text(), false, fmt.Errorf("the guest shell's output lacks %q:\n%s", want, session)
		}
	}
	con.mark()
	if _, err := ptm.Write([]byte("exit\n")); err != nil {
		kill()
		return con.text(), false, fmt.Errorf("typing exit: %v", err)
	}
	select {
	case err := <-exited:
		con.drain()
		if err != nil {
			return con.text(), false, fmt.Errorf("make run ended with %v after exit", err)
		}
	case <-time.After(3 * time.Minute):
		kill()
		return con.text(), true, fmt.Errorf("make run did not end within 3m of exit")
	}
	end := con.since()
	if !strings.Contains(end, "flint exited with status 0") && !e.direct {
		return con.text(), false, fmt.Errorf("the nested host did not report flint's status 0:\n%s", tail(end, 20))
	}
	t.Logf("make run: prompt, checks and exit 0 in %v", time.Since(start).Round(time.Second))
	return con.text(), false, nil
}

// makeRunTimeout bounds the wait for the first prompt: setup (nothing to
// do once the suite's earlier tests fetched the kernels), the build, the
// initramfs and the boot (with the nested host's own boot).
func (e *env) makeRunTimeout() time.Duration {
	if e.direct {
		return 3 * time.Minute
	}
	return 8 * time.Minute
}

// console collects what a pseudo-terminal's master side reads.
type console struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	from int           // mark: where since starts
	more chan struct{} // a read appended something (buffered, 1)
	eof  chan struct{} // closed when reads end
}

func newConsole(ptm *os.File) *console {
	c := &console{more: make(chan struct{}, 1), eof: make(chan struct{})}
	go func() {
		defer close(c.eof)
		b := make([]byte, 4096)
		for {
			n, err := ptm.Read(b)
			if n > 0 {
				c.mu.Lock()
				c.buf.Write(b[:n])
				c.mu.Unlock()
				select {
				case c.more <- struct{}{}:
				default:
				}
			}
			if err != nil { // EIO once every slave side is closed
				return
			}
		}
	}()
	return c
}

// waitFor waits until what was read since the mark matches re, the
// timeout passes, or the process ends (exited is then drained and put
// back for the caller).
func (c *console) waitFor(re *regexp.Regexp, timeout time.Duration, exited chan error) bool {
	deadline := time.After(timeout)
	for {
		if re.MatchString(c.since()) {
			return true
		}
		select {
		case <-c.more:
		case err := <-exited:
			exited <- err
			c.drain()
			return re.MatchString(c.since())
		case <-deadline:
			return false
		}
	}
}

// drain waits briefly for the reader to reach the end of the output.
func (c *console) drain() {
	select {
	case <-c.eof:
	case <-time.After(5 * time.Second):
	}
}

func (c *console) mark() {
	c.mu.Lock()
	c.from = c.buf.Len()
	c.mu.Unlock()
}

func (c *console) since() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf.Bytes()[c.from:])
}

func (c *console) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// openPTY opens a pseudo-terminal pair: the master (ptmx) and its slave.
func openPTY() (ptm, pts *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	ptm = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	name := filepath.Join("/dev/pts", fmt.Sprint(n))
	pts, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	return ptm, pts, nil
}
