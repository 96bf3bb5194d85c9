package fusetest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
	"golang.org/x/sys/unix"
)

const fileSize = 1 << 20

// sink keeps the load that faults from being optimized away.
var sink byte

// mounted reports whether dir is a mount point in /proc/self/mounts.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && fields[1] == dir {
			return true
		}
	}
	return false
}

// exited reports whether f's server goroutine has returned.
func exited(f *FS) bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// checkGone checks, after the sub-test that mounted f has ended, that its
// cleanup unmounted it and its server goroutine returned.
func checkGone(t *testing.T, f *FS) {
	t.Helper()
	if f == nil {
		// Mount skipped (or failed) the sub-test, which says why.
		t.Skip("the sub-test did not mount")
	}
	if mounted(t, f.dir) {
		t.Errorf("%s is still mounted after the test's cleanup", f.dir)
	}
	if !exited(f) {
		t.Error("the server goroutine is still running after the test's cleanup")
	}
}

func TestMount(t *testing.T) {
	var f *FS
	t.Run("serve", func(t *testing.T) {
		f = Mount(t, fileSize)
		if !mounted(t, f.dir) {
			t.Fatalf("%s not in /proc/self/mounts", f.dir)
		}
		if got, want := f.Path(), filepath.Join(f.dir, "file"); got != want {
			t.Errorf("Path() = %q, want %q", got, want)
		}
		fd, err := unix.Open(f.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open %s: %v", f.Path(), err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatalf("fstat: %v", err)
		}
		if st.Mode != unix.S_IFREG|0o644 || st.Size != fileSize {
			t.Errorf("fstat: mode %#o size %d, want %#o size %d", st.Mode, st.Size, unix.S_IFREG|0o644, fileSize)
		}
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err != nil {
			t.Fatalf("fstatfs: %v", err)
		}
		if sfs.Type != FUSESuperMagic {
			t.Errorf("fstatfs: f_type %#x, want FUSE_SUPER_MAGIC %#x", sfs.Type, FUSESuperMagic)
		}
		buf := bytes.Repeat([]byte{0xa5}, 4096)
		if n, err := unix.Pread(fd, buf, 8192); err != nil || n != len(buf) {
			t.Fatalf("pread 4 KiB: %d, %v", n, err)
		}
		if !bytes.Equal(buf, make([]byte, len(buf))) {
			t.Error("read returned non-zero bytes")
		}
		if n, err := unix.Pread(fd, buf, fileSize); err != nil || n != 0 {
			t.Errorf("pread at EOF: %d, %v; want 0, nil", n, err)
		}
		var root unix.Stat_t
		if err := unix.Stat(f.dir, &root); err != nil || root.Mode != unix.S_IFDIR|0o755 {
			t.Errorf("stat root: mode %#o, %v; want %#o", root.Mode, err, unix.S_IFDIR|0o755)
		}
		if _, err := os.Stat(filepath.Join(f.dir, "other")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat of a name not served: %v, want ENOENT", err)
		}
	})
	checkGone(t, f)
}

// TestHang: after Hang, a read and a page fault on a mapping of the file
// wait; the test's cleanup (closing /dev/fuse) ends both with an error.
func TestHang(t *testing.T) {
	var f *FS
	fd := -1
	var mem []byte
	readDone := make(chan error, 1)
	faultDone := make(chan error, 1)
	t.Run("hang", func(t *testing.T) {
		f = Mount(t, fileSize)
		var err error
		// Closed and unmapped by the parent, after the cleanup has ended
		// the hung accesses (a close now would send FLUSH, which hangs).
		fd, err = unix.Open(f.Path(), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		mem, err = unix.Mmap(fd, 0, fileSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap: %v", err)
		}
		f.Hang()
		go func() {
			_, err := unix.Pread(fd, make([]byte, 4096), 0)
			readDone <- err
		}()
		go func() {
			// The fault ends in SIGBUS once the connection is aborted.
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() {
				if r := recover(); r != nil {
					faultDone <- errors.New("SIGBUS")
				}
			}()
			sink += mem[4096] // a load: `_ = mem[i]` only checks bounds
			faultDone <- nil
		}()
		select {
		case err := <-readDone:
			t.Errorf("read after Hang returned (%v), want it to wait", err)
			readDone <- err
		case err := <-faultDone:
			t.Errorf("page fault after Hang returned (%v), want it to wait", err)
			faultDone <- err
		case <-time.After(300 * time.Millisecond):
		}
	})
	checkGone(t, f)
	for name, ch := range map[string]chan error{"read": readDone, "page fault": faultDone} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s after Hang succeeded once the connection was aborted, want an error", name)
			} else {
				t.Logf("%s after Hang ended with %v once the cleanup aborted the connection", name, err)
			}
		case <-time.After(10 * time.Second):
			// fd and mem are left as they are: closing fd would send
			// FLUSH to a server that no longer answers, and wait too.
			t.Fatalf("%s after Hang still waits 10s after the cleanup aborted the connection", name)
		}
	}
	if mem != nil {
		unix.Munmap(mem)
	}
	if fd >= 0 {
		unix.Close(fd)
	}
}

const failChildEnv = "FLINT_FUSETEST_FAIL_CHILD"

// TestFailMidway: a test that fails while its file is open and a read of
// it hangs still ends, and its cleanup leaves no mount behind. The test
// runs itself as a child (testenv.RunSelf) that does exactly that.
func TestFailMidway(t *testing.T) {
	if os.Getenv(failChildEnv) != "" {
		f := Mount(t, fileSize)
		fd, err := unix.Open(f.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		f.Hang()
		go unix.Pread(fd, make([]byte, 4096), 0)
		time.Sleep(100 * time.Millisecond)
		t.Logf("mounted at %q", f.dir)
		t.Fatal("failing midway on purpose")
	}
	ws, out := testenv.RunSelf(t, "TestFailMidway", failChildEnv+"=1")
	if ws.Exited() && ws.ExitStatus() == 0 {
		// The child fails whenever it mounts: it passed by skipping.
		testenv.SkipOrFail(t, "the child could not mount FUSE (it skipped)")
	}
	if !ws.Exited() || ws.ExitStatus() != 1 || !bytes.Contains(out, []byte("failing midway on purpose")) {
		t.Fatalf("child ended with %v, want exit 1 after failing on purpose; output:\n%s", ws, out)
	}
	_, rest, ok := strings.Cut(string(out), "mounted at \"")
	dir, _, ok2 := strings.Cut(rest, "\"")
	if !ok || !ok2 || dir == "" {
		t.Fatalf("child did not say where it mounted; output:\n%s", out)
	}
	if mounted(t, dir) {
		unix.Unmount(dir, unix.MNT_DETACH)
		t.Fatalf("child's mount %s is still in /proc/self/mounts after it failed", dir)
	}
}

// TestHangClose: closing the file after Hang does not wait (FLUSH and
// RELEASE are still answered), so a test's deferred Close cannot hang
// its binary; fstatfs, like the other requests, still waits.
func TestHangClose(t *testing.T) {
	f := Mount(t, fileSize)
	fd, err := unix.Open(f.Path(), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	f.Hang()
	closed, statfs := make(chan error, 1), make(chan error, 1)
	go func() { closed <- unix.Close(fd) }()
	go func() {
		var st unix.Statfs_t
		statfs <- unix.Statfs(f.dir, &st)
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close after Hang: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close after Hang still waits after 5s") // the cleanup's abort ends it
	}
	select {
	case err := <-statfs:
		t.Errorf("statfs after Hang returned (%v), want it to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestServerOutlivesMountRace: a poll of /dev/fuse made before mount(2)
// (POLLERR: not connected yet) whose result is looked at only after the
// mount does not end the server. The server once read whether it was
// mounted after the poll, took that POLLERR for a lost connection and
// returned, leaving a mount nobody answers (the first open hung a unit
// run for 10 minutes). afterPoll holds such a poll until mount returned.
func TestServerOutlivesMountRace(t *testing.T) {
	var held atomic.Bool
	afterPoll = func(f *FS, revents int16) {
		if revents&unix.POLLIN != 0 || f.mounted.Load() || !held.CompareAndSwap(false, true) {
			return
		}
		for end := time.Now().Add(5 * time.Second); !f.mounted.Load() && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
	t.Cleanup(func() { afterPoll = func(*FS, int16) {} })
	var f *FS
	// The server polls from before mount(2); should the kernel connect
	// /dev/fuse first, there is no such poll to hold: mount again.
	for try := 0; try < 50 && !held.Load(); try++ {
		f = Mount(t, fileSize)
		time.Sleep(20 * time.Millisecond) // the held poll's result is looked at
	}
	if !held.Load() {
		t.Fatal("in 50 mounts the server never polled before mount(2)")
	}
	if exited(f) {
		t.Fatal("the server returned after a poll made before the mount")
	}
	fd, err := unix.Open(f.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	unix.Close(fd)
}
