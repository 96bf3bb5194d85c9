package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv tells the test binary, re-executed by Launch, to play the
// jailed flint: the fake VM step of childMain.
const childEnv = "JAIL_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	if os.Getenv(launcherEnv) != "" {
		os.Exit(launcherMain())
	}
	code := m.Run()
	if noCgo.bin != "" {
		os.RemoveAll(filepath.Dir(noCgo.bin))
	}
	os.Exit(code)
}

// report is what the jailed test child finds about itself.
type report struct {
	Pid                    int
	UID, EUID, GID, EGID   int
	Groups                 []int
	CapEff, CapPrm, CapBnd uint64
	CapInh                 uint64
	NoNewPrivs             int
	NoFile, FSize          uint64
	RootIno                uint64
	Inside                 string // /inside, a file in the jail directory
	Secret                 string // read through the fd opened before the jail
	SecretByPath           string // the error opening the secret's host path
	ProcErr                string // the error opening /proc/self/status
	Marker                 bool   // the marker is still in the environment
	Leaked                 string // a host file read through the launcher's inherited directory fd
	WriteErr               string // the error creating a file in a read-only jail directory
}

// childMain is the fake VM: like flint, it opens its host resource (the
// "secret", standing for a drive image) before entering the jail, then
// reports what it can do from inside.
func childMain() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	dir, ok, err := Child()
	if err != nil || !ok {
		return fail(fmt.Errorf("Child: %v %v", ok, err))
	}
	if os.Getenv("JAIL_TEST_HANG") != "" {
		time.Sleep(time.Hour) // until the test kills it from outside
	}
	if os.Getenv("JAIL_TEST_NOPIVOT") != "" {
		pivotRoot = func(string, string) error { return unix.EINVAL } // as on an initial ramfs
	}
	secretPath := os.Getenv("JAIL_TEST_SECRET")
	secret, err := os.OpenFile(secretPath, os.O_RDWR, 0) // open for writing: counts for FSize
	if err != nil {
		return fail(err)
	}
	var s Spec
	if err := json.Unmarshal([]byte(os.Getenv("JAIL_TEST_SPEC")), &s); err != nil {
		return fail(err)
	}
	if os.Getenv("JAIL_TEST_RO") != "" {
		// The jail directory on a read-only mount (in this child's own
		// mount namespace, private so nothing reaches the host).
		for _, m := range []struct {
			src, fstype string
			flags       uintptr
		}{{"", "", unix.MS_REC | unix.MS_PRIVATE}, {s.Dir, "", unix.MS_BIND}, {"", "", unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY}} {
			target := s.Dir
			if m.flags&unix.MS_PRIVATE != 0 {
				target = "/"
			}
			if err := unix.Mount(m.src, target, m.fstype, m.flags, ""); err != nil {
				return fail(err)
			}
		}
	}
	if os.Getenv(netEnv) != "" {
		if r := netReach(); len(r) != 2 {
			return fail(fmt.Errorf("before the jail, only %v of %s reached", r, os.Getenv(netEnv)))
		}
	}
	if os.Getenv("JAIL_TEST_PDEATH_WINDOW") != "" {
		pdeathWindow = func() {
			fmt.Fprintln(os.Stdout, "window")
			time.Sleep(time.Second) // the test kills the launcher meanwhile
		}
	}
	if err := Enter(s, dir); err != nil {
		return fail(err)
	}
	if os.Getenv("JAIL_TEST_PDEATH") != "" {
		fmt.Fprintln(os.Stdout, "entered")
		time.Sleep(time.Hour) // until the launcher's death ends it
	}
	if os.Getenv(netEnv) != "" {
		fmt.Fprintf(os.Stdout, "reached from the jail: %v\n", netReach())
		return 0
	}
	if os.Getenv("JAIL_TEST_RO") != "" {
		err := os.WriteFile("/written", nil, 0o644)
		fmt.Fprintf(os.Stdout, "write: %v\n", err)
		return 0
	}
	r := report{Pid: os.Getpid(), UID: os.Getuid(), EUID: os.Geteuid(), GID: os.Getgid(), EGID: os.Getegid()}
	r.Groups, _ = os.Getgroups()
	var h unix.CapUserHeader
	h.Version = unix.LINUX_CAPABILITY_VERSION_3
	var d [2]unix.CapUserData
	unix.Capget(&h, &d[0])
	r.CapEff = uint64(d[0].Effective) | uint64(d[1].Effective)<<32
	r.CapPrm = uint64(d[0].Permitted) | uint64(d[1].Permitted)<<32
	r.CapInh = uint64(d[0].Inheritable) | uint64(d[1].Inheritable)<<32
	for c := 0; c < 64; c++ {
		if v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && v == 1 {
			r.CapBnd |= 1 << c
		}
	}
	r.NoNewPrivs, _ = unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	var l unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &l)
	r.NoFile = l.Cur
	unix.Getrlimit(unix.RLIMIT_FSIZE, &l)
	r.FSize = l.Cur
	var st unix.Stat_t
	unix.Stat("/", &st)
	r.RootIno = st.Ino
	if b, err := os.ReadFile("/inside"); err == nil {
		r.Inside = string(b)
	}
	b := make([]byte, 64)
	n, _ := secret.ReadAt(b, 0)
	r.Secret = string(b[:n])
	if _, err := os.Open(secretPath); err != nil {
		r.SecretByPath = err.Error()
	}
	if _, err := os.Open("/proc/self/status"); err != nil {
		r.ProcErr = err.Error()
	}
	_, r.Marker = os.LookupEnv(FDEnv)
	if n, err := strconv.Atoi(os.Getenv("JAIL_TEST_LEAK")); err == nil {
		if fd, err := unix.Openat(n, "public", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			n, _ := unix.Read(fd, b)
			r.Leaked = string(b[:max(n, 0)])
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// TestLaunchAndEnter is the handoff end to end, without KVM: Launch
// re-executes this test binary in new namespaces, which opens a host file
// (a drive image's stand-in), enters the jail and reports: pid 1 of its
// own pid namespace, the jail directory as "/", the given uid and gid, no
// supplementary groups, no capability in any set, no_new_privs, the
// limits, the pre-opened file still readable, and its host path (and
// every other host path, /proc included) unreachable.
func TestLaunchAndEnter(t *testing.T) {
	if os.Geteuid() == 0 && rerunWithoutCgo(t) {
		return // a cgo binary's child drops the bounding set on one thread only
	}
	for _, pivot := range []bool{true, false} {
		t.Run(fmt.Sprintf("pivot_root=%v", pivot), func(t *testing.T) {
			if !pivot {
				// A root pivot_root refuses (the initial ramfs of a
				// diskless host): the MS_MOVE and chroot fallback.
				t.Setenv("JAIL_TEST_NOPIVOT", "1")
			}
			launchAndEnter(t)
		})
	}
}

func launchAndEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, pivot_root, setresuid)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "inside"), []byte("in the jail"), 0o644)
	secretPath := filepath.Join(dir, "secret")
	os.WriteFile(secretPath, []byte("opened before"), 0o600)
	s := Spec{Dir: root, UID: 65534, GID: 65534, NoFile: 512}
	js, _ := json.Marshal(s)
	var rootSt unix.Stat_t
	unix.Stat(root, &rootSt)

	out, err := os.CreateTemp(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1")
	t.Setenv("JAIL_TEST_SECRET", secretPath)
	t.Setenv("JAIL_TEST_SPEC", string(js))
	// A host directory fd the launcher inherited without O_CLOEXEC (from
	// a shell or supervisor) must not cross into the jail: through it,
	// openat reaches the host.
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "public"), []byte("host file"), 0o644)
	leak, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leak)
	t.Setenv("JAIL_TEST_LEAK", strconv.Itoa(leak))
	// A launcher with an inheritable capability (a supervisor's or a
	// container runtime's): the exec would keep it, and the new uid
	// does not take it away. Launch starts the child from this thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := setInheritable(1 << unix.CAP_NET_ADMIN); err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = out // the child's stdout: Launch passes the launcher's
	code, err := Launch(s, []string{"jailtest", "-test.run=^$"})
	os.Stdout = stdout
	if err != nil || code != 0 {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("Launch: code %d err %v\n%s", code, err, b)
	}
	b, _ := os.ReadFile(out.Name())
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("child report %q: %v", b, err)
	}
	t.Logf("%+v", r)
	want := report{Pid: 1, UID: 65534, EUID: 65534, GID: 65534, EGID: 65534, NoNewPrivs: 1, NoFile: 512, FSize: MinFSize,
		RootIno: rootSt.Ino, Inside: "in the jail", Secret: "opened before"}
	got := r
	got.Groups, got.SecretByPath, got.ProcErr = nil, "", ""
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("jailed child:\n got %+v\nwant %+v", got, want)
	}
	if len(r.Groups) != 0 {
		t.Errorf("supplementary groups %v", r.Groups)
	}
	if !strings.Contains(r.SecretByPath, "no such file") || !strings.Contains(r.ProcErr, "no such file") {
		t.Errorf("host paths reachable: secret %q, /proc %q", r.SecretByPath, r.ProcErr)
	}
}

// TestReadOnlyJailStaysReadOnly: a jail directory on a read-only mount
// is read-only inside the jail too (the nosuid,nodev remount keeps the
// mount's flags), though the dropped uid may write the directory.
func TestReadOnlyJailStaysReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	t.Setenv("JAIL_TEST_RO", "1")
	s, out := childSetup(t, 0o777)
	b := launchOK(t, s, out)
	if !strings.Contains(string(b), "read-only file system") {
		t.Fatalf("writing in the read-only jail: %q, want EROFS", b)
	}
}

// childSetup makes an empty jail directory with mode perm and the
// child's stdout file (also its "secret"), and sets the child's
// environment for a jail of uid and gid 65534 there.
func childSetup(t *testing.T, perm os.FileMode) (Spec, *os.File) {
	t.Helper()
	root := t.TempDir()
	os.Chmod(root, perm)
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{Dir: root, UID: 65534, GID: 65534}
	js, _ := json.Marshal(s)
	t.Setenv(childEnv, "1")
	t.Setenv("JAIL_TEST_SECRET", out.Name())
	t.Setenv("JAIL_TEST_SPEC", string(js))
	return s, out
}

// launchOK runs the jailed test child with out as its stdout, and
// returns what it wrote there; the child must exit 0.
func launchOK(t *testing.T, s Spec, out *os.File) []byte {
	t.Helper()
	stdout := os.Stdout
	os.Stdout = out
	code, err := Launch(s, []string{"jailtest", "-test.run=^$"})
	os.Stdout = stdout
	b, _ := os.ReadFile(out.Name())
	if err != nil || code != 0 {
		t.Fatalf("Launch: code %d err %v\n%s", code, err, b)
	}
	return b
}

// TestLaunchExitCodes: the launcher exits as the child did, 128+N when a
// signal N (a seccomp kill is SIGSYS) ended it.
func TestLaunchExitCodes(t *testing.T) {
	if code, err := exitCode(nil, errors.New("x")); err == nil || code != 0 {
		t.Fatal("no error without a process state")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	os.Chmod(root, 0o755)
	t.Setenv(childEnv, "1")
	t.Setenv("JAIL_TEST_SECRET", "/nonexistent")
	code, err := Launch(Spec{Dir: root, UID: 1, GID: 1}, []string{"jailtest", "-test.run=^$"})
	if err != nil || code != 1 {
		t.Fatalf("child failing with 1: code %d err %v", code, err)
	}
	// A child killed by a signal (as the seccomp filter kills flint):
	// the test kills the hanging child from outside its namespace.
	t.Setenv("JAIL_TEST_HANG", "1")
	go func() {
		for i := 0; i < 500; i++ {
			time.Sleep(10 * time.Millisecond)
			tasks, _ := filepath.Glob("/proc/self/task/*/children")
			var all string
			for _, f := range tasks {
				b, _ := os.ReadFile(f)
				all += " " + string(b)
			}
			for _, f := range strings.Fields(all) {
				var pid int
				fmt.Sscan(f, &pid)
				syscall.Kill(pid, syscall.SIGKILL)
				return
			}
		}
	}()
	code, err = Launch(Spec{Dir: root, UID: 1, GID: 1}, []string{"jailtest", "-test.run=^$"})
	if err != nil || code != 128+int(syscall.SIGKILL) {
		t.Fatalf("child killed by SIGKILL: code %d err %v", code, err)
	}
}

// TestChildRefusesAHandSetMarker: the marker outside a jail launch (not
// pid 1) is an error, not a half jail.
func TestChildRefusesAHandSetMarker(t *testing.T) {
	t.Setenv(FDEnv, "3")
	if _, ok, err := Child(); !ok || err == nil || !strings.Contains(err.Error(), "not pid 1") {
		t.Fatalf("Child: %v %v", ok, err)
	}
	if _, ok := os.LookupEnv(FDEnv); ok {
		t.Fatal("marker left in the environment")
	}
	t.Setenv(FDEnv, "7")
	if _, ok, err := Child(); !ok || err == nil {
		t.Fatalf("Child with fd 7: %v %v", ok, err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct {
		s    Spec
		want string
	}{
		{Spec{Dir: dir, UID: 1000, GID: 1000}, ""},
		{Spec{Dir: "", UID: 1, GID: 1}, "empty path"},
		{Spec{Dir: filepath.Join(dir, "missing"), UID: 1, GID: 1}, "no such file"},
		{Spec{Dir: file, UID: 1, GID: 1}, "not a directory"},
		{Spec{Dir: dir, UID: 0, GID: 1}, "uid 0"},
		{Spec{Dir: dir, UID: 1, GID: 0}, "gid 0"},
		{Spec{Dir: dir, UID: -1, GID: 1}, "out of range"},
		// The host's root, by any name: a jail that confines nothing.
		{Spec{Dir: "/", UID: 1, GID: 1}, "the host's root"},
		{Spec{Dir: "/.", UID: 1, GID: 1}, "the host's root"},
	} {
		err := tc.s.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in  string
		ok  bool
		out int
	}{{"1000", true, 1000}, {"0", true, 0}, {"nobody", false, 0}, {"-1", false, 0}, {"4294967295", false, 0}, {"4294967294", true, 4294967294}} {
		v, err := ParseID("uid", tc.in)
		if (err == nil) != tc.ok || v != tc.out {
			t.Errorf("ParseID(%q) = %d, %v", tc.in, v, err)
		}
	}
	// Too large is said so, not called "not a number".
	for _, in := range []string{"99999999999", "4294967295"} {
		if _, err := ParseID("uid", in); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("ParseID(%q): %v, want out of range", in, err)
		}
	}
}

// setInheritable sets the calling thread's inheritable capabilities.
func setInheritable(caps uint64) error {
	h := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&h, &d[0]); err != nil {
		return err
	}
	d[0].Inheritable, d[1].Inheritable = uint32(caps), uint32(caps>>32)
	return unix.Capset(&h, &d[0])
}
