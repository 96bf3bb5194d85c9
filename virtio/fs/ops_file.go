package fs

// Operations on open files and directories: OPEN, OPENDIR, CREATE, READ,
// WRITE, RELEASE(DIR), FSYNC(DIR), READDIR(PLUS), FALLOCATE, LSEEK. READ
// and WRITE move data with preadv/pwritev straight between the host file
// and the chain's guest buffers, allocating nothing.

import (
	"math"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/queue"
)

// openFlags turns the guest's open flags into the host's: the access
// mode, O_APPEND, O_TRUNC and the sync flags are kept, the rest (creation,
// O_DIRECT, O_NOATIME, O_NOFOLLOW: the node is already resolved) dropped.
// A read-only share refuses anything but O_RDONLY without O_TRUNC.
func (d *Device) openFlags(guest uint32) (int, unix.Errno) {
	acc := int(guest) & unix.O_ACCMODE
	if acc == unix.O_ACCMODE {
		return 0, unix.EINVAL
	}
	f := acc | int(guest)&(unix.O_APPEND|unix.O_TRUNC|unix.O_SYNC|unix.O_DSYNC)
	if d.readOnly && (acc != unix.O_RDONLY || f&unix.O_TRUNC != 0) {
		return 0, unix.EROFS
	}
	return f, 0
}

// openAnswer writes fuse_open_out for fh at b.
func openAnswer(b []byte, fh uint64, dir bool) {
	clear(b[:openOutLen])
	put64(b, 0, fh)
	if !dir {
		// The guest keeps its page cache across opens (shared
		// libraries stay cached); AUTO_INVAL_DATA drops it when the
		// host file's size or mtime changes.
		put32(b, 8, openKeepCache)
	}
}

func (r *requests) open(h *inHeader, body []byte) (int, unix.Errno) {
	n, e := r.node(h.nodeid)
	if e != 0 {
		return 0, e
	}
	if len(body) < 8 {
		return 0, unix.EINVAL
	}
	dir := h.opcode == opOpendir
	var flags int
	switch {
	case dir && n.mode != unix.S_IFDIR:
		return 0, unix.ENOTDIR
	case dir:
		flags = unix.O_RDONLY | unix.O_DIRECTORY
	case n.mode == unix.S_IFDIR:
		return 0, unix.EISDIR
	case n.mode != unix.S_IFREG:
		return 0, unix.ENXIO // special files are the guest kernel's own
	default:
		if flags, e = r.d.openFlags(le32(body, 0)); e != 0 {
			return 0, e
		}
	}
	if r.d.full(1) {
		return 0, unix.ENFILE
	}
	if r.d.readOnly {
		// Reading changes nothing on the host, not even access times.
		flags |= unix.O_NOATIME
	}
	fd, err := r.d.reopen(n, flags)
	if err == unix.EPERM && flags&unix.O_NOATIME != 0 {
		// O_NOATIME needs the file's owner or CAP_FOWNER.
		fd, err = r.d.reopen(n, flags&^unix.O_NOATIME)
	}
	if err != nil {
		return 0, errno(err)
	}
	openAnswer(r.answer(), r.d.handles.add(fd, dir, n.id), dir)
	return openOutLen, 0
}

// create answers CREATE. A new file is made with O_EXCL; a name that
// already exists (unless the guest asked O_EXCL too) is looked up and
// reopened as OPEN would, only if it is a regular file: open(2) of a FIFO
// without a writer would block the device, and of a device node would
// hand the guest the host's device. An existing file keeps its mode.
func (r *requests) create(h *inHeader, body []byte) (int, unix.Errno) {
	p, arg, name, _, e := r.dirName(h, body, 16)
	if e != 0 {
		return 0, e
	}
	flags, e := r.d.openFlags(le32(arg, 0))
	if e != 0 {
		return 0, e
	}
	mode := setIDFree(le32(arg, 4)&0o7777, false)
	if r.d.full(2) { // the file and its node
		return 0, unix.ENFILE
	}
	fd, err := unix.Openat2(p.fd, name, &unix.OpenHow{Flags: uint64(flags | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Mode: uint64(mode), Resolve: beneath})
	var n *node
	switch {
	case err == nil:
		if n, e = r.made(p, fd, mode); e != 0 {
			return 0, e
		}
	case err == unix.EEXIST && le32(arg, 0)&unix.O_EXCL == 0:
		if n, fd, e = r.openExisting(p, name, flags); e != 0 {
			return 0, e
		}
	default:
		return 0, errno(err)
	}
	b := r.answer()
	r.d.fillEntry(b, n, &r.st)
	openAnswer(b[entryOutLen:], r.d.handles.add(fd, false, n.id), false)
	return entryOutLen + openOutLen, 0
}

// made gives fd, a file CREATE just made below p, the guest's mode and
// its node (closing fd on failure).
func (r *requests) made(p *node, fd int, mode uint32) (*node, unix.Errno) {
	if mode&r.d.umask != 0 {
		unix.Fchmod(fd, mode)
	}
	pfd, err := unix.Openat2(r.d.procFd, strconv.Itoa(fd), &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
	if err != nil {
		unix.Close(fd)
		return nil, errno(err)
	}
	n, e := r.d.adopt(pfd, p.key.dev, &r.st)
	if e != 0 {
		unix.Close(fd)
	}
	return n, e
}

// openExisting is CREATE of a name that exists below p: its node (one
// lookup counted) and a descriptor of it opened with flags, if it is a
// regular file; EISDIR, ELOOP (a symlink, never followed) or ENXIO
// otherwise.
func (r *requests) openExisting(p *node, name string, flags int) (*node, int, unix.Errno) {
	n, e := r.d.lookup(p, name, &r.st)
	if e != 0 {
		return nil, -1, e
	}
	switch n.mode {
	case unix.S_IFREG:
		fd, err := r.d.reopen(n, flags)
		if err == nil {
			if err = unix.Fstat(fd, &r.st); err == nil { // after O_TRUNC
				return n, fd, 0
			}
			unix.Close(fd)
		}
		e = errno(err)
	case unix.S_IFDIR:
		e = unix.EISDIR
	case unix.S_IFLNK:
		e = unix.ELOOP
	default:
		e = unix.ENXIO // special files are the guest kernel's own
	}
	r.d.nodes.forget(n.id, 1) // the lookup the guest never sees
	return nil, -1, e
}

// readIn decodes a fuse_read_in (READ, READDIR, READDIRPLUS): the open
// handle (a directory's when dir) and the offset, which must fit an int64.
func (r *requests) readIn(body []byte, dir bool) (*handle, uint64, unix.Errno) {
	if len(body) < readInLen {
		return nil, 0, unix.EINVAL
	}
	hd, e := r.file(le64(body, 0), dir)
	if e != 0 {
		return nil, 0, e
	}
	off := le64(body, 8)
	if off > math.MaxInt64 {
		return nil, 0, unix.EINVAL
	}
	return hd, off, 0
}

// file returns the open file fh names (not a directory), or EBADF.
func (r *requests) file(fh uint64, dir bool) (*handle, unix.Errno) {
	if hd := r.d.handles.get(fh, dir); hd != nil {
		return hd, 0
	}
	return nil, unix.EBADF
}

// readMax is the largest READ answered: max_pages (MaxPages) pages of
// 64 KiB, the most a kernel with the largest page size asks for. A larger
// one, like a WRITE of more than MaxWrite, is EINVAL: without the bounds
// one request of 4 GiB (overlapping descriptors over 4 MiB of guest
// memory) kept the device, its lock held, busy for seconds.
const readMax = MaxPages << 16

// read answers READ straight into the chain, after the out header: at
// most the size asked and what the chain holds; fewer bytes at the end of
// the file.
func (r *requests) read(c *queue.Chain, body []byte) (int, unix.Errno) {
	hd, off, e := r.readIn(body, false)
	if e != 0 {
		return 0, e
	}
	size := uint64(le32(body, 16))
	if size > readMax {
		return 0, unix.EINVAL
	}
	n := min(size, uint64(c.WriteLen-outHeaderLen), math.MaxInt64-off)
	got, e := r.transfer(false, hd.fd, c.Writable, outHeaderLen, n, off)
	if e != 0 {
		return 0, e
	}
	r.direct = true
	r.d.stats.Add(cReadBytes, got)
	return int(got), 0
}

// write answers WRITE from the chain's data after fuse_write_in.
func (r *requests) write(c *queue.Chain, h *inHeader) (int, unix.Errno) {
	if h.len < inHeaderLen+writeInLen {
		return 0, unix.EINVAL
	}
	arg := r.in[:writeInLen]
	c.ReadAt(arg, inHeaderLen)
	off, size := le64(arg, 8), uint64(le32(arg, 16))
	if size > MaxWrite || size > uint64(h.len-inHeaderLen-writeInLen) {
		return 0, unix.EINVAL
	}
	hd, e := r.file(le64(arg, 0), false)
	if e != 0 {
		return 0, e
	}
	if off > math.MaxInt64 || size > math.MaxInt64-off {
		return 0, unix.EFBIG
	}
	got, e := r.transfer(true, hd.fd, c.Readable, inHeaderLen+writeInLen, size, off)
	if e != 0 {
		return 0, e
	}
	r.d.stats.Add(cWriteBytes, got)
	b := r.answer()
	put32(b, 0, uint32(got))
	put32(b, 4, 0)
	return writeOutLen, 0
}

// transfer moves up to n bytes between the host file fd at pos and the
// chain segments segs, starting skip bytes into them: pwritev (write) or
// preadv, at most iovMax segments per call, resumed after short
// transfers, stopping at the end of the file. It allocates nothing.
func (r *requests) transfer(write bool, fd int, segs [][]byte, skip, n, pos uint64) (uint64, unix.Errno) {
	done := uint64(0)
	for done < n {
		r.iov = queue.AppendIovecs(r.iov[:0], segs, skip+done, n-done, iovMax)
		if len(r.iov) == 0 {
			break
		}
		got, e := rawIOV(write, fd, r.iov, int64(pos+done))
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			if done > 0 {
				return done, 0
			}
			return 0, e
		case got == 0:
			return done, 0
		}
		done += uint64(got)
	}
	return done, 0
}

func (r *requests) releaseHandle(h *inHeader, body []byte) (int, unix.Errno) {
	if len(body) < 8 {
		return 0, unix.EINVAL
	}
	r.d.handles.release(le64(body, 0), h.opcode == opReleasedir)
	return 0, 0
}

func (r *requests) fsync(h *inHeader, body []byte) (int, unix.Errno) {
	if len(body) < 16 {
		return 0, unix.EINVAL
	}
	hd, e := r.file(le64(body, 0), h.opcode == opFsyncdir)
	if e != 0 {
		return 0, e
	}
	if le32(body, 8)&fsyncDatasync != 0 {
		return 0, errnoOrZero(unix.Fdatasync(hd.fd))
	}
	return 0, errnoOrZero(unix.Fsync(hd.fd))
}

func (r *requests) fallocate(body []byte) (int, unix.Errno) {
	if len(body) < 32 {
		return 0, unix.EINVAL
	}
	hd, e := r.file(le64(body, 0), false)
	if e != 0 {
		return 0, e
	}
	off, length := le64(body, 8), le64(body, 16)
	if off > math.MaxInt64 || length > math.MaxInt64-off {
		return 0, unix.EFBIG
	}
	return 0, errnoOrZero(unix.Fallocate(hd.fd, le32(body, 24), int64(off), int64(length)))
}

func (r *requests) lseek(body []byte) (int, unix.Errno) {
	if len(body) < 24 {
		return 0, unix.EINVAL
	}
	hd, e := r.file(le64(body, 0), false)
	if e != 0 {
		return 0, e
	}
	off, whence := le64(body, 8), int(le32(body, 16))
	if off > math.MaxInt64 || (whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE) {
		return 0, unix.EINVAL
	}
	pos, err := unix.Seek(hd.fd, int64(off), whence)
	if err != nil {
		return 0, errno(err)
	}
	put64(r.answer(), 0, uint64(pos))
	return 8, 0
}
