package fs

// Operations on nodes and names: LOOKUP, GETATTR, SETATTR, READLINK,
// SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR, RENAME(2), LINK, STATFS, ACCESS.
// Each runs under the device's lock and answers into r.out.

import (
	"math"

	"golang.org/x/sys/unix"
)

// answer is the answer area of r.out (after the out header).
func (r *requests) answer() []byte { return r.out[outHeaderLen:] }

// node returns the node h names, or ESTALE.
func (r *requests) node(id uint64) (*node, unix.Errno) {
	if n := r.d.nodes.get(id); n != nil {
		return n, 0
	}
	return nil, unix.ESTALE
}

// dir returns the directory node id names.
func (r *requests) dir(id uint64) (*node, unix.Errno) {
	n, e := r.node(id)
	if e == 0 && n.mode != unix.S_IFDIR {
		return nil, unix.ENOTDIR
	}
	return n, e
}

// handleOf returns the open handle fh names if it was opened from n
// (GETATTR's and SETATTR's optional fh), else nil: the guest's fh is a
// hint, never a way to reach another file than the nodeid named.
func (r *requests) handleOf(fh uint64, n *node) *handle {
	if hd := r.d.handles.get(fh, n.mode == unix.S_IFDIR); hd != nil && hd.node == n.id {
		return hd
	}
	return nil
}

// entry answers with n's fuse_entry_out.
func (r *requests) entry(n *node) (int, unix.Errno) {
	r.d.fillEntry(r.answer(), n, &r.st)
	return entryOutLen, 0
}

// dirName decodes the head every name operation shares: the directory h
// names, a fixed argument of argLen bytes, then one checked name (and
// what follows it).
func (r *requests) dirName(h *inHeader, body []byte, argLen int) (p *node, arg []byte, name string, rest []byte, e unix.Errno) {
	if p, e = r.dir(h.nodeid); e != 0 {
		return nil, nil, "", nil, e
	}
	if len(body) < argLen {
		return nil, nil, "", nil, unix.EINVAL
	}
	name, rest, e = nameArg(body[argLen:])
	return p, body[:argLen], name, rest, e
}

// newName is dirName for the operations that make an entry and then look
// it up (MKNOD, MKDIR, SYMLINK): past MaxOpenFiles they answer ENFILE
// before making anything.
func (r *requests) newName(h *inHeader, body []byte, argLen int) (p *node, arg []byte, name string, rest []byte, e unix.Errno) {
	if p, arg, name, rest, e = r.dirName(h, body, argLen); e == 0 && r.d.full(1) {
		e = unix.ENFILE
	}
	return p, arg, name, rest, e
}

func (r *requests) lookup(h *inHeader, body []byte) (int, unix.Errno) {
	p, _, name, _, e := r.dirName(h, body, 0)
	if e != 0 {
		return 0, e
	}
	n, e := r.d.lookup(p, name, &r.st)
	if e == unix.ENOENT {
		r.d.negativeEntry(r.answer())
		return entryOutLen, 0
	}
	if e != 0 {
		return 0, e
	}
	return r.entry(n)
}

// attr answers with fuse_attr_out for r.st.
func (r *requests) attr() (int, unix.Errno) {
	b := r.answer()
	clear(b[:attrOutLen])
	putTimeout(b, 0, 8, r.d.cacheTimeout)
	r.d.fillAttr(b[16:], &r.st)
	return attrOutLen, 0
}

func (r *requests) getattr(h *inHeader, body []byte) (int, unix.Errno) {
	n, e := r.node(h.nodeid)
	if e != 0 {
		return 0, e
	}
	if len(body) >= 16 && le32(body, 0)&getattrFH != 0 {
		if hd := r.handleOf(le64(body, 8), n); hd != nil {
			if err := unix.Fstat(hd.fd, &r.st); err != nil {
				return 0, errno(err)
			}
			return r.attr()
		}
	}
	if err := statNode(n, &r.st); err != nil {
		return 0, errno(err)
	}
	return r.attr()
}

func (r *requests) setattr(h *inHeader, body []byte) (int, unix.Errno) {
	n, e := r.node(h.nodeid)
	if e != 0 {
		return 0, e
	}
	if len(body) < setattrInLen {
		return 0, unix.EINVAL
	}
	valid := le32(body, 0)
	if valid&fattrMode != 0 {
		if n.mode == unix.S_IFLNK {
			return 0, unix.EOPNOTSUPP
		}
		if err := unix.Fchmodat(r.d.procFd, procName(n), setIDFree(le32(body, setattrMode)&0o7777, n.mode == unix.S_IFDIR), 0); err != nil {
			return 0, errno(err)
		}
	}
	if valid&(fattrUID|fattrGID) != 0 {
		uid, gid := -1, -1
		if valid&fattrUID != 0 {
			uid = int(le32(body, setattrUID))
		}
		if valid&fattrGID != 0 {
			gid = int(le32(body, setattrGID))
		}
		if err := unix.Fchownat(n.fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return 0, errno(err)
		}
	}
	if valid&fattrSize != 0 {
		if e := r.truncate(n, valid, body); e != 0 {
			return 0, e
		}
	}
	if valid&(fattrAtime|fattrMtime) != 0 && n.mode != unix.S_IFLNK {
		ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		for i, bit := range [2]uint32{fattrAtime, fattrMtime} {
			switch {
			case valid&(bit<<3) != 0: // FATTR_ATIME_NOW, FATTR_MTIME_NOW
				ts[i] = unix.Timespec{Nsec: unix.UTIME_NOW}
			case valid&bit != 0:
				ts[i] = unix.Timespec{Sec: int64(le64(body, setattrAtime+8*i)), Nsec: int64(le32(body, setattrAtimeNsec+4*i))}
			}
		}
		if err := unix.UtimesNanoAt(r.d.procFd, procName(n), ts[:], 0); err != nil {
			return 0, errno(err)
		}
	}
	if err := statNode(n, &r.st); err != nil {
		return 0, errno(err)
	}
	return r.attr()
}

// truncate is SETATTR's size: through the open handle the guest names,
// or a write-only reopen of the node.
func (r *requests) truncate(n *node, valid uint32, body []byte) unix.Errno {
	size := le64(body, setattrSize)
	if size > math.MaxInt64 {
		return unix.EINVAL
	}
	if n.mode != unix.S_IFREG {
		return unix.EINVAL
	}
	if valid&fattrFH != 0 {
		if hd := r.handleOf(le64(body, setattrFH), n); hd != nil {
			return errnoOrZero(unix.Ftruncate(hd.fd, int64(size)))
		}
	}
	fd, err := r.d.reopen(n, unix.O_WRONLY)
	if err != nil {
		return errno(err)
	}
	defer unix.Close(fd)
	return errnoOrZero(unix.Ftruncate(fd, int64(size)))
}

func errnoOrZero(err error) unix.Errno {
	if err == nil {
		return 0
	}
	return errno(err)
}

func (r *requests) readlink(h *inHeader) (int, unix.Errno) {
	n, e := r.node(h.nodeid)
	if e != 0 {
		return 0, e
	}
	if n.mode != unix.S_IFLNK {
		return 0, unix.EINVAL
	}
	k, err := unix.Readlinkat(n.fd, "", r.answer()[:pathMax])
	if err != nil {
		return 0, errno(err)
	}
	return k, 0
}

// created looks up name, just made below p, and answers its entry.
func (r *requests) created(p *node, name string, mode uint32) (int, unix.Errno) {
	n, e := r.d.lookup(p, name, &r.st)
	if e != 0 {
		return 0, e
	}
	if mode != 0 {
		r.d.fixMode(n, mode)
		if err := statNode(n, &r.st); err != nil {
			return 0, errno(err)
		}
	}
	return r.entry(n)
}

func (r *requests) symlink(h *inHeader, body []byte) (int, unix.Errno) {
	p, _, name, rest, e := r.newName(h, body, 0)
	if e != 0 {
		return 0, e
	}
	target, _, ok := cstring(rest)
	if !ok || len(target) == 0 {
		return 0, unix.EINVAL
	}
	if len(target) >= pathMax {
		return 0, unix.ENAMETOOLONG
	}
	if err := unix.Symlinkat(string(target), p.fd, name); err != nil {
		return 0, errno(err)
	}
	return r.created(p, name, 0)
}

func (r *requests) mknod(h *inHeader, body []byte) (int, unix.Errno) {
	p, arg, name, _, e := r.newName(h, body, 16)
	if e != 0 {
		return 0, e
	}
	mode := setIDFree(le32(arg, 0), false)
	switch mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFIFO, 0:
	default:
		return 0, unix.EPERM // device nodes and sockets are the guest's own business
	}
	if err := unix.Mknodat(p.fd, name, mode, 0); err != nil {
		return 0, errno(err)
	}
	return r.created(p, name, mode)
}

func (r *requests) mkdir(h *inHeader, body []byte) (int, unix.Errno) {
	p, arg, name, _, e := r.newName(h, body, 8)
	if e != 0 {
		return 0, e
	}
	mode := setIDFree(le32(arg, 0)&0o7777, true)
	if err := unix.Mkdirat(p.fd, name, mode); err != nil {
		return 0, errno(err)
	}
	return r.created(p, name, mode|unix.S_IFDIR)
}

func (r *requests) unlink(h *inHeader, body []byte) (int, unix.Errno) {
	p, _, name, _, e := r.dirName(h, body, 0)
	if e != 0 {
		return 0, e
	}
	flags := 0
	if h.opcode == opRmdir {
		flags = unix.AT_REMOVEDIR
	}
	return 0, errnoOrZero(unix.Unlinkat(p.fd, name, flags))
}

// renameFlags are RENAME2's flags the device passes on (NOREPLACE,
// EXCHANGE); WHITEOUT is refused.
const renameFlags = unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE

func (r *requests) rename(h *inHeader, body []byte) (int, unix.Errno) {
	argLen, flags := 8, uint32(0)
	if h.opcode == opRename2 {
		argLen = 16
	}
	p, arg, oldName, rest, e := r.dirName(h, body, argLen)
	if e != 0 {
		return 0, e
	}
	if h.opcode == opRename2 {
		flags = le32(arg, 8)
	}
	if flags&^renameFlags != 0 {
		return 0, unix.EINVAL
	}
	np, e := r.dir(le64(arg, 0))
	if e != 0 {
		return 0, e
	}
	newName, _, e := nameArg(rest)
	if e != 0 {
		return 0, e
	}
	return 0, errnoOrZero(unix.Renameat2(p.fd, oldName, np.fd, newName, uint(flags)))
}

func (r *requests) link(h *inHeader, body []byte) (int, unix.Errno) {
	p, arg, name, _, e := r.dirName(h, body, 8)
	if e != 0 {
		return 0, e
	}
	old, e := r.node(le64(arg, 0))
	if e != 0 {
		return 0, e
	}
	if old.mode == unix.S_IFDIR {
		return 0, unix.EPERM
	}
	// Through /proc/self/fd: linkat's AT_EMPTY_PATH would need
	// CAP_DAC_READ_SEARCH; following the magic link names the inode held.
	if err := unix.Linkat(r.d.procFd, procName(old), p.fd, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return 0, errno(err)
	}
	return r.created(p, name, 0)
}

func (r *requests) statfs(h *inHeader) (int, unix.Errno) {
	n, e := r.node(h.nodeid)
	if e != 0 {
		return 0, e
	}
	var s unix.Statfs_t
	if err := unix.Fstatfs(n.fd, &s); err != nil {
		return 0, errno(err)
	}
	b := r.answer()
	clear(b[:kstatfsLen])
	put64(b, 0, s.Blocks)
	put64(b, 8, s.Bfree)
	put64(b, 16, s.Bavail)
	put64(b, 24, s.Files)
	put64(b, 32, s.Ffree)
	put32(b, 40, uint32(s.Bsize))
	put32(b, 44, uint32(s.Namelen))
	put32(b, 48, uint32(s.Frsize))
	return kstatfsLen, 0
}

// access answers ACCESS (sent only without default_permissions, which
// virtio-fs mounts always have): W_OK on a read-only share is EROFS.
func (r *requests) access(body []byte) (int, unix.Errno) {
	if len(body) < 8 {
		return 0, unix.EINVAL
	}
	if r.d.readOnly && le32(body, 0)&unix.W_OK != 0 {
		return 0, unix.EROFS
	}
	return 0, 0
}
