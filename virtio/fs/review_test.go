package fs

// Attacks found in review: requests a hostile guest may send that the
// device once got wrong.

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCreateOverSpecialFile: CREATE of a name that already is a FIFO, a
// device node or a socket never opens it on the host. A FIFO without a
// writer would block the device (and every request after it) for good;
// a device node would give the guest the host's device.
func TestCreateOverSpecialFile(t *testing.T) {
	root := t.TempDir()
	fifo := filepath.Join(root, "fifo")
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	// /dev/null's numbers: harmless if it were opened, but it must not be.
	nodes := []string{"fifo"}
	if err := unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err == nil {
		nodes = append(nodes, "null")
	} else {
		t.Logf("no device node: %v", err)
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	if err := unix.Bind(sock, &unix.SockaddrUnix{Name: filepath.Join(root, "sock")}); err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, "sock")
	g := newGuest(t, Config{Root: root})
	// Should the device block in open(2), a writer lets it go before
	// Close waits for it (cleanups run last-registered first).
	t.Cleanup(func() {
		if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			unix.Close(fd)
		}
	})
	before := g.dev.OpenFiles()
	for _, name := range nodes {
		for _, flags := range []uint32{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR | unix.O_TRUNC} {
			if _, _, e := g.create(rootID, name, flags, 0o644); e != int(unix.ENXIO) {
				t.Errorf("CREATE over %s flags %#x: errno %d, want ENXIO", name, flags, e)
			}
		}
	}
	if got := g.dev.OpenFiles(); got != before {
		t.Errorf("%d descriptors held after the refused CREATEs, %d before", got, before)
	}
	// A directory and a symlink are refused as before; an existing
	// regular file is opened (and truncated when asked).
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	if _, _, e := g.create(rootID, "dir", unix.O_RDONLY, 0o644); e != int(unix.EISDIR) {
		t.Errorf("CREATE over a directory: errno %d", e)
	}
	os.Symlink("fifo", filepath.Join(root, "link"))
	if _, _, e := g.create(rootID, "link", unix.O_RDONLY, 0o644); e != int(unix.ELOOP) {
		t.Errorf("CREATE over a symlink: errno %d", e)
	}
	writeFile(t, filepath.Join(root, "f"), []byte("old data"))
	e, b := g.call(opCreate, rootID, entryOutLen+openOutLen, le(uint32(unix.O_RDWR|unix.O_TRUNC), uint32(0o600), uint32(0), uint32(0)), cname("f"))
	if e != 0 {
		t.Fatalf("CREATE over a regular file: errno %d", e)
	}
	id, fh := le64(b, 0), le64(b, entryOutLen)
	if a := parseAttr(b[40:]); a.size != 0 {
		t.Errorf("CREATE O_TRUNC answered size %d", a.size)
	}
	if _, e := g.write(fh, 0, []byte("new")); e != 0 {
		t.Fatalf("WRITE: errno %d", e)
	}
	if b := readFile(t, filepath.Join(root, "f")); string(b) != "new" {
		t.Fatalf("file holds %q", b)
	}
	if id != g.mustLookup(rootID, "f") {
		t.Fatal("CREATE over a regular file answered another nodeid than LOOKUP")
	}
	if _, _, e := g.create(rootID, "f", unix.O_RDWR|unix.O_EXCL, 0o600); e != int(unix.EEXIST) {
		t.Errorf("CREATE O_EXCL over a regular file: errno %d", e)
	}
}

// TestCreateKeepsExistingMode: CREATE of an existing file opens it and
// leaves its mode alone, as open(2) with O_CREAT does.
func TestCreateKeepsExistingMode(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), []byte("x"))
	os.Chmod(g.path("f"), 0o640)
	if _, _, e := g.create(rootID, "f", unix.O_RDONLY, 0o777); e != 0 {
		t.Fatalf("CREATE: errno %d", e)
	}
	if fi, err := os.Stat(g.path("f")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode after CREATE of an existing file: %v %v", fi.Mode(), err)
	}
}

// TestFileHandleOfAnotherNode: SETATTR's and GETATTR's fh must be a handle
// of the nodeid the request names; another file's handle is ignored (the
// node itself is truncated or statted), never used in its place.
func TestFileHandleOfAnotherNode(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("a"), []byte("aaaa"))
	writeFile(t, g.path("b"), []byte("bbbbbbbb"))
	a, b := g.mustLookup(rootID, "a"), g.mustLookup(rootID, "b")
	fhA, e := g.open(a, unix.O_RDWR, false)
	if e != 0 {
		t.Fatalf("OPEN: errno %d", e)
	}
	e, ans := g.call(opGetattr, b, attrOutLen, le(uint32(getattrFH), uint32(0), fhA))
	if e != 0 || parseAttr(ans[16:]).size != 8 {
		t.Errorf("GETATTR of b with a's fh: errno %d, %+v", e, parseAttr(ans[16:]))
	}
	in := setattrIn(fattrSize|fattrFH, 1)
	put64(in, 8, fhA)
	if e, _ := g.call(opSetattr, b, attrOutLen, in); e != 0 {
		t.Fatalf("SETATTR: errno %d", e)
	}
	if got := readFile(t, g.path("a")); string(got) != "aaaa" {
		t.Errorf("SETATTR of b with a's fh truncated a: %q", got)
	}
	if got := readFile(t, g.path("b")); string(got) != "b" {
		t.Errorf("b holds %q after SETATTR size 1", got)
	}
}

// TestNoRoomNoChange: a request whose chain has no room for its answer is
// refused (EIO) before it changes anything: no file made, no lookup
// counted that the guest would never learn of and so never forget.
func TestNoRoomNoChange(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), []byte("data"))
	f := g.mustLookup(rootID, "f")
	before := g.dev.OpenFiles()
	for _, c := range []struct {
		op    uint32
		node  uint64
		room  uint32
		args  [][]byte
		check string // a host path that must not exist afterwards
	}{
		{opLookup, rootID, entryOutLen - 1, [][]byte{cname("f")}, ""},
		{opCreate, rootID, entryOutLen, [][]byte{le(uint32(unix.O_RDWR), uint32(0o644), uint32(0), uint32(0)), cname("c")}, "c"},
		{opMkdir, rootID, 8, [][]byte{le(uint32(0o755), uint32(0)), cname("m")}, "m"},
		{opMknod, rootID, 0, [][]byte{le(uint32(unix.S_IFREG|0o644), uint32(0), uint32(0), uint32(0)), cname("n")}, "n"},
		{opSymlink, rootID, 0, [][]byte{cname("s"), cname("f")}, "s"},
		{opLink, rootID, 0, [][]byte{le(f), cname("l")}, "l"},
		{opOpen, f, 8, [][]byte{le(uint32(unix.O_RDWR|unix.O_TRUNC), uint32(0))}, ""},
		{opSetattr, f, 0, [][]byte{setattrIn(fattrSize, 0)}, ""},
	} {
		if e, _ := g.call(c.op, c.node, c.room, c.args...); e != int(unix.EIO) {
			t.Errorf("opcode %d with %d bytes of room: errno %d, want EIO", c.op, c.room, e)
		}
		if _, err := os.Lstat(g.path(c.check)); c.check != "" && err == nil {
			t.Errorf("opcode %d without room made %s", c.op, c.check)
		}
	}
	if got := g.dev.OpenFiles(); got != before {
		t.Errorf("%d descriptors held, %d before", got, before)
	}
	if got := readFile(t, g.path("f")); string(got) != "data" {
		t.Errorf("f holds %q", got)
	}
}

// TestFullRefusesBeforeMaking: at MaxOpenFiles, MKDIR, MKNOD and SYMLINK
// answer ENFILE without making the entry (which the guest, told the
// request failed, would not know exists).
func TestFullRefusesBeforeMaking(t *testing.T) {
	g := newGuest(t, Config{MaxOpenFiles: 1})
	writeFile(t, g.path("f"), nil)
	g.mustLookup(rootID, "f")
	for _, c := range []struct {
		op   uint32
		args [][]byte
	}{
		{opMkdir, [][]byte{le(uint32(0o755), uint32(0)), cname("new")}},
		{opMknod, [][]byte{le(uint32(unix.S_IFREG|0o644), uint32(0), uint32(0), uint32(0)), cname("new")}},
		{opSymlink, [][]byte{cname("new"), cname("f")}},
	} {
		if e, _ := g.call(c.op, rootID, entryOutLen, c.args...); e != int(unix.ENFILE) {
			t.Errorf("opcode %d at the limit: errno %d", c.op, e)
		}
		if _, err := os.Lstat(g.path("new")); err == nil {
			t.Errorf("opcode %d at the limit made the entry", c.op)
			os.Remove(g.path("new"))
		}
	}
}

// TestNamespaceFileNotServed: a namespace file bind-mounted into the share
// (what `ip netns add` leaves in /run/netns, under a share of "/") is a
// pseudo file system's mount point like /proc: LOOKUP answers EACCES, so
// the guest never makes the device hold a namespace open. The mount is
// made in a mount namespace of the test's own thread (locked, never
// unlocked: the thread ends with the test), which the synchronous device
// serves on.
func TestNamespaceFileNotServed(t *testing.T) {
	privateMountNamespace(t)
	root := t.TempDir()
	ns := filepath.Join(root, "netns")
	writeFile(t, ns, nil)
	if err := unix.Mount("/proc/self/ns/net", ns, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(ns, unix.MNT_DETACH) })
	g := newSyncGuest(t, Config{Root: root, ReadOnly: true})
	if _, _, e := g.lookup(rootID, "netns"); e != int(unix.EACCES) {
		t.Fatalf("LOOKUP of a namespace file: errno %d, want EACCES", e)
	}
	if g.dev.OpenFiles() != 0 {
		t.Fatalf("%d descriptors held", g.dev.OpenFiles())
	}
}

// TestHostStateMountsNotServed: mounts of the host's message queues
// (mqueue) and huge pages (hugetlbfs) under the share are refused like
// /proc: LOOKUP answers EACCES, so a guest can neither unlink the host's
// queues nor reserve its huge pages. The mounts are made in a mount
// namespace of the test's own thread, as in TestNamespaceFileNotServed.
func TestHostStateMountsNotServed(t *testing.T) {
	privateMountNamespace(t)
	root := t.TempDir()
	for _, fs := range []string{"mqueue", "hugetlbfs"} {
		dir := filepath.Join(root, fs)
		os.Mkdir(dir, 0o755)
		if err := unix.Mount("none", dir, fs, 0, ""); err != nil {
			t.Skipf("mount -t %s: %v", fs, err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	os.Mkdir(filepath.Join(root, "plain"), 0o755)
	g := newSyncGuest(t, Config{Root: root})
	for _, fs := range []string{"mqueue", "hugetlbfs"} {
		if _, _, e := g.lookup(rootID, fs); e != int(unix.EACCES) {
			t.Errorf("LOOKUP of a %s mount: errno %d, want EACCES", fs, e)
		}
	}
	if _, _, e := g.lookup(rootID, "plain"); e != 0 {
		t.Fatalf("LOOKUP of a plain directory: errno %d", e)
	}
}

// privateMountNamespace moves the test's thread, locked to it for good
// (the thread ends with the test), into a mount namespace of its own
// with private propagation, so mounts the test makes stay there; the
// synchronous device serves on that thread. It skips where that is not
// allowed.
func privateMountNamespace(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Skipf("no mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Skipf("mount: %v", err)
	}
}

// TestReadOnlyKeepsAtime: READ and READDIR through a read-only share leave
// the host's access times alone (files and directories are opened with
// O_NOATIME), as they leave everything else.
func TestReadOnlyKeepsAtime(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), []byte("data"))
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	writeFile(t, filepath.Join(root, "d", "x"), nil)
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // before mtime: relatime would update it
	for _, name := range []string{"f", "d"} {
		os.Chtimes(filepath.Join(root, name), old, time.Time{})
	}
	g := newGuest(t, Config{Root: root, ReadOnly: true})
	fh, e := g.open(g.mustLookup(rootID, "f"), unix.O_RDONLY, false)
	if e != 0 {
		t.Fatalf("OPEN: errno %d", e)
	}
	if b, e := g.read(fh, 0, 10); e != 0 || string(b) != "data" {
		t.Fatalf("READ: %q errno %d", b, e)
	}
	dfh, e := g.open(g.mustLookup(rootID, "d"), unix.O_RDONLY, true)
	if e != 0 {
		t.Fatalf("OPENDIR: errno %d", e)
	}
	if ents := g.readdir(dfh, false, 4096); len(ents) != 3 {
		t.Fatalf("READDIR: %v", ents)
	}
	for _, name := range []string{"f", "d"} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(root, name), &st); err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(st.Atim.Unix()); !got.Equal(old) {
			t.Errorf("%s: access time %v after reading through a read-only share", name, got)
		}
	}
}

// TestSecurityModuleFSNotServed: selinuxfs and smackfs are refused like
// /proc (no kernel here registers them, so pseudoFS is asked directly),
// and an ordinary file system is not.
func TestSecurityModuleFSNotServed(t *testing.T) {
	for _, magic := range []int64{unix.SELINUX_MAGIC, unix.SMACK_MAGIC} {
		if !pseudoFS(magic) {
			t.Errorf("file system magic %#x is served", magic)
		}
	}
	if pseudoFS(unix.EXT4_SUPER_MAGIC) || pseudoFS(unix.TMPFS_MAGIC) {
		t.Error("ext4 or tmpfs refused")
	}
}
