package jail

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/testenv"
)

// netEnv names, for the jailed test child, an abstract unix socket and a
// loopback TCP address of the host's network namespace.
const netEnv = "JAIL_TEST_NET"

// netReach is the child's part of TestJailHasNoNetwork (childMain calls
// it around Enter): it dials each of netEnv's addresses and returns the
// ones it reached.
func netReach() []string {
	var reached []string
	for _, a := range strings.Split(os.Getenv(netEnv), ",") {
		network, addr, _ := strings.Cut(a, "=")
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			reached = append(reached, a)
		}
	}
	return reached
}

// noCgo is this package's test binary built with CGO_ENABLED=0, once.
var noCgo struct {
	once sync.Once
	bin  string
	out  []byte
	err  error
}

// rerunWithoutCgo runs t's test from a copy of the test binary built
// without cgo when this one links cgo (the unit tests' default: net
// brings it in), and then reports true: Enter's calls on every thread
// (syscall.AllThreadsSyscall) exist only without cgo, as flint is built
// (make build), so a cgo binary would check one thread of the jailed
// child. It reports false, having done nothing, in a binary without cgo.
func rerunWithoutCgo(t *testing.T) bool {
	t.Helper()
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_GETPID, 0, 0, 0); e != syscall.ENOTSUP {
		return false
	}
	noCgo.once.Do(func() {
		dir, err := os.MkdirTemp("", "jailtest")
		if err != nil {
			noCgo.err = err
			return
		}
		noCgo.bin = filepath.Join(dir, "jail.test")
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "test", "-c", "-o", noCgo.bin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		noCgo.out, noCgo.err = build.CombinedOutput()
	})
	if noCgo.err != nil {
		testenv.SkipOrFail(t, fmt.Sprintf("building the test without cgo: %v\n%s", noCgo.err, noCgo.out))
		return true
	}
	out, err := exec.Command(noCgo.bin, "-test.run=^"+t.Name()+"$", "-test.v").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("without cgo: %v\n%s", err, out)
	}
	return true
}

// TestJailHasNoNetwork: from inside the jail, nothing of the host's
// network namespace is reachable: neither a unix socket in the abstract
// namespace (no path leads to it, but a filter that allows connect, as
// with a vsock device, lets flint dial it by name: X11's, D-Bus's, a
// container shim's) nor a TCP service on the host's loopback (with
// --seccomp off). The child reaches both before Enter. Enter moves every
// thread into a new network namespace, which takes a Go program without
// cgo (rerunWithoutCgo).
func TestJailHasNoNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "the jail's network namespace: needs root")
		return
	}
	if rerunWithoutCgo(t) {
		return
	}
	abstract, err := net.Listen("unix", fmt.Sprintf("@flint-jail-test-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	for _, l := range []net.Listener{abstract, tcp} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	t.Setenv(netEnv, "unix="+abstract.Addr().String()+",tcp="+tcp.Addr().String())
	s, out := childSetup(t, 0o755)
	b := launchOK(t, s, out)
	if !strings.Contains(string(b), "reached from the jail: []") {
		t.Fatalf("jailed child: %q, want nothing of the host's network reached", b)
	}
}
