package fs

// Requests a hostile (or merely ordinary) guest sends, checked against
// the kernel's own layouts and against the host outside the share.

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelSetattr lays out fuse_setattr_in as Linux's fuse_do_setattr
// fills it (include/uapi/linux/fuse.h): valid, padding, fh, size,
// lock_owner, atime, mtime, ctime, their three nanoseconds, mode, unused4,
// uid, gid, unused5. Fields the kernel does not set are zero, except
// lock_owner, which it sets with every size change (FATTR_LOCKOWNER).
func kernelSetattr(valid uint32, fh, size uint64, mode, uid, gid uint32) []byte {
	b := make([]byte, 88)
	put32(b, 0, valid)
	put64(b, 8, fh)
	put64(b, 16, size)
	if valid&fattrSize != 0 {
		put32(b, 0, valid|1<<9)        // FATTR_LOCKOWNER
		put64(b, 24, 0x1234_5678_9abc) // a hash of the caller's files_struct
	}
	put32(b, 68, mode)
	put32(b, 76, uid)
	put32(b, 80, gid)
	return b
}

// TestSetattrKernelLayout: chmod, chown, truncate and ftruncate from a
// Linux guest change the host file as asked. The device once read
// fuse_setattr_in with fuse_attr's offsets: a guest's ftruncate(fd, 3)
// truncated to its lock owner (a huge sparse file, the data kept),
// chmod 640 set mode 0, and chown 1000:1000 gave the file to root.
func TestSetattrKernelLayout(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), []byte("0123456789"))
	f := g.mustLookup(rootID, "f")
	size := func() int64 {
		fi, err := os.Stat(g.path("f"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	setattr := func(in []byte) (attr, int) {
		e, b := g.call(opSetattr, f, attrOutLen, in)
		if e != 0 {
			return attr{}, e
		}
		return parseAttr(b[16:]), 0
	}
	// truncate(2): no handle.
	if a, e := setattr(kernelSetattr(fattrSize, 0, 7, 0, 0, 0)); e != 0 || a.size != 7 {
		t.Errorf("SETATTR size 7: errno %d %+v", e, a)
	}
	if got := size(); got != 7 {
		t.Errorf("host size %d after truncate to 7", got)
	}
	// ftruncate(2): through the handle.
	fh, e := g.open(f, unix.O_RDWR, false)
	if e != 0 {
		t.Fatalf("OPEN: errno %d", e)
	}
	if _, e := setattr(kernelSetattr(fattrSize|fattrFH, fh, 3, 0, 0, 0)); e != 0 {
		t.Errorf("SETATTR size 3 with fh: errno %d", e)
	}
	if got := size(); got != 3 {
		t.Errorf("host size %d after ftruncate to 3", got)
	}
	// chmod 640.
	if a, e := setattr(kernelSetattr(fattrMode, 0, 0, unix.S_IFREG|0o640, 0, 0)); e != 0 || a.mode != unix.S_IFREG|0o640 {
		t.Errorf("SETATTR mode 640: errno %d %+v", e, a)
	}
	if got := modeOf(t, g.path("f")); got != 0o640 {
		t.Errorf("host mode %#o after chmod 640", got)
	}
	// chown 1000:1001 (the VMM may give files away only as root).
	if os.Geteuid() != 0 {
		return
	}
	if _, e := setattr(kernelSetattr(fattrUID|fattrGID, 0, 0, 0, 1000, 1001)); e != 0 {
		t.Fatalf("SETATTR uid/gid: errno %d", e)
	}
	var st unix.Stat_t
	if err := unix.Stat(g.path("f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Gid != 1001 {
		t.Fatalf("host owner %d:%d after chown 1000:1001", st.Uid, st.Gid)
	}
}
