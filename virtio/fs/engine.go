package fs

// The two queues' work. The request queue's handler decodes each chain's
// fuse_in_header, checks it against the chain, runs the operation under
// the device's lock and writes the reply into the chain's writable part;
// the hiprio queue's handler applies FORGETs. Each is a virtio.Handler run
// by its own virtio.Engine.

import (
	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

const (
	// batch is how many chains an engine completes before it publishes
	// them (and maybe interrupts); it also publishes when its ring runs
	// empty.
	batch = 32
	// bodyMax is the most argument bytes a request other than WRITE may
	// carry (two names, or a name and a symlink target, with their
	// structs); a longer one is answered EINVAL.
	bodyMax = 2*nameMax + pathMax + 256
	// replyMax is the largest reply built in the device's own buffer
	// (READDIR, READDIRPLUS, READLINK); READ goes straight into the
	// chain.
	replyMax = 64 << 10
	// iovMax is the most iovecs one preadv/pwritev takes (IOV_MAX).
	iovMax = 1024
)

// port is what both queues' handlers hold: work comes only with chains
// (the host file system is never "not ready"), and the engine's events
// are counted.
type port struct {
	virtio.ChainsOnly
	d   *Device
	eng virtio.Engine
}

// Event counts what the engine reports (as New maps it).
func (p *port) Event(e virtio.Event) { p.d.stats.Event(e) }

// hiprio serves the hiprio queue: FORGET and BATCH_FORGET are applied,
// INTERRUPT and anything else ignored; nothing is answered (used length 0).
type hiprio struct {
	port
	hdr [inHeaderLen]byte
	arg [batchForgetLen]byte
	one [forgetOneLen]byte
}

var _ virtio.Handler = (*hiprio)(nil)

func (h *hiprio) Chain(c *queue.Chain) virtio.Result {
	if c.ReadAt(h.hdr[:], 0) == inHeaderLen {
		hd := decodeInHeader(h.hdr[:])
		if hd.len >= inHeaderLen && hd.len <= c.ReadLen {
			h.d.mu.Lock()
			h.d.forgets(c, hd, h.arg[:], h.one[:])
			h.d.mu.Unlock()
		}
	}
	return virtio.Result{Do: virtio.Done}
}

// batchForgetMax is the most entries of one BATCH_FORGET applied; the
// rest are ignored (their lookups stay counted until Reset). Linux's
// virtio-fs driver sends single FORGETs, and its /dev/fuse sends batches
// of at most a read buffer's worth. Without a cap a chain of overlapping
// descriptors (4 GiB of entries from 4 MiB of guest memory) kept the
// device busy, its lock held and Reset and Close waiting, for minutes.
const batchForgetMax = 8192

// forgets applies a FORGET or BATCH_FORGET request read from c (under
// mu); other opcodes are ignored. arg and one are scratch buffers.
func (d *Device) forgets(c *queue.Chain, h inHeader, arg, one []byte) {
	body := uint64(h.len - inHeaderLen)
	switch h.opcode {
	case opForget:
		if body >= 8 && c.ReadAt(arg[:8], inHeaderLen) == 8 {
			d.nodes.forget(h.nodeid, le64(arg, 0))
			d.stats.Inc(cForgets)
		}
	case opBatchForget:
		if body < batchForgetLen || c.ReadAt(arg[:batchForgetLen], inHeaderLen) != batchForgetLen {
			return
		}
		n := min(uint64(le32(arg, 0)), (body-batchForgetLen)/forgetOneLen, batchForgetMax)
		for i := range n {
			c.ReadAt(one, inHeaderLen+batchForgetLen+i*forgetOneLen)
			d.nodes.forget(le64(one, 0), le64(one, 8))
			d.stats.Inc(cForgets)
		}
	}
}

// requests serves the request queue. Its buffers are allocated once and
// reused by every request and activation.
type requests struct {
	port
	hdr   [inHeaderLen]byte
	in    []byte       // the request's arguments (not WRITE's data)
	out   []byte       // the reply: fuse_out_header, then the answer
	dents []byte       // getdents64 records
	iov   []unix.Iovec // READ and WRITE's guest buffers
	st    unix.Stat_t
	// direct is set by READ: the answer is already in the chain.
	direct bool
}

var _ virtio.Handler = (*requests)(nil)

func (r *requests) alloc() {
	r.in = make([]byte, bodyMax)
	r.out = make([]byte, outHeaderLen+replyMax)
	r.dents = make([]byte, replyMax)
	r.iov = make([]unix.Iovec, 0, iovMax)
}

// Chain serves one request.
func (r *requests) Chain(c *queue.Chain) virtio.Result {
	return virtio.Result{Do: virtio.Done, Used: r.serve(c)}
}

// serve decodes, runs and answers the request in c and returns the used
// length: the reply's size, or 0 when there is no reply (FORGET,
// INTERRUPT) or no room for even a reply header.
func (r *requests) serve(c *queue.Chain) uint32 {
	d := r.d
	d.stats.Inc(cRequests)
	if c.ReadAt(r.hdr[:], 0) < inHeaderLen {
		d.stats.Inc(cBadRequests)
		return r.reply(c, 0, unix.EINVAL, 0)
	}
	h := decodeInHeader(r.hdr[:])
	if h.len < inHeaderLen || h.len > c.ReadLen {
		d.stats.Inc(cBadRequests)
		return r.reply(c, h.unique, unix.EINVAL, 0)
	}
	switch h.opcode {
	case opForget, opBatchForget:
		d.mu.Lock()
		d.forgets(c, h, r.in[:batchForgetLen], r.in[batchForgetLen:batchForgetLen+forgetOneLen])
		d.mu.Unlock()
		return 0
	case opInterrupt:
		return 0 // requests are served in order and never block
	}
	if c.WriteLen < outHeaderLen {
		d.stats.Inc(cBadRequests)
		return 0
	}
	if h.opcode < numOps && c.WriteLen-outHeaderLen < uint32(answerLen[h.opcode]) {
		// Refused before it changes anything: a file made or a
		// lookup counted that the guest never learns of.
		d.stats.Inc(cBadRequests)
		return r.reply(c, h.unique, unix.EIO, 0)
	}
	r.direct = false
	d.mu.Lock()
	n, errno := r.dispatch(c, &h)
	d.mu.Unlock()
	if errno != 0 {
		d.stats.Inc(cErrors)
		return r.reply(c, h.unique, errno, 0)
	}
	return r.reply(c, h.unique, 0, n)
}

// reply writes the out header (and, unless the answer is already in the
// chain, the first n bytes of the answer buffer) into c and returns the
// used length. An answer the chain cannot hold becomes EIO; a chain
// without room for a header gets nothing (used length 0).
func (r *requests) reply(c *queue.Chain, unique uint64, errno unix.Errno, n int) uint32 {
	if c.WriteLen < outHeaderLen {
		return 0
	}
	if uint64(outHeaderLen+n) > uint64(c.WriteLen) {
		errno, n = unix.EIO, 0
		r.d.stats.Inc(cBadRequests)
	}
	total := uint32(outHeaderLen + n)
	putOutHeader(r.out, total, -int32(errno), unique)
	if r.direct && errno == 0 {
		c.WriteAt(r.out[:outHeaderLen], 0)
	} else {
		c.WriteAt(r.out[:total], 0)
	}
	return total
}

// mutating are the opcodes a read-only share answers EROFS.
var mutating = [numOps]bool{opSetattr: true, opSymlink: true, opMknod: true, opMkdir: true, opUnlink: true,
	opRmdir: true, opRename: true, opLink: true, opWrite: true, opCreate: true, opFallocate: true,
	opRename2: true, opSetxattr: true, opRemovexattr: true}

// answerLen is the fixed answer size of the opcodes that have one: a
// chain with less writable room is answered EIO before the request runs.
var answerLen = [numOps]uint16{opLookup: entryOutLen, opGetattr: attrOutLen, opSetattr: attrOutLen,
	opSymlink: entryOutLen, opMknod: entryOutLen, opMkdir: entryOutLen, opLink: entryOutLen, opOpen: openOutLen,
	opOpendir: openOutLen, opCreate: entryOutLen + openOutLen, opWrite: writeOutLen, opStatfs: kstatfsLen,
	opLseek: 8}

// dispatch runs the request (under mu) and returns the answer's length
// in r.out after the header, or an errno.
func (r *requests) dispatch(c *queue.Chain, h *inHeader) (int, unix.Errno) {
	d := r.d
	op := h.opcode
	if op < numOps && mutating[op] && d.readOnly {
		return 0, unix.EROFS
	}
	if !d.inited && op != opInit {
		return 0, unix.EIO
	}
	if op == opWrite {
		return r.write(c, h)
	}
	if !known(op) {
		d.stats.Inc(cUnsupported)
		return 0, unix.ENOSYS
	}
	blen := h.len - inHeaderLen
	if blen > uint32(len(r.in)) {
		return 0, unix.EINVAL
	}
	body := r.in[:blen]
	c.ReadAt(body, inHeaderLen) // h.len <= c.ReadLen: it fills body
	switch op {
	case opInit:
		return r.init(body)
	case opDestroy:
		d.forgetAll()
		return 0, 0
	case opRead:
		return r.read(c, body)
	case opLookup:
		return r.lookup(h, body)
	case opGetattr:
		return r.getattr(h, body)
	case opSetattr:
		return r.setattr(h, body)
	case opReadlink:
		return r.readlink(h)
	case opSymlink:
		return r.symlink(h, body)
	case opMknod:
		return r.mknod(h, body)
	case opMkdir:
		return r.mkdir(h, body)
	case opUnlink, opRmdir:
		return r.unlink(h, body)
	case opRename, opRename2:
		return r.rename(h, body)
	case opLink:
		return r.link(h, body)
	case opOpen, opOpendir:
		return r.open(h, body)
	case opCreate:
		return r.create(h, body)
	case opStatfs:
		return r.statfs(h)
	case opRelease, opReleasedir:
		return r.releaseHandle(h, body)
	case opFsync, opFsyncdir:
		return r.fsync(h, body)
	case opFlush:
		return 0, 0
	case opReaddir, opReaddirplus:
		return r.readdir(c, h, body)
	case opAccess:
		return r.access(body)
	case opFallocate:
		return r.fallocate(body)
	case opLseek:
		return r.lseek(body)
	}
	return 0, unix.ENOSYS
}

// known reports whether op is served (xattrs, locks, ioctl, poll, DAX
// mappings, copy_file_range and the newer opcodes are not: ENOSYS makes
// the kernel stop asking for most of them).
func known(op uint32) bool {
	switch op {
	case opInit, opDestroy, opRead, opLookup, opGetattr, opSetattr, opReadlink, opSymlink, opMknod, opMkdir,
		opUnlink, opRmdir, opRename, opRename2, opLink, opOpen, opOpendir, opCreate, opStatfs, opRelease,
		opReleasedir, opFsync, opFsyncdir, opFlush, opReaddir, opReaddirplus, opAccess, opFallocate, opLseek:
		return true
	}
	return false
}

// init answers INIT: the protocol version (the kernel's minor if older
// than the device's), the features both sides have, 1 MiB transfers.
func (r *requests) init(body []byte) (int, unix.Errno) {
	if len(body) < initInLen {
		return 0, unix.EINVAL
	}
	major, minor, readahead, flags := le32(body, 0), le32(body, 4), le32(body, 8), le32(body, 12)
	out := r.out[outHeaderLen : outHeaderLen+initOutLen]
	clear(out)
	put32(out, 0, protoMajor)
	if major > protoMajor {
		return 8, 0 // the kernel asks again with major 7
	}
	if major < protoMajor || minor < minMinor {
		return 0, unix.EPROTO
	}
	if r.d.inited {
		r.d.forgetAll() // a second INIT starts a new session
	}
	r.d.inited = true
	r.d.minor = min(minor, protoMinor)
	put32(out, 4, r.d.minor)
	put32(out, 8, readahead)
	put32(out, 12, flags&initWanted)
	put16(out, 16, 16)       // max_background
	put16(out, 18, 12)       // congestion_threshold
	put32(out, 20, MaxWrite) // max_write
	put32(out, 24, 1)        // time_gran: nanoseconds
	put16(out, 28, MaxPages) // max_pages
	return initOutLen, 0
}
