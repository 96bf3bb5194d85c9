// Package testenv answers, for Flint's tests, what this machine can run
// (in the style of Go's own internal/testenv): whether /dev/kvm works and
// what kind of KVM it is, and whether the run requires every test to run
// (FLINT_TEST_REQUIRE, CI), so that a test that cannot run here skips with
// the reason or fails with it.
//
// It is the one place that decides "is KVM usable here, and how"; the KVM
// package tests (kvm, vmm, cmd/flint) and the end-to-end tests (tests/) ask
// it. A check never changes the machine: /dev/kvm is opened only when it is
// a character device, and never created.
//
// FLINT_TEST_REQUIRE is a comma-separated list of words:
//
//   - unset or empty: a test that cannot run here skips, saying why (a subset
//     run: `make unit`, `make race`, `go test` by hand).
//   - all: `make test` sets it, and CI=true implies it. End-to-end tests fail
//     when a tool or device they need is missing. The KVM package tests, on a
//     machine without a working /dev/kvm, still skip in their own packages,
//     naming TestKVMPackagesNested (tests/kvmpkg_test.go), which runs them in
//     the nested test host in the same `make test` and fails if it cannot.
//   - kvm: a KVM package test without a working /dev/kvm fails; the nested
//     host's run of the package tests sets it.
//
// Tests log which path they took as a line "flint-test-path: PATH" (PATH is
// one of the Path constants); `make test`'s summary groups tests by it.
//
// This package imports nothing from the module, so every package's tests can
// use it (kvm's internal tests included).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// DevicePath is the KVM device the checks look at.
const DevicePath = "/dev/kvm"

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(KVMIO=0xAE, 0x00); the
// kernel's KVM API has answered 12 since Linux 2.6.22. (Package kvm has
// its own copy among its ioctl numbers; this package must not import kvm.)
const (
	kvmGetAPIVersion = 0xAE00
	kvmAPIVersion    = 12
)

// Paths a test reports with LogPath ("flint-test-path: PATH").
const (
	PathDirect = "direct" // on this machine's /dev/kvm
	PathNested = "nested" // inside the nested test host (QEMU TCG, kvm_amd in L1)
	PathUML    = "uml"    // through user-mode Linux (no KVM)
)

// PathMarker starts the line that says which path a test took.
const PathMarker = "flint-test-path: "

// KVM describes this machine's /dev/kvm.
type KVM struct {
	// Usable: DevicePath is a character device that opens read-write and
	// answers KVM_GET_API_VERSION with 12.
	Usable bool
	// Why says why not Usable ("" when it is).
	Why string
	// PVM: the KVM module is PVM (/sys/module/kvm_pvm), a software KVM
	// that runs hand-made guests but not stock kernels.
	PVM bool
	// HWVirt: the CPU has hardware virtualization (vmx or svm in
	// /proc/cpuinfo); HWVirtWhy says why not.
	HWVirt    bool
	HWVirtWhy string
}

// Kind names the KVM: "hardware (vmx)", "hardware (svm)", "PVM", or
// "none (...)".
func (k KVM) Kind() string {
	switch {
	case !k.Usable:
		return "none (" + k.Why + ")"
	case k.PVM:
		return "PVM (module kvm_pvm)"
	case k.HWVirt:
		return "hardware virtualization"
	}
	return "KVM without vmx/svm"
}

var (
	probeOnce sync.Once
	probed    KVM
)

// Probe looks at this machine once and returns what it found.
func Probe() KVM {
	probeOnce.Do(func() { probed = probe(DevicePath, "/proc/cpuinfo", "/sys/module/kvm_pvm") })
	return probed
}

var hwVirtFlag = regexp.MustCompile(`(?m)^flags\s*:.*\b(vmx|svm)\b`)

func probe(dev, cpuinfo, pvmModule string) KVM {
	var k KVM
	k.Usable, k.Why = deviceWorks(dev)
	if _, err := os.Stat(pvmModule); err == nil {
		k.PVM = true
	}
	if b, err := os.ReadFile(cpuinfo); err != nil {
		k.HWVirtWhy = "cannot read " + cpuinfo + ": " + err.Error()
	} else if !hwVirtFlag.Match(b) {
		k.HWVirtWhy = "no vmx/svm flag in " + cpuinfo
	} else {
		k.HWVirt = true
	}
	return k
}

// deviceWorks checks dev without changing anything: a character device
// (never a regular file, never created), opened read-write, that answers
// KVM_GET_API_VERSION.
func deviceWorks(dev string) (bool, string) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return false, fmt.Sprintf("no %s (%v)", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return false, fmt.Sprintf("%s is not a character device (mode %#o): something created it as a file; remove it", dev, st.Mode)
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Sprintf("%s is not read-write for uid %d: %v", dev, os.Geteuid(), err)
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		return false, fmt.Sprintf("%s does not answer KVM_GET_API_VERSION: %v", dev, err)
	}
	if v != kvmAPIVersion {
		return false, fmt.Sprintf("%s has KVM API version %d, want %d", dev, v, kvmAPIVersion)
	}
	return true, ""
}

// CanRunTinyGuests reports whether this machine's /dev/kvm runs the
// packages' hand-made guests (kvm's real-mode programs, vmm/vmmtest's tiny
// bzImages): any working /dev/kvm, PVM included. why says why not.
func CanRunTinyGuests() (ok bool, why string) {
	k := Probe()
	return k.Usable, k.Why
}

// CanBootStockKernels reports whether stock distribution kernels boot on
// this machine's /dev/kvm: a working /dev/kvm with hardware virtualization,
// not PVM. why lists every reason why not.
func CanBootStockKernels() (ok bool, why string) {
	k := Probe()
	var reasons []string
	if !k.HWVirt {
		reasons = append(reasons, k.HWVirtWhy)
	}
	if k.PVM {
		reasons = append(reasons, DevicePath+" is PVM (module kvm_pvm), which cannot boot stock kernels")
	}
	if !k.Usable {
		reasons = append(reasons, k.Why)
	}
	return len(reasons) == 0, strings.Join(reasons, "; ")
}

// requireWords is FLINT_TEST_REQUIRE's words; CI adds "all".
func requireWords() map[string]bool {
	w := map[string]bool{}
	for _, f := range strings.Split(os.Getenv("FLINT_TEST_REQUIRE"), ",") {
		if f = strings.TrimSpace(strings.ToLower(f)); f != "" {
			w[f] = true
		}
	}
	if ci := strings.ToLower(os.Getenv("CI")); ci != "" && ci != "0" && ci != "false" {
		w["all"] = true
	}
	return w
}

// RequireAll reports whether the run requires every test to run
// (FLINT_TEST_REQUIRE=all, as `make test` sets, or CI): a test that cannot
// run here fails with the reason instead of skipping.
func RequireAll() bool { return requireWords()["all"] }

// requireKVM reports whether a KVM package test must fail without a
// working /dev/kvm (FLINT_TEST_REQUIRE=kvm).
func requireKVM() bool { return requireWords()["kvm"] }

// SkipOrFail ends the test with msg: a failure when RequireAll, else a skip.
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if RequireAll() {
		t.Fatal(msg + " (FLINT_TEST_REQUIRE=all or CI: a test that cannot run is a failure)")
	}
	t.Skip(msg)
}

// LogPath logs the marker line that says which path the test took.
func LogPath(t testing.TB, path, detail string) {
	t.Helper()
	if detail != "" {
		t.Log(PathMarker + path + " (" + detail + ")")
		return
	}
	t.Log(PathMarker + path)
}

// NestedTest names the end-to-end test that runs the KVM package tests in
// the nested test host when this machine has no working /dev/kvm.
const NestedTest = "TestKVMPackagesNested (tests/kvmpkg_test.go)"

// RequireTinyGuests lets a KVM package test run only where CanRunTinyGuests
// and logs the path it takes. Without a working /dev/kvm it skips with the
// reason, and with FLINT_TEST_REQUIRE=kvm it fails; under FLINT_TEST_REQUIRE=all
// it still skips, naming NestedTest, which runs it in the nested host.
func RequireTinyGuests(t testing.TB) {
	t.Helper()
	k := Probe()
	if k.Usable {
		LogPath(t, PathDirect, "KVM: "+k.Kind())
		return
	}
	msg := "needs KVM: " + k.Why
	switch {
	case requireKVM():
		t.Fatal(msg + " (FLINT_TEST_REQUIRE=kvm: this run must have KVM)")
	case RequireAll():
		t.Skip(msg + "; " + NestedTest + " runs it in the nested test host")
	}
	t.Skip(msg)
}

// RunSelf runs this test binary again as a child that runs only the
// test named test (an exact match), with env added to its environment
// (KEY=VALUE: the child tells itself apart by it), and returns how it
// ended and its combined output. Tests that must run something a process
// cannot undo (a seccomp filter, a namespace) do it in such a child.
// The child's temporary directory is one of t's: a child that ends with
// os.Exit never runs its own cleanups, and t's removes what it left.
func RunSelf(t testing.TB, test, env string) (syscall.WaitStatus, []byte) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env, "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		t.Fatalf("%s: no wait status: %v", test, err)
	}
	return ws, out
}
