package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
)

const umlKernel = "/usr/bin/linux.uml"

// umlCases: every RX mode of the Linux driver with and without indirect
// descriptors, 64 MiB each way; then a frontend that disconnects cleanly,
// one killed in the middle of its guest-to-host stream, and a third boot,
// all against one running flint net-backend.
func umlCases() []umlCase {
	var cs []umlCase
	for _, rx := range []string{"mergeable", "big", "small"} {
		for _, ind := range []bool{true, false} {
			cs = append(cs, umlCase{rx: rx, indirect: ind, sizeMiB: 64, boots: 1})
		}
	}
	return append(cs, umlCase{rx: "mergeable", indirect: true, sizeMiB: 16, boots: 3, killBoot: 2})
}

// TestUMLNetBackend drives `flint net-backend` with the real Linux virtio_net
// driver: Debian's stock user-mode Linux kernel, whose virtio_uml is a
// vhost-user frontend, boots the guest of scripts/mkuml-guest.sh; the host side
// (scripts/uml-net-case.sh) puts the TAP in a network namespace of its own.
// Each case pings both ways and sends 64 MiB each way over TCP with SHA-256
// sums taken at both ends; the negotiated features must select the case's
// RX mode. The script only reports what each end saw; checkUMLCase
// (uml_check_test.go) is the one verdict. Without root, /dev/net/tun, the
// UML kernel or a tool it skips, or fails when the run requires everything
// (make test, CI: testenv.RequireAll).
func TestUMLNetBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short (see doc.go)")
	}
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root (network namespaces, TAP devices)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.SkipOrFail(t, "no /dev/net/tun: "+err.Error())
	}
	var missing []string
	if _, err := os.Stat(umlKernel); err != nil {
		missing = append(missing, umlKernel+" (Debian package user-mode-linux)")
	}
	for _, tool := range []string{"bash", "busybox", "ip", "cpio", "gzip", "iperf3", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		testenv.SkipOrFail(t, "UML harness incomplete, missing: "+strings.Join(missing, ", ")+" (make setup installs them)")
	}
	testenv.LogPath(t, testenv.PathUML, "")
	root := repoRoot(t)
	cache := os.Getenv("FLINT_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache")
	}
	flint := buildFlint(t, root)
	umlexec := goBuild(t, root, "./internal/umlexec")
	initrd := filepath.Join(cache, "uml", "guest.cpio.gz")
	runUMLScript(t, root, cache, 2*time.Minute, "mkuml-guest.sh", "-o", initrd)
	start := time.Now()
	for _, c := range umlCases() {
		t.Run(c.name(), func(t *testing.T) {
			t0 := time.Now()
			out, err := runUMLScript(t, root, cache, 5*time.Minute, "uml-net-case.sh", append(c.args(flint, initrd), "--umlexec", umlexec)...)
			bad := checkUMLCase(c, out)
			if err != nil {
				bad = append(bad, "uml-net-case.sh: "+err.Error())
			}
			if len(bad) > 0 {
				t.Errorf("%s failed:\n  %s\noutput:\n%s", c.name(), strings.Join(bad, "\n  "), out)
				return
			}
			t.Logf("%s: ok in %v", c.name(), time.Since(t0).Round(100*time.Millisecond))
		})
	}
	t.Logf("all UML cases: %v", time.Since(start).Round(100*time.Millisecond))
}

// runUMLScript runs scripts/NAME with bash and returns its stdout (stderr
// goes to the test log). On timeout it sends SIGTERM, on which the scripts
// clean up (namespace, TAP, processes).
func runUMLScript(t *testing.T, root, cache string, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", name)}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "FLINT_CACHE="+cache)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stdout bytes.Buffer
	stderr := newLineLogger(t, name+": ")
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	err := cmd.Run()
	stderr.Flush()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil && name == "mkuml-guest.sh" {
		t.Fatalf("scripts/%s: %v", name, err)
	}
	return stdout.String(), err
}
