package fs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
)

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	writeFile(t, file, nil)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Tag: "", Root: dir}, "tag"},
		{Config{Tag: strings.Repeat("x", 37), Root: dir}, "tag"},
		{Config{Tag: "t", Root: file}, file + ": not a directory"},
		{Config{Tag: "t", Root: filepath.Join(dir, "missing")}, filepath.Join(dir, "missing")},
		{Config{Tag: "t", Root: "/proc"}, "pseudo file system"},
		{Config{Tag: "t", Root: dir, MaxOpenFiles: -1}, "MaxOpenFiles"},
	} {
		d, err := New(c.cfg)
		if err == nil {
			d.Close()
			t.Errorf("New(%+v) succeeded", c.cfg)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want it to name %q", c.cfg, err, c.want)
		}
	}
}

func TestConfigSpace(t *testing.T) {
	tag := strings.Repeat("t", TagLen) // all 36 bytes, no NUL
	d, err := New(Config{Tag: tag, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Type() != virtio.DeviceFS || d.ConfigSize() != 40 || !slices.Equal(d.QueueMaxSizes(), []uint16{hiprioSize, QueueSize}) {
		t.Fatalf("type %d, config size %d, queues %v", d.Type(), d.ConfigSize(), d.QueueMaxSizes())
	}
	p := make([]byte, 44)
	d.ReadConfig(0, p)
	if string(p[:TagLen]) != tag || le32(p, TagLen) != 1 || le32(p, 40) != 0 {
		t.Fatalf("config space %q", p)
	}
	d.ReadConfig(36, p[:4])
	if le32(p, 0) != 1 {
		t.Fatalf("num_request_queues at 36: %x", p[:4])
	}
	if d.Tag() != tag {
		t.Fatalf("Tag() %q", d.Tag())
	}
}

func TestInit(t *testing.T) {
	g := newSyncGuest(t, Config{})
	// INIT was answered; a second one starts a new session.
	out := g.must(g.call(opInit, 0, initOutLen, le(uint32(7), uint32(36), uint32(0), uint32(initWanted|1<<1))))
	if le32(out, 0) != 7 || le32(out, 4) != protoMinor || le32(out, 12) != initWanted || le32(out, 20) != MaxWrite || le16(out, 28) != MaxPages {
		t.Fatalf("INIT answer %x", out)
	}
	// An older kernel gets its own minor.
	out = g.must(g.call(opInit, 0, initOutLen, le(uint32(7), uint32(27), uint32(0), uint32(0))))
	if le32(out, 4) != 27 {
		t.Fatalf("minor %d, want 27", le32(out, 4))
	}
	if e, _ := g.call(opInit, 0, initOutLen, le(uint32(7), uint32(12), uint32(0), uint32(0))); e != int(unix.EPROTO) {
		t.Fatalf("minor 12: errno %d", e)
	}
	// A newer major is answered with 7 alone.
	if out = g.must(g.call(opInit, 0, initOutLen, le(uint32(8), uint32(0), uint32(0), uint32(0)))); len(out) != 8 || le32(out, 0) != 7 {
		t.Fatalf("major 8: %x", out)
	}
	// After DESTROY nothing but INIT is served.
	g.must(g.call(opDestroy, 0, 0))
	if e, _ := g.call(opGetattr, rootID, attrOutLen, make([]byte, 16)); e != int(unix.EIO) {
		t.Fatalf("GETATTR after DESTROY: errno %d", e)
	}
}

func TestLookup(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("a"), []byte("hello"))
	if err := os.Link(g.path("a"), g.path("hard")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(g.path("d"), 0o755)
	id, a, e := g.lookup(rootID, "a")
	if e != 0 || id <= rootID || a.size != 5 || a.mode != unix.S_IFREG|0o644 || a.nlink != 2 {
		t.Fatalf("LOOKUP a: %d %+v %d", id, a, e)
	}
	var st unix.Stat_t
	unix.Stat(g.path("a"), &st)
	if a.ino != st.Ino {
		t.Fatalf("inode %d, host %d", a.ino, st.Ino)
	}
	if id2 := g.mustLookup(rootID, "a"); id2 != id {
		t.Fatalf("second LOOKUP: nodeid %d, want %d", id2, id)
	}
	if hid := g.mustLookup(rootID, "hard"); hid != id {
		t.Fatalf("hard link: nodeid %d, want %d", hid, id)
	}
	if id, _, e := g.lookup(rootID, "missing"); e != 0 || id != 0 {
		t.Fatalf("missing: nodeid %d errno %d, want a negative entry", id, e)
	}
	if _, _, e := g.lookup(id, "x"); e != int(unix.ENOTDIR) {
		t.Fatalf("LOOKUP below a file: errno %d", e)
	}
	if _, _, e := g.lookup(999, "x"); e != int(unix.ESTALE) {
		t.Fatalf("LOOKUP below an unknown nodeid: errno %d", e)
	}
	if a, e := g.getattr(g.mustLookup(rootID, "d")); e != 0 || a.mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("GETATTR d: %+v %d", a, e)
	}
	// Three lookups of a (two names) are released by one FORGET of 3.
	before := g.dev.OpenFiles()
	g.forget(id, 3)
	if got := g.dev.OpenFiles(); got != before-1 {
		t.Fatalf("open files %d after FORGET, want %d", got, before-1)
	}
	if _, e := g.getattr(id); e != int(unix.ESTALE) {
		t.Fatalf("GETATTR of a forgotten nodeid: errno %d", e)
	}
}

// TestNamesRefused: every name the guest sends is one component.
func TestNamesRefused(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "share")
	os.Mkdir(root, 0o755)
	writeFile(t, filepath.Join(outer, "secret"), []byte("no"))
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	g := newGuest(t, Config{Root: root})
	sub := g.mustLookup(rootID, "sub")
	for _, c := range []struct {
		name string
		want unix.Errno
	}{
		{"", unix.EINVAL}, {".", unix.EINVAL}, {"..", unix.EINVAL}, {"../secret", unix.EINVAL},
		{"sub/..", unix.EINVAL}, {"/etc", unix.EINVAL}, {strings.Repeat("n", 256), unix.ENAMETOOLONG},
	} {
		for _, parent := range []uint64{rootID, sub} {
			if _, _, e := g.lookup(parent, c.name); e != int(c.want) {
				t.Errorf("LOOKUP %q: errno %d, want %d", c.name, e, c.want)
			}
			if _, _, e := g.create(parent, c.name, unix.O_RDWR, 0o644); e != int(c.want) {
				t.Errorf("CREATE %q: errno %d, want %d", c.name, e, c.want)
			}
			if e, _ := g.call(opMkdir, parent, entryOutLen, le(uint32(0o755), uint32(0)), cname(c.name)); e != int(c.want) {
				t.Errorf("MKDIR %q: errno %d, want %d", c.name, e, c.want)
			}
			if e, _ := g.call(opUnlink, parent, 0, cname(c.name)); e != int(c.want) {
				t.Errorf("UNLINK %q: errno %d, want %d", c.name, e, c.want)
			}
			if e, _ := g.call(opRename, parent, 0, le(uint64(rootID)), cname("sub"), cname(c.name)); e != int(c.want) {
				t.Errorf("RENAME to %q: errno %d, want %d", c.name, e, c.want)
			}
		}
	}
	// A name without its NUL.
	if e, _ := g.call(opLookup, rootID, entryOutLen, []byte("sub")); e != int(unix.EINVAL) {
		t.Errorf("LOOKUP without NUL: errno %d", e)
	}
	if ents, _ := os.ReadDir(outer); len(ents) != 2 {
		t.Fatalf("the share's parent changed: %v", ents)
	}
	if b := readFile(t, filepath.Join(outer, "secret")); string(b) != "no" {
		t.Fatal("the file outside the share changed")
	}
}

// TestSymlinksNotFollowed: symlinks pointing out of the share (absolute,
// relative, through ..) are answered as symlinks and never followed.
func TestSymlinksNotFollowed(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "share")
	os.Mkdir(root, 0o755)
	writeFile(t, filepath.Join(outer, "secret"), []byte("outside"))
	os.Mkdir(filepath.Join(outer, "odir"), 0o755)
	for name, target := range map[string]string{"abs": filepath.Join(outer, "secret"), "rel": "../secret",
		"absdir": filepath.Join(outer, "odir"), "reldir": "../odir", "root": "/"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	g := newGuest(t, Config{Root: root})
	for _, name := range []string{"abs", "rel", "absdir", "reldir", "root"} {
		id, a, e := g.lookup(rootID, name)
		if e != 0 || a.mode&unix.S_IFMT != unix.S_IFLNK {
			t.Fatalf("LOOKUP %s: %+v errno %d", name, a, e)
		}
		target, _ := os.Readlink(filepath.Join(root, name))
		if e, b := g.call(opReadlink, id, pathMax); e != 0 || string(b) != target {
			t.Errorf("READLINK %s: %q errno %d", name, b, e)
		}
		if _, e := g.open(id, unix.O_RDONLY, false); e != int(unix.ENXIO) {
			t.Errorf("OPEN %s: errno %d", name, e)
		}
		if _, e := g.open(id, unix.O_RDONLY, true); e != int(unix.ENOTDIR) {
			t.Errorf("OPENDIR %s: errno %d", name, e)
		}
		if _, _, e := g.lookup(id, "secret"); e != int(unix.ENOTDIR) {
			t.Errorf("LOOKUP below %s: errno %d", name, e)
		}
		if _, _, e := g.create(id, "new", unix.O_RDWR, 0o644); e != int(unix.ENOTDIR) {
			t.Errorf("CREATE below %s: errno %d", name, e)
		}
		// SETATTR size on the symlink must not truncate its target.
		if e, _ := g.call(opSetattr, id, attrOutLen, setattrIn(fattrSize, 0)); e == 0 {
			t.Errorf("SETATTR size on %s succeeded", name)
		}
	}
	// CREATE over an existing symlink name does not follow it.
	if _, _, e := g.create(rootID, "abs", unix.O_RDWR|unix.O_TRUNC, 0o644); e == 0 {
		t.Error("CREATE through a symlink succeeded")
	}
	// A guest-made symlink pointing out is just stored.
	if e, _ := g.call(opSymlink, rootID, entryOutLen, cname("mine"), cname("/etc/passwd")); e != 0 {
		t.Fatalf("SYMLINK: errno %d", e)
	}
	if got, _ := os.Readlink(filepath.Join(root, "mine")); got != "/etc/passwd" {
		t.Fatalf("host symlink %q", got)
	}
	if b := readFile(t, filepath.Join(outer, "secret")); string(b) != "outside" {
		t.Fatalf("the file outside the share changed: %q", b)
	}
}

// setattrIn encodes fuse_setattr_in with valid and size (at the kernel's
// offset 16, written out here rather than taken from the code under test;
// mode is at 68).
func setattrIn(valid uint32, size uint64) []byte {
	b := make([]byte, setattrInLen)
	put32(b, 0, valid)
	put64(b, 16, size)
	return b
}

// TestRenamedWhileLookedUp: a nodeid follows its directory through
// renames, and a directory swapped for a symlink is not followed.
func TestRenamedWhileLookedUp(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "share")
	os.MkdirAll(filepath.Join(root, "a", "sub"), 0o755)
	g := newGuest(t, Config{Root: root})
	a := g.mustLookup(rootID, "a")
	sub := g.mustLookup(a, "sub")
	// The guest renames a to b; sub's nodeid still works, below b.
	g.must(g.call(opRename, rootID, 0, le(uint64(rootID)), cname("a"), cname("b")))
	if _, _, e := g.create(sub, "f", unix.O_WRONLY, 0o600); e != 0 {
		t.Fatalf("CREATE below the renamed directory: errno %d", e)
	}
	if _, err := os.Stat(filepath.Join(root, "b", "sub", "f")); err != nil {
		t.Fatal(err)
	}
	// The host renames b away and puts a symlink to outside in its place:
	// lookups below the old name's symlink are refused, ".." still is.
	os.Rename(filepath.Join(root, "b"), filepath.Join(root, "c"))
	os.Symlink(outer, filepath.Join(root, "b"))
	bl, a2, e := g.lookup(rootID, "b")
	if e != 0 || a2.mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("LOOKUP b: %+v %d", a2, e)
	}
	if _, _, e := g.lookup(bl, "share"); e != int(unix.ENOTDIR) {
		t.Fatalf("LOOKUP below the symlink: errno %d", e)
	}
	if _, _, e := g.lookup(sub, ".."); e != int(unix.EINVAL) {
		t.Fatalf("LOOKUP ..: errno %d", e)
	}
	// The guest cannot rename a nodeid's entry to a directory it does
	// not hold: the target is a nodeid, and names are one component.
	if e, _ := g.call(opRename, rootID, 0, le(uint64(12345)), cname("c"), cname("x")); e != int(unix.ESTALE) {
		t.Fatalf("RENAME into an unknown nodeid: errno %d", e)
	}
}

func TestReadWrite(t *testing.T) {
	g := newGuest(t, Config{})
	data := pattern(3<<20 + 123)
	writeFile(t, g.path("big"), data)
	id := g.mustLookup(rootID, "big")
	fh, e := g.open(id, unix.O_RDONLY, false)
	if e != 0 {
		t.Fatalf("OPEN: errno %d", e)
	}
	for _, c := range []struct {
		off  uint64
		size uint32
	}{{0, 1}, {0, 4096}, {1, 4095}, {4095, 2}, {12345, 128 << 10}, {1 << 20, MaxWrite}, {uint64(len(data)) - 10, 4096},
		{uint64(len(data)), 4096}, {1 << 40, 4096}} {
		got, e := g.read(fh, c.off, c.size)
		if e != 0 {
			t.Fatalf("READ %d@%d: errno %d", c.size, c.off, e)
		}
		lo := min(c.off, uint64(len(data)))
		want := data[lo:min(lo+uint64(c.size), uint64(len(data)))]
		if !bytes.Equal(got, want) {
			t.Fatalf("READ %d@%d: %d bytes, want %d", c.size, c.off, len(got), len(want))
		}
	}
	if _, e := g.read(fh, 1<<63, 10); e != int(unix.EINVAL) {
		t.Fatalf("READ at 2^63: errno %d", e)
	}
	if _, e := g.read(fh+1, 0, 10); e != int(unix.EBADF) {
		t.Fatalf("READ with a bad fh: errno %d", e)
	}
	if _, e := g.write(fh, 0, []byte("x")); e != int(unix.EBADF) {
		t.Fatalf("WRITE to a read-only handle: errno %d", e)
	}
	g.release(fh, false)
	if _, e := g.read(fh, 0, 10); e != int(unix.EBADF) {
		t.Fatalf("READ after RELEASE: errno %d", e)
	}

	// Create, write at offsets, read back; the host sees it.
	nid, wfh, e := g.create(rootID, "new", unix.O_RDWR, 0o640)
	if e != 0 {
		t.Fatalf("CREATE: errno %d", e)
	}
	chunk := pattern(MaxWrite)
	for _, off := range []uint64{0, MaxWrite, 5} {
		if n, e := g.write(wfh, off, chunk); e != 0 || n != MaxWrite {
			t.Fatalf("WRITE at %d: %d errno %d", off, n, e)
		}
	}
	want := append(append(chunk[:5:5], chunk...), chunk[5:]...)
	if got := readFile(t, g.path("new")); !bytes.Equal(got, want) {
		t.Fatalf("host file: %d bytes, want %d", len(got), len(want))
	}
	if got, e := g.read(wfh, 7, 100); e != 0 || !bytes.Equal(got, want[7:107]) {
		t.Fatalf("READ back: errno %d", e)
	}
	if _, e := g.write(wfh, 1<<63-1, []byte("xy")); e != int(unix.EFBIG) {
		t.Fatalf("WRITE past 2^63: errno %d", e)
	}
	st, _ := os.Stat(g.path("new"))
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("created mode %v", st.Mode())
	}
	if a, _ := g.getattr(nid); a.size != uint64(len(want)) {
		t.Fatalf("GETATTR size %d", a.size)
	}
	g.must(g.call(opFsync, 0, 0, le(wfh, uint32(1), uint32(0))))
	g.must(g.call(opFlush, nid, 0, le(wfh, uint32(0), uint32(0), uint64(0))))
	// SETATTR truncates through the handle and without one.
	g.must(g.call(opSetattr, nid, attrOutLen, setattrIn(fattrSize, 10)))
	if st, _ := os.Stat(g.path("new")); st.Size() != 10 {
		t.Fatalf("size after SETATTR %d", st.Size())
	}
	if s := g.dev.Stats(); s.ReadBytes == 0 || s.WriteBytes != 3*MaxWrite {
		t.Fatalf("stats %+v", s)
	}
}

func TestReaddir(t *testing.T) {
	g := newGuest(t, Config{})
	var want []string
	for i := range 300 {
		name := strings.Repeat("f", 1+i%200) + "-" + string(rune('a'+i%26)) + strings.Repeat("0", i%3) + "." + string(rune('A'+i/26))
		writeFile(t, g.path(name), nil)
		want = append(want, name)
	}
	os.Mkdir(g.path("sub"), 0o755)
	want = append(want, ".", "..", "sub")
	slices.Sort(want)
	for _, plus := range []bool{false, true} {
		fh, e := g.open(rootID, unix.O_RDONLY, true)
		if e != 0 {
			t.Fatalf("OPENDIR: errno %d", e)
		}
		ents := g.readdir(fh, plus, 4096)
		var got []string
		for _, de := range ents {
			got = append(got, de.name)
			if de.name == "sub" && de.typ != unix.DT_DIR {
				t.Errorf("sub has type %d", de.typ)
			}
			if plus && de.name != "." && de.name != ".." {
				if id := g.mustLookup(rootID, de.name); id != de.nodeid {
					t.Errorf("%s: READDIRPLUS nodeid %d, LOOKUP %d", de.name, de.nodeid, id)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("plus=%v: %d entries, want %d", plus, len(got), len(want))
		}
		g.release(fh, true)
	}
	if _, e := g.open(g.mustLookup(rootID, "sub"), unix.O_RDONLY, false); e != int(unix.EISDIR) {
		t.Fatalf("OPEN of a directory: errno %d", e)
	}
}

func TestChanges(t *testing.T) {
	g := newGuest(t, Config{})
	dir, a, e := g.lookupEntry(g.call(opMkdir, rootID, entryOutLen, le(uint32(0o750), uint32(0)), cname("d")))
	if e != 0 || a.mode != unix.S_IFDIR|0o750 {
		t.Fatalf("MKDIR: %+v errno %d", a, e)
	}
	if _, a, e = g.lookupEntry(g.call(opMknod, dir, entryOutLen, le(uint32(unix.S_IFIFO|0o600), uint32(0), uint32(0), uint32(0)), cname("fifo"))); e != 0 || a.mode != unix.S_IFIFO|0o600 {
		t.Fatalf("MKNOD fifo: %+v errno %d", a, e)
	}
	if e, _ := g.call(opMknod, dir, entryOutLen, le(uint32(unix.S_IFCHR|0o600), uint32(0x0103), uint32(0), uint32(0)), cname("null")); e != int(unix.EPERM) {
		t.Fatalf("MKNOD chr: errno %d", e)
	}
	f, _, e := g.create(dir, "f", unix.O_WRONLY|unix.O_EXCL, 0o644)
	if e != 0 {
		t.Fatalf("CREATE: errno %d", e)
	}
	if _, _, e := g.create(dir, "f", unix.O_WRONLY|unix.O_EXCL, 0o644); e != int(unix.EEXIST) {
		t.Fatalf("CREATE O_EXCL again: errno %d", e)
	}
	if id, a, e := g.lookupEntry(g.call(opLink, rootID, entryOutLen, le(f), cname("f2"))); e != 0 || id != f || a.nlink != 2 {
		t.Fatalf("LINK: nodeid %d (want %d) %+v errno %d", id, f, a, e)
	}
	if e, _ := g.call(opLink, rootID, entryOutLen, le(dir), cname("d2")); e != int(unix.EPERM) {
		t.Fatalf("LINK of a directory: errno %d", e)
	}
	g.must(g.call(opRename2, dir, 0, le(uint64(rootID), uint32(0), uint32(0)), cname("f"), cname("g")))
	if e, _ := g.call(opRename2, rootID, 0, le(uint64(rootID), uint32(unix.RENAME_NOREPLACE), uint32(0)), cname("f2"), cname("g")); e != int(unix.EEXIST) {
		t.Fatalf("RENAME2 NOREPLACE: errno %d", e)
	}
	if e, _ := g.call(opRename2, rootID, 0, le(dir, uint32(unix.RENAME_WHITEOUT), uint32(0)), cname("f2"), cname("h")); e != int(unix.EINVAL) {
		t.Fatalf("RENAME2 WHITEOUT: errno %d", e)
	}
	g.must(g.call(opUnlink, rootID, 0, cname("f2")))
	g.must(g.call(opUnlink, rootID, 0, cname("g")))
	if e, _ := g.call(opRmdir, rootID, 0, cname("d")); e != int(unix.ENOTEMPTY) {
		t.Fatalf("RMDIR of a full directory: errno %d", e)
	}
	g.must(g.call(opUnlink, dir, 0, cname("fifo")))
	g.must(g.call(opRmdir, rootID, 0, cname("d")))
	if ents, _ := os.ReadDir(g.root); len(ents) != 0 {
		t.Fatalf("share not empty: %v", ents)
	}
	// SETATTR mode and times.
	writeFile(t, g.path("m"), nil)
	m := g.mustLookup(rootID, "m")
	in := setattrIn(fattrMode|fattrMtime, 0)
	put32(in, 68, 0o600)
	put64(in, 40, 1234567)
	g.must(g.call(opSetattr, m, attrOutLen, in))
	st, _ := os.Stat(g.path("m"))
	if st.Mode().Perm() != 0o600 || st.ModTime().Unix() != 1234567 {
		t.Fatalf("after SETATTR: %v %v", st.Mode(), st.ModTime())
	}
	if e, b := g.call(opStatfs, rootID, kstatfsLen); e != 0 || le32(b, 44) == 0 {
		t.Fatalf("STATFS: errno %d %x", e, b)
	}
	if e, _ := g.call(opGetxattr, m, 64, le(uint32(64), uint32(0)), cname("user.x")); e != int(unix.ENOSYS) {
		t.Fatalf("GETXATTR: errno %d", e)
	}
}

// lookupEntry decodes a call answered with fuse_entry_out.
func (g *guest) lookupEntry(e int, b []byte) (uint64, attr, int) {
	g.tb.Helper()
	if e != 0 {
		return 0, attr{}, e
	}
	if len(b) < entryOutLen {
		g.tb.Fatalf("entry answer of %d bytes", len(b))
	}
	return le64(b, 0), parseAttr(b[40:]), 0
}

func TestReadOnly(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), []byte("keep"))
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	g := newGuest(t, Config{Root: root, ReadOnly: true})
	f := g.mustLookup(rootID, "f")
	erofs := int(unix.EROFS)
	for _, flags := range []uint32{unix.O_WRONLY, unix.O_RDWR, unix.O_RDONLY | unix.O_TRUNC} {
		if _, e := g.open(f, flags, false); e != erofs {
			t.Errorf("OPEN flags %#x: errno %d", flags, e)
		}
	}
	fh, e := g.open(f, unix.O_RDONLY, false)
	if e != 0 {
		t.Fatalf("OPEN O_RDONLY: errno %d", e)
	}
	if b, e := g.read(fh, 0, 10); e != 0 || string(b) != "keep" {
		t.Fatalf("READ: %q errno %d", b, e)
	}
	if _, e := g.write(fh, 0, []byte("x")); e != erofs {
		t.Errorf("WRITE: errno %d", e)
	}
	for _, c := range []struct {
		op   uint32
		node uint64
		args [][]byte
	}{
		{opSetattr, f, [][]byte{setattrIn(fattrSize, 0)}},
		{opMkdir, rootID, [][]byte{le(uint32(0o755), uint32(0)), cname("x")}},
		{opMknod, rootID, [][]byte{le(uint32(unix.S_IFREG|0o644), uint32(0), uint32(0), uint32(0)), cname("x")}},
		{opSymlink, rootID, [][]byte{cname("x"), cname("f")}},
		{opLink, rootID, [][]byte{le(f), cname("x")}},
		{opUnlink, rootID, [][]byte{cname("f")}},
		{opRmdir, rootID, [][]byte{cname("d")}},
		{opRename, rootID, [][]byte{le(uint64(rootID)), cname("f"), cname("g")}},
		{opRename2, rootID, [][]byte{le(uint64(rootID), uint32(0), uint32(0)), cname("f"), cname("g")}},
		{opCreate, rootID, [][]byte{le(uint32(unix.O_RDONLY), uint32(0o644), uint32(0), uint32(0)), cname("x")}},
		{opFallocate, 0, [][]byte{le(fh, uint64(0), uint64(100), uint32(0), uint32(0))}},
		{opSetxattr, f, [][]byte{le(uint32(1), uint32(0)), cname("user.x"), []byte("v")}},
		{opAccess, f, [][]byte{le(uint32(unix.W_OK), uint32(0))}},
	} {
		if e, _ := g.call(c.op, c.node, entryOutLen+openOutLen, c.args...); e != erofs {
			t.Errorf("opcode %d: errno %d, want EROFS", c.op, e)
		}
	}
	if b := readFile(t, filepath.Join(root, "f")); string(b) != "keep" {
		t.Fatalf("file changed: %q", b)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 2 {
		t.Fatalf("share changed: %v", ents)
	}
}

func TestProcNotServed(t *testing.T) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/proc", &sfs); err != nil || sfs.Type != unix.PROC_SUPER_MAGIC {
		t.Skip("no procfs at /proc")
	}
	g := newGuest(t, Config{Root: "/", ReadOnly: true})
	if _, _, e := g.lookup(rootID, "proc"); e != int(unix.EACCES) {
		t.Fatalf("LOOKUP /proc: errno %d, want EACCES", e)
	}
	if _, _, e := g.lookup(rootID, "etc"); e != 0 {
		t.Fatalf("LOOKUP /etc: errno %d", e)
	}
}

// TestLinkOfSymlink: LINK of a symlink's nodeid links the symlink itself,
// never the file it points to (which may lie outside the share).
func TestLinkOfSymlink(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "share")
	os.Mkdir(root, 0o755)
	secret := filepath.Join(outer, "secret")
	writeFile(t, secret, []byte("outside"))
	os.Symlink(secret, filepath.Join(root, "abs"))
	g := newGuest(t, Config{Root: root})
	s := g.mustLookup(rootID, "abs")
	id, a, e := g.lookupEntry(g.call(opLink, rootID, entryOutLen, le(s), cname("copy")))
	if e != 0 {
		t.Fatalf("LINK: errno %d", e)
	}
	if id != s || a.mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("LINK answered nodeid %d mode %o, want the symlink's %d", id, a.mode, s)
	}
	if fi, err := os.Lstat(filepath.Join(root, "copy")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the new name is not a symlink: %v %v", fi, err)
	}
	var st unix.Stat_t
	unix.Stat(secret, &st)
	if st.Nlink != 1 {
		t.Fatalf("the file outside has %d links", st.Nlink)
	}
}

// TestDefaultMaxOpenFiles: with MaxOpenFiles 0 the cap is an eighth of the
// file limit (raised first when the process may), never lower than 64.
func TestDefaultMaxOpenFiles(t *testing.T) {
	var before unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &before)
	g := newDevice(t, Config{})
	var after unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &after)
	if after.Cur < before.Cur || after.Max < before.Max {
		t.Fatalf("file limit lowered: %+v -> %+v", before, after)
	}
	if want := max(64, min(int(after.Cur/8), DefaultMaxOpenFiles)); g.dev.maxFiles != want {
		t.Fatalf("cap %d, want %d (limit %d)", g.dev.maxFiles, want, after.Cur)
	}
}

// TestCacheTimeout: entries (negative ones too) and attributes carry
// Config.CacheTimeout, 1 s by default.
func TestCacheTimeout(t *testing.T) {
	for _, c := range []struct {
		cfg       time.Duration
		sec, nsec uint64
	}{{0, 1, 0}, {2500 * time.Millisecond, 2, 500e6}} {
		g := newSyncGuest(t, Config{CacheTimeout: c.cfg})
		writeFile(t, g.path("f"), nil)
		for _, name := range []string{"f", "missing"} {
			b := g.must(g.call(opLookup, rootID, entryOutLen, cname(name)))
			if le64(b, 16) != c.sec || le64(b, 24) != c.sec && name == "f" || uint64(le32(b, 32)) != c.nsec {
				t.Errorf("%v, LOOKUP %s: entry_valid %d.%09d attr_valid %d", c.cfg, name, le64(b, 16), le32(b, 32), le64(b, 24))
			}
		}
		b := g.must(g.call(opGetattr, rootID, attrOutLen, make([]byte, 16)))
		if le64(b, 0) != c.sec || uint64(le32(b, 8)) != c.nsec {
			t.Errorf("%v, GETATTR: attr_valid %d.%09d", c.cfg, le64(b, 0), le32(b, 8))
		}
	}
	if _, err := New(Config{Tag: "t", Root: t.TempDir(), CacheTimeout: -1}); err == nil {
		t.Error("a negative CacheTimeout was accepted")
	}
}
