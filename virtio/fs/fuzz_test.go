package fs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// The fuzzer sends one fuzzed request (its readable bytes, split in two
// buffers at a fuzzed point, and a writable part of a fuzzed length) on
// the request or the hiprio queue of a device that has served INIT, looked
// up "f" (nodeid 2), opened it (fhFile) and opened the root directory
// (fhDir), over a share holding a file, a directory and symlinks out of
// it, inside a directory that also holds a file outside the share. The
// device must not panic, must answer within the writable part with a
// consistent out header, must keep its descriptor count within its
// limit, and the world outside the share must not change.

// Handles the setup opens (slots 1 and 2, generation 1).
const (
	fhFile = 1<<32 | 1
	fhDir  = 1<<32 | 2
	fzMax  = 16 // MaxOpenFiles of the fuzzed device
)

func fuzzSeeds() [][]byte {
	rd := func(fh, off uint64, n uint32) []byte { return le(fh, off, n, uint32(0), uint64(0), uint64(0)) }
	wr := append(rd(fhFile, 3, 5), "hello"...)
	return [][]byte{
		request(opLookup, rootID, 1, cname("d")),
		request(opLookup, rootID, 1, cname("..")),
		request(opLookup, 2, 1, cname("x")),
		request(opGetattr, 2, 1, le(uint32(getattrFH), uint32(0), uint64(fhFile))),
		request(opSetattr, 2, 1, setattrIn(fattrSize|fattrMode|fattrAtimeNow, 7)),
		request(opReadlink, 3, 1),
		request(opSymlink, rootID, 1, cname("s"), cname("/etc")),
		request(opMknod, rootID, 1, le(uint32(unix.S_IFIFO|0o644), uint32(0), uint32(0), uint32(0)), cname("p")),
		request(opMkdir, rootID, 1, le(uint32(0o755), uint32(0)), cname("m")),
		request(opUnlink, rootID, 1, cname("f")),
		request(opRmdir, rootID, 1, cname("d")),
		request(opRename2, rootID, 1, le(uint64(rootID), uint32(1), uint32(0)), cname("f"), cname("g")),
		request(opLink, rootID, 1, le(uint64(2)), cname("h")),
		request(opOpen, 2, 1, le(uint32(unix.O_RDWR|unix.O_TRUNC), uint32(0))),
		request(opRead, 2, 1, rd(fhFile, 0, 4096)),
		request(opWrite, 2, 1, wr),
		request(opStatfs, rootID, 1),
		request(opRelease, 2, 1, le(uint64(fhFile), uint32(0), uint32(0), uint64(0))),
		request(opFsync, 2, 1, le(uint64(fhFile), uint32(1), uint32(0))),
		request(opInit, 0, 1, le(uint32(7), uint32(36), uint32(0), uint32(0xffffffff))),
		request(opReaddirplus, rootID, 1, rd(fhDir, 0, 4096)),
		request(opReaddir, rootID, 1, rd(fhDir, 2, 4096)),
		request(opCreate, rootID, 1, le(uint32(unix.O_RDWR), uint32(0o600), uint32(0), uint32(0)), cname("c")),
		request(opFallocate, 2, 1, le(uint64(fhFile), uint64(0), uint64(4096), uint32(0), uint32(0))),
		request(opLseek, 2, 1, le(uint64(fhFile), uint64(0), uint32(unix.SEEK_DATA), uint32(0))),
		request(opBatchForget, 0, 0, le(uint32(2), uint32(0), uint64(2), uint64(1), uint64(rootID), uint64(1))),
		request(opForget, 2, 0, le(uint64(1))),
		request(opDestroy, 0, 1),
		{1, 2, 3},
	}
}

func FuzzRequest(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint16(len(s)/2), uint16(4096+16), i%7 == 6)
	}
	f.Fuzz(func(t *testing.T, req []byte, split, wlen uint16, hiprio bool) {
		if len(req) == 0 || len(req) > 64<<10 {
			return
		}
		outer := t.TempDir()
		root := filepath.Join(outer, "share")
		os.Mkdir(root, 0o755)
		os.Mkdir(filepath.Join(root, "d"), 0o755)
		writeFile(t, filepath.Join(root, "f"), pattern(10000))
		writeFile(t, filepath.Join(outer, "secret"), []byte("outside"))
		os.Symlink("../secret", filepath.Join(root, "rel"))
		os.Symlink(filepath.Join(outer, "secret"), filepath.Join(root, "abs"))
		g := newSyncGuestSized(t, Config{Root: root, MaxOpenFiles: fzMax}, 1<<20)
		g.mustLookup(rootID, "f")
		if fh, e := g.open(2, unix.O_RDWR, false); e != 0 || fh != fhFile {
			t.Fatalf("setup OPEN: %#x %d", fh, e)
		}
		if fh, e := g.open(rootID, unix.O_RDONLY, true); e != 0 || fh != fhDir {
			t.Fatalf("setup OPENDIR: %#x %d", fh, e)
		}

		s := min(int(split), len(req))
		bufs := []qt.Buf{qt.R(req[:s])}
		if s == 0 {
			bufs = []qt.Buf{qt.R(req)}
		} else if s < len(req) {
			bufs = append(bufs, qt.R(req[s:]))
		}
		if wlen > 0 {
			bufs = append(bufs, qt.W(uint32(wlen)))
		}
		q := RequestQueue
		if hiprio {
			q = HiprioQueue
		}
		u := g.chain(q, bufs...)
		switch {
		case u.Len > uint32(wlen):
			t.Fatalf("used length %d beyond the writable %d", u.Len, wlen)
		case hiprio && u.Len != 0:
			t.Fatalf("hiprio used length %d", u.Len)
		case u.Len > 0:
			w := g.drv[q].Written(u)
			if u.Len < outHeaderLen || le32(w, 0) != u.Len {
				t.Fatalf("used length %d, out header %x", u.Len, w[:min(len(w), 16)])
			}
		}
		if n := g.dev.OpenFiles(); n > fzMax {
			t.Fatalf("%d descriptors held, limit %d", n, fzMax)
		}
		// The device still answers.
		if _, e := g.getattr(rootID); e != 0 && e != int(unix.EIO) { // EIO: the request was DESTROY
			t.Fatalf("GETATTR after the request: errno %d", e)
		}
		if ents, _ := os.ReadDir(outer); len(ents) != 2 {
			t.Fatalf("the share's parent changed: %v", ents)
		}
		if b := readFile(t, filepath.Join(outer, "secret")); string(b) != "outside" {
			t.Fatalf("the file outside the share changed: %q", b)
		}
	})
}
