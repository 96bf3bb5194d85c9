package fs

// Requests a hostile (or merely ordinary) guest sends, checked against
// the kernel's own layouts and against the host outside the share.

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
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

// TestGuestFIFONeverOpened: a FIFO the guest makes with MKNOD is never
// opened on the host (open(2) without a writer would block the device):
// OPEN answers ENXIO in every access mode, SETATTR size EINVAL, and the
// device goes on serving.
func TestGuestFIFONeverOpened(t *testing.T) {
	g := newGuest(t, Config{})
	// Should the device block in open(2), a writer lets it go before
	// Close waits for it.
	t.Cleanup(func() {
		if fd, err := unix.Open(g.path("p"), unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			unix.Close(fd)
		}
	})
	p, _, e := g.lookupEntry(g.call(opMknod, rootID, entryOutLen, le(uint32(unix.S_IFIFO|0o666), uint32(0), uint32(0), uint32(0)), cname("p")))
	if e != 0 {
		t.Fatalf("MKNOD fifo: errno %d", e)
	}
	for _, flags := range []uint32{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR, unix.O_RDONLY | unix.O_NONBLOCK, unix.O_WRONLY | unix.O_TRUNC} {
		if _, e := g.open(p, flags, false); e != int(unix.ENXIO) {
			t.Errorf("OPEN of the FIFO, flags %#x: errno %d, want ENXIO", flags, e)
		}
	}
	if e, _ := g.call(opSetattr, p, attrOutLen, kernelSetattr(fattrSize, 0, 0, 0, 0, 0)); e != int(unix.EINVAL) {
		t.Errorf("SETATTR size of the FIFO: errno %d, want EINVAL", e)
	}
	if g.dev.OpenFiles() != 1 {
		t.Errorf("%d descriptors held, want the FIFO's node alone", g.dev.OpenFiles())
	}
	if _, e := g.getattr(rootID); e != 0 {
		t.Fatalf("GETATTR after: errno %d", e)
	}
}

// TestRenameStaysInside: RENAME2's EXCHANGE swaps two entries of the
// share and nothing else; a directory cannot be moved below itself, a
// file's nodeid is no target directory, and the share's parent never
// changes.
func TestRenameStaysInside(t *testing.T) {
	outer := t.TempDir()
	root := outer + "/share"
	os.MkdirAll(root+"/d/sub", 0o755)
	writeFile(t, root+"/f", []byte("file"))
	writeFile(t, outer+"/secret", []byte("outside"))
	g := newGuest(t, Config{Root: root})
	d, f := g.mustLookup(rootID, "d"), g.mustLookup(rootID, "f")
	sub := g.mustLookup(d, "sub")
	g.must(g.call(opRename2, rootID, 0, le(uint64(rootID), uint32(unix.RENAME_EXCHANGE), uint32(0)), cname("d"), cname("f")))
	if b := readFile(t, root+"/d"); string(b) != "file" {
		t.Fatalf("after EXCHANGE d holds %q", b)
	}
	if fi, err := os.Stat(root + "/f/sub"); err != nil || !fi.IsDir() {
		t.Fatalf("after EXCHANGE f/sub: %v", err)
	}
	if e, _ := g.call(opRename, rootID, 0, le(sub), cname("f"), cname("x")); e != int(unix.EINVAL) {
		t.Errorf("RENAME of a directory below itself: errno %d, want EINVAL", e)
	}
	if e, _ := g.call(opRename, rootID, 0, le(f), cname("f"), cname("x")); e != int(unix.ENOTDIR) {
		t.Errorf("RENAME into a file's nodeid: errno %d, want ENOTDIR", e)
	}
	if e, _ := g.call(opRename2, rootID, 0, le(uint64(rootID), uint32(unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE), uint32(0)), cname("d"), cname("f")); e != int(unix.EINVAL) {
		t.Errorf("RENAME2 EXCHANGE|NOREPLACE: errno %d, want EINVAL", e)
	}
	if ents, _ := os.ReadDir(outer); len(ents) != 2 {
		t.Fatalf("the share's parent changed: %v", ents)
	}
	if b := readFile(t, outer+"/secret"); string(b) != "outside" {
		t.Fatalf("the file outside changed: %q", b)
	}
}

// TestStaleHandleAfterReuse: a released fh whose slot a new OPEN reuses
// names nothing (the generation differs): READ and WRITE through it answer
// EBADF and never reach the newly opened file.
func TestStaleHandleAfterReuse(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("a"), []byte("aaaa"))
	writeFile(t, g.path("b"), []byte("bbbb"))
	old, e := g.open(g.mustLookup(rootID, "a"), unix.O_RDWR, false)
	if e != 0 {
		t.Fatalf("OPEN a: errno %d", e)
	}
	g.release(old, false)
	fresh, e := g.open(g.mustLookup(rootID, "b"), unix.O_RDWR, false)
	if e != 0 {
		t.Fatalf("OPEN b: errno %d", e)
	}
	if uint32(fresh) != uint32(old) || fresh == old {
		t.Fatalf("fh %#x after %#x: the slot was not reused with a new generation", fresh, old)
	}
	if _, e := g.read(old, 0, 4); e != int(unix.EBADF) {
		t.Errorf("READ through the stale fh: errno %d, want EBADF", e)
	}
	if _, e := g.write(old, 0, []byte("X")); e != int(unix.EBADF) {
		t.Errorf("WRITE through the stale fh: errno %d, want EBADF", e)
	}
	if b := readFile(t, g.path("b")); string(b) != "bbbb" {
		t.Fatalf("b holds %q", b)
	}
}

// TestBatchForgetBounded: one BATCH_FORGET applies at most batchForgetMax
// entries, whatever count and chain length the guest gives. Each entry is
// read by its offset into the chain (a walk over its segments), so a chain
// of 1023 overlapping 4 MiB descriptors (4 MiB of guest memory) counting
// 2^28 entries kept the device's lock for minutes; here 1023 segments of
// 16 KiB (a million entries) took 0.7 s before the cap.
func TestBatchForgetBounded(t *testing.T) {
	const segs, segLen = 1023, 16 << 10
	g := newSyncGuestSized(t, Config{}, segs*segLen+(1<<20))
	writeFile(t, g.path("f"), nil)
	f := g.mustLookup(rootID, "f")
	hdr := request(opBatchForget, 0, 0, le(uint32(0xffffffff), uint32(0), f, uint64(1)))
	put32(hdr, 0, uint32(segs*segLen))
	bufs := []qt.Buf{qt.R(hdr)}
	for range segs - 2 {
		bufs = append(bufs, qt.R(make([]byte, segLen)))
	}
	bufs = append(bufs, qt.R(make([]byte, 2*segLen-len(hdr))))
	start := time.Now()
	if u := g.chain(RequestQueue, bufs...); u.Len != 0 {
		t.Fatalf("BATCH_FORGET used length %d", u.Len)
	}
	t.Logf("served in %v", time.Since(start))
	if n := g.dev.Stats().Forgets; n != batchForgetMax {
		t.Fatalf("%d entries applied, want the cap %d", n, batchForgetMax)
	}
	if _, e := g.getattr(f); e != int(unix.ESTALE) {
		t.Fatalf("GETATTR of the forgotten node: errno %d", e)
	}
}

// TestTransferSizeBounded: a WRITE of more than MaxWrite and a READ of
// more than readMax are EINVAL, so no single request moves more than a
// few MiB. Before, a READ of 4 GiB into 1020 descriptors that all name
// the same 4 MiB of guest memory was served, its lock held, for 11 s.
func TestTransferSizeBounded(t *testing.T) {
	g := newSyncGuestSized(t, Config{}, 16<<20)
	f, err := os.Create(g.path("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 33)
	f.Close()
	fh, e := g.open(g.mustLookup(rootID, "sparse"), unix.O_RDWR, false)
	if e != 0 {
		t.Fatalf("OPEN: errno %d", e)
	}
	if _, e := g.write(fh, 0, pattern(MaxWrite+1)); e != int(unix.EINVAL) {
		t.Errorf("WRITE of MaxWrite+1 bytes: errno %d, want EINVAL", e)
	}
	if b, e := g.read(fh, 0, 16); e != 0 || string(b) != string(make([]byte, 16)) {
		t.Errorf("the refused WRITE changed the file: %q errno %d", b, e)
	}
	if e, _ := g.call(opRead, 0, 4096, le(fh, uint64(0), uint32(readMax+1), uint32(0), uint64(0), uint64(0))); e != int(unix.EINVAL) {
		t.Errorf("READ of readMax+1 bytes: errno %d, want EINVAL", e)
	}
	// The attack itself, with raw descriptors: the request, the out
	// header, then 1020 writable descriptors over one 4 MiB buffer.
	const seg, copies = 4 << 20, 1020
	d := g.drv[RequestQueue]
	g.unique++
	req := request(opRead, 0, g.unique, le(fh, uint64(0), uint32(0xffffffff), uint32(0), uint64(0), uint64(0)))
	reqAddr, outAddr, dataAddr := d.Alloc(uint64(len(req))), d.Alloc(outHeaderLen), d.Alloc(seg)
	copy(d.Bytes(reqAddr, uint64(len(req))), req)
	const next, write = 1, 2 // VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
	d.SetDesc(0, qt.Desc{Addr: reqAddr, Len: uint32(len(req)), Flags: next, Next: 1})
	d.SetDesc(1, qt.Desc{Addr: outAddr, Len: outHeaderLen, Flags: next | write, Next: 2})
	for i := range uint16(copies) {
		flags := uint16(next | write)
		if i == copies-1 {
			flags = write
		}
		d.SetDesc(2+i, qt.Desc{Addr: dataAddr, Len: seg, Flags: flags, Next: 3 + i})
	}
	d.AddHead(0)
	start := time.Now()
	g.submit(RequestQueue)
	u, ok := d.Used()
	if !ok {
		t.Fatal("the overlapping READ was not answered")
	}
	t.Logf("overlapping READ answered in %v", time.Since(start))
	if u.Len != outHeaderLen {
		t.Fatalf("overlapping READ of 4 GiB: used length %d, want an error answer", u.Len)
	}
	if e := -int(int32(le32(d.Bytes(outAddr, outHeaderLen), 4))); e != int(unix.EINVAL) {
		t.Fatalf("overlapping READ of 4 GiB: errno %d, want EINVAL", e)
	}
}
