package vhostuser

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/fusetest"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestMemTableRefusesFUSE: a memory region backed by a file on a real
// FUSE mount is refused before it is mapped: a page fault there waits
// for the FUSE server, which may be the frontend itself and need never
// answer, and a stuck fault holds the backend's mmap lock. A regular
// file on a local file system of the same size is mapped.
func TestMemTableRefusesFUSE(t *testing.T) {
	const size = 1 << 20
	fs := fusetest.Mount(t, size)
	f, err := os.OpenFile(fs.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	descs := []memRegionDesc{{GuestAddr: 0, Size: size, UserAddr: 0x7000_0000}}
	tab, err := mapMemTable(descs, []int{int(f.Fd())})
	if err == nil {
		tab.close()
		t.Fatal("a region on FUSE was mapped")
	}
	if !strings.Contains(err.Error(), "on FUSE") {
		t.Fatalf("error %q does not say the file is on FUSE", err)
	}

	local, err := os.Create(filepath.Join(t.TempDir(), "ram"))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if err := unix.Ftruncate(int(local.Fd()), size); err != nil {
		t.Fatal(err)
	}
	tab, err = mapMemTable(descs, []int{int(local.Fd())})
	if err != nil {
		t.Fatalf("a local file: %v", err)
	}
	tab.close()
}

// TestWaitingFS names the file systems refused and lets the others by.
func TestWaitingFS(t *testing.T) {
	for magic, want := range map[int64]string{
		unix.FUSE_SUPER_MAGIC: "FUSE", unix.NFS_SUPER_MAGIC: "NFS", unix.CIFS_SUPER_MAGIC: "SMB",
		unix.SMB2_SUPER_MAGIC: "SMB", unix.V9FS_MAGIC: "9p", unix.CEPH_SUPER_MAGIC: "Ceph",
		unix.TMPFS_MAGIC: "", unix.HUGETLBFS_MAGIC: "", unix.EXT4_SUPER_MAGIC: "",
	} {
		if got := waitingFS(magic); got != want {
			t.Errorf("waitingFS(%#x) = %q, want %q", magic, got, want)
		}
	}
}

// TestMemTableHungFUSEUnlocked: a SET_MEM_TABLE whose fd is on a FUSE
// server that stopped answering waits in fstatfs without the session's
// lock, so a debug dump or a device fault, which take it, are not held
// up; the request fails once the server's connection is aborted (the
// fixture's cleanup).
func TestMemTableHungFUSEUnlocked(t *testing.T) {
	const size = 1 << 20
	s, err := newSession(newTestDevice(t), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	started := false
	// Registered before the mount, so it runs after the fixture's
	// cleanup has aborted the connection, which ends the request.
	t.Cleanup(func() {
		if started {
			select {
			case err := <-done:
				if err == nil {
					t.Error("SET_MEM_TABLE on a hung FUSE file succeeded")
				}
			case <-time.After(10 * time.Second):
				t.Error("SET_MEM_TABLE still waits after the FUSE connection was aborted")
			}
		}
		s.end()
	})
	fs := fusetest.Mount(t, size)
	f, err := os.OpenFile(fs.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	fs.Hang()
	p := vut.MemTable(1, vut.Region{Size: size, UserAddr: 0x7000_0000})
	msg := &message{hdr: header{Request: ReqSetMemTable, Flags: FlagVersion, Size: uint32(len(p))}, payload: p, fds: []int{fd}}
	started = true
	go func() { done <- s.handle(msg) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		done <- err
		t.Fatalf("SET_MEM_TABLE on a hung FUSE file returned at once: %v", err)
	default:
	}
	if !s.mu.TryLock() {
		t.Fatal("the session's lock is held while SET_MEM_TABLE waits for a hung FUSE server")
	}
	s.mu.Unlock()
}
