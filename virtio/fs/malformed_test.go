package fs

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// TestMalformed: requests that do not fit their chains get an error
// answer, or used length 0 when there is no room for one; the device
// goes on serving.
func TestMalformed(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), pattern(100))
	f := g.mustLookup(rootID, "f")
	fh, _ := g.open(f, unix.O_RDONLY, false)

	hdr := func(op uint32, length uint32, extra ...byte) []byte {
		b := request(op, rootID, 77, extra)
		put32(b, 0, length)
		return b
	}
	for _, c := range []struct {
		name   string
		bufs   []qt.Buf
		used   uint32 // expected used length
		errno  unix.Errno
		unique uint64
	}{
		{"short header", []qt.Buf{qt.R(make([]byte, 10)), qt.W(64)}, 16, unix.EINVAL, 0},
		{"header split short", []qt.Buf{qt.R(make([]byte, 20)), qt.R(make([]byte, 19)), qt.W(64)}, 16, unix.EINVAL, 0},
		{"len beyond the chain", []qt.Buf{qt.R(hdr(opGetattr, 4096)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"len below the header", []qt.Buf{qt.R(hdr(opGetattr, 39)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"len 2^32-1", []qt.Buf{qt.R(hdr(opGetattr, 0xffffffff)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"unknown opcode", []qt.Buf{qt.R(hdr(9999, 40)), qt.W(256)}, 16, unix.ENOSYS, 77},
		{"ioctl", []qt.Buf{qt.R(hdr(39, 40)), qt.W(256)}, 16, unix.ENOSYS, 77},
		{"no writable part", []qt.Buf{qt.R(hdr(opGetattr, 56, make([]byte, 16)...))}, 0, 0, 0},
		{"writable shorter than a header", []qt.Buf{qt.R(hdr(opGetattr, 56, make([]byte, 16)...)), qt.W(15)}, 0, 0, 0},
		{"answer does not fit", []qt.Buf{qt.R(hdr(opGetattr, 56, make([]byte, 16)...)), qt.W(16), qt.W(20)}, 16, unix.EIO, 77},
		{"GETATTR without its argument", []qt.Buf{qt.R(hdr(opGetattr, 40)), qt.W(256)}, 16 + attrOutLen, 0, 77},
		{"SETATTR short", []qt.Buf{qt.R(hdr(opSetattr, 48, make([]byte, 8)...)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"READ short", []qt.Buf{qt.R(hdr(opRead, 48, make([]byte, 8)...)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"WRITE short", []qt.Buf{qt.R(hdr(opWrite, 48, make([]byte, 8)...)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"WRITE size beyond its data", []qt.Buf{qt.R(hdr(opWrite, 90, le(fh, uint64(0), uint32(11), uint32(0), uint64(0), uint64(0))...)), qt.R(make([]byte, 10)), qt.W(64)}, 16, unix.EINVAL, 77},
		{"arguments too long", []qt.Buf{qt.R(hdr(opLookup, 40+bodyMax+1, make([]byte, bodyMax+1)...)), qt.W(256)}, 16, unix.EINVAL, 77},
		{"BATCH_FORGET count beyond its body", []qt.Buf{qt.R(hdr(opBatchForget, 64, le(uint32(1000), uint32(0), f, uint64(0))...))}, 0, 0, 0},
		{"INTERRUPT", []qt.Buf{qt.R(hdr(opInterrupt, 48, make([]byte, 8)...)), qt.W(64)}, 0, 0, 0},
		{"READDIR on a file handle", []qt.Buf{qt.R(hdr(opReaddir, 80, le(fh, uint64(0), uint32(4096), uint32(0), uint64(0), uint64(0))...)), qt.W(16), qt.W(4096)}, 16, unix.EBADF, 77},
		{"LSEEK whence SET", []qt.Buf{qt.R(hdr(opLseek, 64, le(fh, uint64(0), uint32(0), uint32(0))...)), qt.W(64)}, 16, unix.EINVAL, 77},
		{"FALLOCATE past 2^63", []qt.Buf{qt.R(hdr(opFallocate, 72, le(fh, uint64(1<<62), uint64(1<<62), uint32(0), uint32(0))...)), qt.W(64)}, 16, unix.EFBIG, 77},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := g.chain(RequestQueue, c.bufs...)
			if u.Len != c.used {
				t.Fatalf("used length %d, want %d", u.Len, c.used)
			}
			if c.used == 0 {
				return
			}
			e, _ := g.answer(u, c.unique)
			if e != int(c.errno) {
				t.Fatalf("errno %d, want %d", e, c.errno)
			}
		})
	}
	// Still serving, the file still open, the node still known.
	if b, e := g.read(fh, 0, 100); e != 0 || len(b) != 100 {
		t.Fatalf("READ after the malformed requests: %d bytes errno %d", len(b), e)
	}
	if s := g.dev.Stats(); s.BadRequests < 6 || s.Unsupported != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReadIntoSmallChain: READ never writes beyond the chain, whatever
// size it asks for.
func TestReadIntoSmallChain(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), pattern(1<<20))
	fh, _ := g.open(g.mustLookup(rootID, "f"), unix.O_RDONLY, false)
	g.unique++
	u := g.chain(RequestQueue, qt.R(request(opRead, 0, g.unique, le(fh, uint64(3), uint32(1<<20), uint32(0), uint64(0), uint64(0)))),
		qt.W(10), qt.W(6), qt.W(100))
	e, b := g.answer(u, g.unique)
	if e != 0 || len(b) != 100 || string(b) != string(pattern(1 << 20)[3:103]) {
		t.Fatalf("errno %d, %d bytes", e, len(b))
	}
}

// TestFDLimit: a lookup flood stops at MaxOpenFiles with ENFILE, and
// FORGET and RELEASE give descriptors back.
func TestFDLimit(t *testing.T) {
	const limit = 8
	var logs bytes.Buffer
	g := newGuest(t, Config{MaxOpenFiles: limit, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range 20 {
		writeFile(t, g.path(fmt.Sprint(i)), nil)
	}
	var ids []uint64
	for i := range 20 {
		id, _, e := g.lookup(rootID, fmt.Sprint(i))
		if i < limit && (e != 0 || id == 0) {
			t.Fatalf("LOOKUP %d: errno %d", i, e)
		}
		if i >= limit && e != int(unix.ENFILE) {
			t.Fatalf("LOOKUP %d past the limit: errno %d", i, e)
		}
		if e == 0 {
			ids = append(ids, id)
		}
	}
	// Known inodes are still found at the limit.
	if id := g.mustLookup(rootID, "0"); id != ids[0] {
		t.Fatalf("LOOKUP of a known inode at the limit: %d", id)
	}
	if _, e := g.open(ids[0], unix.O_RDONLY, false); e != int(unix.ENFILE) {
		t.Fatalf("OPEN at the limit: errno %d", e)
	}
	if _, _, e := g.create(rootID, "new", unix.O_RDWR, 0o644); e != int(unix.ENFILE) {
		t.Fatalf("CREATE at the limit: errno %d", e)
	}
	// READDIRPLUS at the limit answers entries without nodeids.
	g.forget(ids[1], 1)
	dfh, e := g.open(rootID, unix.O_RDONLY, true)
	if e != 0 {
		t.Fatalf("OPENDIR: errno %d", e)
	}
	ents := g.readdir(dfh, true, 4096)
	if len(ents) != 22 {
		t.Fatalf("%d entries", len(ents))
	}
	for _, de := range ents {
		if de.nodeid != 0 && de.name != "0" && de.name != "2" && de.name != "3" && de.name != "4" && de.name != "5" && de.name != "6" && de.name != "7" {
			t.Fatalf("entry %s got nodeid %d past the limit", de.name, de.nodeid)
		}
	}
	g.release(dfh, true)
	if got := g.dev.OpenFiles(); got != limit-1 {
		t.Fatalf("open files %d, want %d", got, limit-1)
	}
	// A batch forget of everything frees them all.
	batch := le(uint32(len(ids)), uint32(0))
	for _, id := range ids {
		batch = append(batch, le(id, uint64(100))...)
	}
	g.chain(HiprioQueue, qt.R(request(opBatchForget, 0, 0, batch)))
	if got := g.dev.OpenFiles(); got != 0 {
		t.Fatalf("open files %d after BATCH_FORGET", got)
	}
	if _, _, e := g.lookup(rootID, "19"); e != 0 {
		t.Fatalf("LOOKUP after the forgets: errno %d", e)
	}
	// The limit was logged once, naming it.
	if n := strings.Count(logs.String(), "max_open_files=8"); n != 1 {
		t.Fatalf("%d log lines about the limit:\n%s", n, logs.String())
	}
}

func TestResetClosesDescriptors(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), nil)
	f := g.mustLookup(rootID, "f")
	g.open(f, unix.O_RDONLY, false)
	g.open(rootID, unix.O_RDONLY, true)
	if got := g.dev.OpenFiles(); got != 3 {
		t.Fatalf("open files %d, want 3", got)
	}
	g.dev.Reset()
	if got := g.dev.OpenFiles(); got != 0 {
		t.Fatalf("open files %d after Reset", got)
	}
}

// TestForgetWhileServing: FORGETs on the hiprio queue race with LOOKUPs on
// the request queue (each queue has its own engine goroutine); the device
// never uses a descriptor a FORGET closed and ends with a consistent
// table.
func TestForgetWhileServing(t *testing.T) {
	g := newGuest(t, Config{})
	writeFile(t, g.path("f"), []byte("x"))
	var last atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		hp := g.drv[HiprioQueue]
		for range 300 {
			id := last.Load()
			if id == 0 {
				continue
			}
			if _, err := hp.Add(qt.R(request(opForget, id, 0, le(uint64(1))))); err != nil {
				t.Error(err)
				return
			}
			g.submit(HiprioQueue)
			for {
				if _, ok := hp.Used(); ok {
					break
				}
				time.Sleep(20 * time.Microsecond)
			}
		}
	}()
	for range 300 {
		id, a, e := g.lookup(rootID, "f")
		if e != 0 || a.size != 1 {
			t.Fatalf("LOOKUP: errno %d %+v", e, a)
		}
		last.Store(id)
		if a2, e := g.getattr(id); e != 0 && e != int(unix.ESTALE) || e == 0 && a2.size != 1 {
			t.Fatalf("GETATTR: errno %d %+v", e, a2)
		}
	}
	<-done
	if n := g.dev.OpenFiles(); n > 1 {
		t.Fatalf("%d descriptors held for one file", n)
	}
}
