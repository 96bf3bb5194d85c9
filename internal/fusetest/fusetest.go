// Package fusetest mounts a tiny FUSE file system for tests, so that a test
// can get an fd of a regular file that lives on a real FUSE mount: the case
// where a page fault or a read waits for a user-space server, which may be
// hostile (vhost-user memory-region fds, virtio/transport/vhostuser).
//
// # What it owns
//
//   - Mount: opens /dev/fuse, mounts it with mount(2) (no libfuse, no
//     fusermount) at a new t.TempDir, and serves the kernel's FUSE protocol
//     itself from a goroutine: a root directory holding one regular file,
//     "file", of a given size that reads as zeros. It opens for reading
//     and writing (a vhost-user memory fd is mapped read-write), but WRITE
//     is ENOSYS, like every request it does not serve.
//   - Its cleanup: unmount with MNT_DETACH, stop the goroutine and wait
//     for it, then close /dev/fuse, which aborts the connection (every
//     request still waiting fails with ENOTCONN, a fault on a mapping gets
//     SIGBUS). A test that fails midway, or leaves the file open, leaves
//     no mount and no goroutine behind. A process that dies without
//     running cleanups (killed, os.Exit, a -timeout panic) aborts the
//     connection as its fds close but leaves the dead mount in place
//     until `umount -l` (mounts with source "flinttest").
//   - Hang: the hostile server, which stops answering (but for close's
//     FLUSH and RELEASE).
//
// The server answers INIT (protocol 7.31, no optional flags), LOOKUP,
// GETATTR, OPEN, RELEASE, FLUSH, STATFS and READ; anything else is ENOSYS.
// Struct layouts are those of include/uapi/linux/fuse.h, encoded with
// encoding/binary (little-endian: the package builds for linux/amd64 and
// arm64 hosts, both little-endian).
package fusetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/testenv"
	"golang.org/x/sys/unix"
)

// FUSE opcodes (enum fuse_opcode).
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opOpen        = 14
	opRead        = 15
	opStatfs      = 17
	opRelease     = 18
	opFlush       = 25
	opInit        = 26
	opInterrupt   = 36
	opDestroy     = 38
	opBatchForget = 42
)

// Sizes of the kernel's structs.
const (
	inHeaderLen  = 40 // fuse_in_header
	outHeaderLen = 16 // fuse_out_header
	attrLen      = 88 // fuse_attr
	initOutLen   = 64 // fuse_init_out as of 7.31 (through unused[7])
	readInLen    = 40 // fuse_read_in
	statfsOutLen = 80 // fuse_kstatfs
)

// Protocol version answered in INIT.
const (
	protoMajor = 7
	protoMinor = 31
)

const (
	rootID   = 1 // FUSE_ROOT_ID
	fileID   = 2
	fileName = "file"
	maxWrite = 128 << 10
	// bufLen holds any request: the kernel wants at least
	// FUSE_MIN_READ_BUFFER (8192) and max_write plus headers.
	bufLen = maxWrite + 4096
	// validSecs is how long the kernel may cache entries and attributes:
	// long, so that after Hang an fstat of a file already looked up
	// answers from the cache.
	validSecs = 3600
	blockSize = 4096
)

// FUSESuperMagic is the f_type fstatfs reports for a FUSE file system.
const FUSESuperMagic = 0x65735546

// FS is a mounted test file system.
type FS struct {
	dir  string
	size int64
	// dev is /dev/fuse, non-blocking. The server waits for it with
	// poll(2), never the runtime's poller: an epoll registration made
	// before mount would never be woken (before mount, /dev/fuse's poll
	// answers EPOLLERR without joining a wait queue).
	dev int
	// stop is an eventfd the cleanup writes to end the server.
	stop int
	hang atomic.Bool
	// mounted is set once mount(2) has returned: before it, /dev/fuse
	// polls as an error and reads fail with EPERM (the fd is not yet tied
	// to a connection).
	mounted atomic.Bool
	done    chan struct{}
	errMu   sync.Mutex
	err     error // the first protocol error the server met
}

// Mount mounts a FUSE file system at a new temporary directory
// (tb.TempDir) that holds one regular file, "file", of the given size
// (all zeros), served by a goroutine until the test ends: tb.Cleanup
// unmounts it with MNT_DETACH, stops the goroutine and waits for it, and
// closes /dev/fuse (aborting the connection). It skips the test with
// testenv.SkipOrFail when FUSE cannot be mounted here (not root, no
// /dev/fuse, mount fails with EPERM or ENODEV), and fails it on any other
// error.
func Mount(tb testing.TB, size int64) *FS {
	tb.Helper()
	if size < 0 {
		tb.Fatalf("fusetest.Mount: negative size %d", size)
	}
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(tb, fmt.Sprintf("fusetest: mounting FUSE needs root (euid %d)", os.Geteuid()))
	}
	dev, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) ||
			errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			testenv.SkipOrFail(tb, "fusetest: cannot open /dev/fuse: "+err.Error())
		}
		tb.Fatalf("fusetest: open /dev/fuse: %v", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(dev)
		tb.Fatalf("fusetest: eventfd: %v", err)
	}
	f := &FS{dir: tb.TempDir(), size: size, dev: dev, stop: stop, done: make(chan struct{})}
	// Serve before mount(2): a kernel may send INIT and wait for its
	// answer before mount returns.
	go f.serve()
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", dev)
	if err := unix.Mount("flinttest", f.dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		f.shutdown()
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENODEV) {
			testenv.SkipOrFail(tb, "fusetest: cannot mount FUSE here: "+err.Error())
		}
		tb.Fatalf("fusetest: mount fuse at %s: %v", f.dir, err)
	}
	f.mounted.Store(true)
	tb.Cleanup(func() {
		if err := unix.Unmount(f.dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("fusetest: unmount %s: %v", f.dir, err)
		}
		f.shutdown()
		if err := f.serveErr(); err != nil {
			tb.Errorf("fusetest: server: %v", err)
		}
	})
	return f
}

// shutdown stops the server, waits for its goroutine to return, then
// closes /dev/fuse, which aborts the connection: every request still
// waiting for an answer fails.
func (f *FS) shutdown() {
	var one [8]byte
	le.PutUint64(one[:], 1)
	if _, err := unix.Write(f.stop, one[:]); err != nil {
		f.setErr(fmt.Errorf("write stop eventfd: %w", err))
	}
	<-f.done
	unix.Close(f.dev)
	unix.Close(f.stop)
}

// Path is the file's path.
func (f *FS) Path() string { return filepath.Join(f.dir, fileName) }

// Hang makes the server stop answering: every request read after it is
// set, READ included, is left unanswered, except FLUSH and RELEASE, so
// that closing the file does not wait (FORGET needs no answer, and
// unmounting a "fuse" mount sends none), so a read of the file, a page
// fault on a mapping of it, or an fstatfs waits until the test's cleanup
// closes /dev/fuse. Do the access that hangs in another goroutine (or
// process): the cleanup that ends it runs only after the test function
// returns. Pages already in the page cache are served by the kernel
// without asking (each open of the file drops them, but OPEN itself hangs
// after Hang), so open the file, then Hang, then map and touch it. While a
// fault waits, it holds the process's mmap lock for reading: another
// thread's mmap, munmap or fork (os/exec) may wait behind it too.
func (f *FS) Hang() { f.hang.Store(true) }

func (f *FS) setErr(err error) {
	f.errMu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.errMu.Unlock()
}

func (f *FS) serveErr() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.err
}

// serve reads requests until shutdown or the connection ends.
func (f *FS) serve() {
	defer close(f.done)
	buf := make([]byte, bufLen)
	for {
		// Whether mount(2) had returned is read before the poll and
		// the read: read after them, it could say mounted of a poll
		// or read made before the mount (POLLERR, EPERM), and the
		// server would quit a connection that had just begun.
		mounted := f.mounted.Load()
		fds := []unix.PollFd{{Fd: int32(f.dev), Events: unix.POLLIN}, {Fd: int32(f.stop), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			f.setErr(fmt.Errorf("poll /dev/fuse: %w", err))
			return
		}
		afterPoll(f, fds[0].Revents)
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			if !mounted {
				// Not mounted yet: /dev/fuse polls as an error.
				time.Sleep(time.Millisecond)
				continue
			}
			return // POLLERR: the connection is gone
		}
		n, err := unix.Read(f.dev, buf)
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT):
			// ENOENT: the request was interrupted before we read it.
			continue
		case errors.Is(err, unix.EPERM) && !mounted:
			time.Sleep(time.Millisecond)
			continue
		case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ECONNABORTED):
			return // unmounted: the connection ended (or was aborted)
		default:
			f.setErr(fmt.Errorf("read /dev/fuse: %w", err))
			return
		}
		if err := f.handle(buf[:n]); err != nil {
			f.setErr(err)
		}
	}
}

var le = binary.LittleEndian

// afterPoll runs in serve after each poll with /dev/fuse's revents (a
// test widens the race between a poll made before mount(2) and the
// mount with it).
var afterPoll = func(f *FS, revents int16) {}

// handle answers one request.
func (f *FS) handle(req []byte) error {
	if len(req) < inHeaderLen {
		return fmt.Errorf("short request: %d bytes", len(req))
	}
	opcode := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	nodeid := le.Uint64(req[16:])
	in := req[inHeaderLen:]
	switch opcode {
	case opForget, opBatchForget:
		return nil // never answered
	case opInterrupt:
		// Answering ENOSYS tells the kernel not to send more.
		return f.reply(unique, unix.ENOSYS, nil)
	}
	// FLUSH and RELEASE (close) are answered even after Hang: a close
	// left waiting can end only when the connection is aborted, which
	// the cleanup does after the test function returns, so a test that
	// closes the file itself (a deferred Close, an os.File finalizer)
	// would hang its binary, unkillably (the wait is in D state).
	if f.hang.Load() && opcode != opDestroy && opcode != opFlush && opcode != opRelease {
		return nil
	}
	switch opcode {
	case opInit:
		if len(in) < 8 {
			return fmt.Errorf("short INIT: %d bytes", len(in))
		}
		if major := le.Uint32(in); major != protoMajor {
			return fmt.Errorf("kernel speaks FUSE %d.x, want %d", major, protoMajor)
		}
		out := make([]byte, initOutLen)
		le.PutUint32(out[0:], protoMajor)
		le.PutUint32(out[4:], protoMinor)
		le.PutUint32(out[8:], 0)         // max_readahead
		le.PutUint32(out[12:], 0)        // flags: none
		le.PutUint16(out[16:], 0)        // max_background: kernel default
		le.PutUint16(out[18:], 0)        // congestion_threshold
		le.PutUint32(out[20:], maxWrite) // max_write
		le.PutUint32(out[24:], 1)        // time_gran: 1 ns
		return f.reply(unique, 0, out)
	case opDestroy:
		return f.reply(unique, 0, nil)
	case opLookup:
		name, _, _ := bytes.Cut(in, []byte{0})
		if nodeid != rootID || string(name) != fileName {
			return f.reply(unique, unix.ENOENT, nil)
		}
		out := make([]byte, 40+attrLen) // fuse_entry_out
		le.PutUint64(out[0:], fileID)   // nodeid
		le.PutUint64(out[8:], 1)        // generation
		le.PutUint64(out[16:], validSecs)
		le.PutUint64(out[24:], validSecs)
		f.putAttr(out[40:], fileID)
		return f.reply(unique, 0, out)
	case opGetattr:
		if nodeid != rootID && nodeid != fileID {
			return f.reply(unique, unix.ENOENT, nil)
		}
		out := make([]byte, 16+attrLen) // fuse_attr_out
		le.PutUint64(out[0:], validSecs)
		f.putAttr(out[16:], nodeid)
		return f.reply(unique, 0, out)
	case opOpen:
		if nodeid != fileID {
			return f.reply(unique, unix.EISDIR, nil)
		}
		return f.reply(unique, 0, make([]byte, 16)) // fuse_open_out: fh 0, no flags
	case opRelease, opFlush:
		return f.reply(unique, 0, nil)
	case opStatfs:
		out := make([]byte, statfsOutLen)
		blocks := uint64((f.size + blockSize - 1) / blockSize)
		le.PutUint64(out[0:], blocks) // blocks
		le.PutUint64(out[24:], 2)     // files
		le.PutUint32(out[40:], blockSize)
		le.PutUint32(out[44:], 255) // namelen
		le.PutUint32(out[48:], blockSize)
		return f.reply(unique, 0, out)
	case opRead:
		if len(in) < readInLen {
			return fmt.Errorf("short READ: %d bytes", len(in))
		}
		if nodeid != fileID {
			return f.reply(unique, unix.EISDIR, nil)
		}
		off := le.Uint64(in[8:])
		n := uint64(le.Uint32(in[16:]))
		if off >= uint64(f.size) {
			n = 0
		} else if rest := uint64(f.size) - off; n > rest {
			n = rest
		}
		return f.reply(unique, 0, make([]byte, n))
	}
	return f.reply(unique, unix.ENOSYS, nil)
}

// putAttr fills a fuse_attr for node.
func (f *FS) putAttr(b []byte, node uint64) {
	mode, nlink, size := uint32(unix.S_IFDIR|0o755), uint32(2), uint64(0)
	if node == fileID {
		mode, nlink, size = unix.S_IFREG|0o644, 1, uint64(f.size)
	}
	le.PutUint64(b[0:], node)            // ino
	le.PutUint64(b[8:], size)            // size
	le.PutUint64(b[16:], (size+511)/512) // blocks (512-byte units)
	le.PutUint32(b[60:], mode)           // mode
	le.PutUint32(b[64:], nlink)          // nlink
	le.PutUint32(b[80:], blockSize)      // blksize
	// atime, mtime, ctime, uid, gid, rdev, flags: 0.
}

// reply writes one answer: a fuse_out_header (error is the negated errno)
// and, on success, the body.
func (f *FS) reply(unique uint64, errno unix.Errno, body []byte) error {
	msg := make([]byte, outHeaderLen+len(body))
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint32(msg[4:], uint32(-int32(errno)))
	le.PutUint64(msg[8:], unique)
	copy(msg[outHeaderLen:], body)
	if _, err := unix.Write(f.dev, msg); err != nil {
		// ENOENT: the request was interrupted and is gone; ENODEV,
		// ECONNABORTED: the connection ended under us.
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ECONNABORTED) {
			return nil
		}
		return fmt.Errorf("write /dev/fuse (unique %d): %w", unique, err)
	}
	return nil
}
