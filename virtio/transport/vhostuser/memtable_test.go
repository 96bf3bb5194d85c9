package vhostuser

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/fusetest"
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
