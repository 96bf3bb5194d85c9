package fs

// The device's only ways to reach host files: one path component below a
// node's O_PATH descriptor (openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_MAGICLINKS, never following a symlink), and a node's own
// descriptor reopened through /proc/self/fd (the inode already held, so
// no path is resolved again).

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultCacheTimeout is Config.CacheTimeout's default.
const DefaultCacheTimeout = time.Second

// putTimeout writes a FUSE timeout at b: seconds (le64) at off, nanoseconds
// (le32) at nsecOff.
func putTimeout(b []byte, off, nsecOff int, d time.Duration) {
	put64(b, off, uint64(d/time.Second))
	put32(b, nsecOff, uint32(d%time.Second))
}

// errno turns a host error into the errno the guest gets.
func errno(err error) unix.Errno {
	if e, ok := err.(unix.Errno); ok && e != 0 {
		return e
	}
	return unix.EIO
}

// checkName accepts one path component: not empty, not "." or "..",
// without "/" (a NUL cannot occur: it ends the string), at most NAME_MAX
// bytes.
func checkName(name []byte) unix.Errno {
	switch {
	case len(name) == 0, len(name) == 1 && name[0] == '.', len(name) == 2 && name[0] == '.' && name[1] == '.':
		return unix.EINVAL
	case len(name) > nameMax:
		return unix.ENAMETOOLONG
	case bytes.IndexByte(name, '/') >= 0:
		return unix.EINVAL
	}
	return 0
}

// nameArg splits the next NUL-terminated name off body and checks it.
func nameArg(body []byte) (name string, rest []byte, e unix.Errno) {
	b, rest, ok := cstring(body)
	if !ok {
		return "", nil, unix.EINVAL
	}
	if e := checkName(b); e != 0 {
		return "", nil, e
	}
	return string(b), rest, 0
}

// beneath is the resolution every lookup uses: stay below the starting
// directory, never through a /proc magic link.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// openChild opens name (one checked component) below dir as an O_PATH
// descriptor of the entry itself (a symlink is not followed).
func openChild(dir int, name string) (int, error) {
	return unix.Openat2(dir, name, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: beneath})
}

// reopen opens the inode n holds with flags (O_CLOEXEC added), through
// /proc/self/fd/N: the file n already is, whatever its name now.
func (d *Device) reopen(n *node, flags int) (int, error) {
	fd, err := unix.Openat2(d.procFd, strconv.Itoa(n.fd), &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC)})
	if err == nil && (flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0) {
		dropSetID(fd)
	}
	return fd, err
}

// Set-user-ID and set-group-ID files. The device makes the guest's files
// as the VMM's user (root, often): a set-ID bit the guest set would make a
// host program that runs as that user for whoever on the host executes
// it. So the guest never sets one (setIDFree on every mode it gives), and
// a set-ID file the guest opens for writing loses its bits first, as
// Linux's own write path does for a writer without CAP_FSETID (the VMM
// may have it): the guest cannot replace a host set-ID program's code
// either. A directory keeps set-group-ID (its new files' group).

// setIDFree is the guest's mode without set-user-ID, and without
// set-group-ID unless dir.
func setIDFree(mode uint32, dir bool) uint32 {
	if dir {
		return mode &^ unix.S_ISUID
	}
	return mode &^ (unix.S_ISUID | unix.S_ISGID)
}

// dropSetID clears fd's set-user-ID bit, and its set-group-ID bit if it
// is group-executable (Linux's should_remove_suid), before the guest
// writes it.
func dropSetID(fd int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	kill := st.Mode & unix.S_ISUID
	if st.Mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		kill |= unix.S_ISGID
	}
	if kill != 0 {
		unix.Fchmod(fd, st.Mode&0o7777&^kill)
	}
}

// procName is n's name under /proc/self/fd, for the calls that take a
// path and follow it to the inode (chmod, utimes, link).
func procName(n *node) string { return strconv.Itoa(n.fd) }

// statNode fills st for n (not following a symlink).
func statNode(n *node, st *unix.Stat_t) error {
	return unix.Fstatat(n.fd, "", st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// pseudoFS reports file systems of the host kernel's own state that a
// share must never expose (a share of "/" crosses their mount points):
// /proc (the VMM's memory and descriptors), /sys, and their kin; also
// namespace files bind-mounted by `ip netns add` (an open one keeps its
// namespace alive), rpc_pipefs (opening an upcall pipe makes the device a
// reader of the host's NFS upcalls), mqueue (the host's POSIX message
// queues: a guest could unlink or read other processes' queues),
// hugetlbfs (a file there reserves the host's huge pages) and autofs (a
// lookup inside waits for the host's automount daemon, or mounts
// something on the host), and the security modules' own file systems,
// selinuxfs and smackfs (older distributions mount selinuxfs at
// /selinux, outside /sys: writing there changes the host's policy).
func pseudoFS(typ int64) bool {
	switch uint32(typ) {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.DEBUGFS_MAGIC, unix.SECURITYFS_MAGIC, unix.TRACEFS_MAGIC,
		unix.BPF_FS_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC, unix.EFIVARFS_MAGIC,
		unix.PSTOREFS_MAGIC, unix.BINFMTFS_MAGIC, unix.NSFS_MAGIC, 0x62656570 /* configfs */, 0x65735543, /* fusectl */
		0x67596969 /* rpc_pipefs */, mqueueMagic, unix.HUGETLBFS_MAGIC, unix.AUTOFS_SUPER_MAGIC,
		unix.SELINUX_MAGIC, unix.SMACK_MAGIC:
		return true
	}
	return false
}

// mqueueMagic is MQUEUE_MAGIC (linux/magic.h), which x/sys/unix lacks.
const mqueueMagic = 0x19800202

// lookup opens name below parent and returns its node, with one more
// lookup counted, and its attributes in st. A host inode already known
// keeps its nodeid. Mount points of pseudo file systems are refused
// (EACCES); past MaxOpenFiles the answer is ENFILE.
func (d *Device) lookup(parent *node, name string, st *unix.Stat_t) (*node, unix.Errno) {
	if parent.mode != unix.S_IFDIR {
		return nil, unix.ENOTDIR
	}
	fd, err := openChild(parent.fd, name)
	if err != nil {
		return nil, errno(err)
	}
	return d.adopt(fd, parent.key.dev, st)
}

// adopt makes fd (an O_PATH descriptor just opened) a node, or counts a
// lookup of the node that already holds its inode and closes fd.
func (d *Device) adopt(fd int, parentDev uint64, st *unix.Stat_t) (*node, unix.Errno) {
	if err := unix.Fstat(fd, st); err != nil {
		unix.Close(fd)
		return nil, errno(err)
	}
	if st.Dev != parentDev {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err != nil || pseudoFS(sfs.Type) {
			unix.Close(fd)
			return nil, unix.EACCES
		}
	}
	if n := d.nodes.find(devIno{st.Dev, st.Ino}); n != nil {
		unix.Close(fd)
		n.lookup++
		return n, 0
	}
	if d.full(1) {
		unix.Close(fd)
		return nil, unix.ENFILE
	}
	return d.nodes.add(fd, st), 0
}

// full reports whether n more descriptors would pass MaxOpenFiles (under
// mu); the first time in an activation it says so in the log.
func (d *Device) full(n int) bool {
	if d.openFiles()+n <= d.maxFiles {
		return false
	}
	if !d.warnedFull {
		d.warnedFull = true
		d.log.Warn("virtio-fs: the guest holds as many host files as allowed; lookups and opens fail with ENFILE until it forgets some",
			"tag", d.Tag(), "root", d.root, "max_open_files", d.maxFiles)
	}
	return true
}

// fillAttr writes fuse_attr for st into b.
func (d *Device) fillAttr(b []byte, st *unix.Stat_t) {
	put64(b, 0, d.nodes.inodeNumber(st.Dev, st.Ino))
	put64(b, 8, uint64(st.Size))
	put64(b, 16, uint64(st.Blocks))
	put64(b, 24, uint64(st.Atim.Sec))
	put64(b, 32, uint64(st.Mtim.Sec))
	put64(b, 40, uint64(st.Ctim.Sec))
	put32(b, 48, uint32(st.Atim.Nsec))
	put32(b, 52, uint32(st.Mtim.Nsec))
	put32(b, 56, uint32(st.Ctim.Nsec))
	put32(b, 60, st.Mode)
	put32(b, 64, uint32(st.Nlink))
	put32(b, 68, st.Uid)
	put32(b, 72, st.Gid)
	put32(b, 76, encodeDev(st.Rdev))
	put32(b, 80, uint32(st.Blksize))
	put32(b, 84, 0) // flags
}

// encodeDev is the kernel's new_encode_dev of a host dev_t (fuse_attr's
// rdev is 32 bits).
func encodeDev(rdev uint64) uint32 {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	return minor&0xff | major<<8 | (minor&^0xff)<<12
}

// fillEntry writes fuse_entry_out for n into b.
func (d *Device) fillEntry(b []byte, n *node, st *unix.Stat_t) {
	clear(b[:entryOutLen])
	put64(b, 0, n.id)
	putTimeout(b, 16, 32, d.cacheTimeout) // entry_valid
	putTimeout(b, 24, 36, d.cacheTimeout) // attr_valid
	d.fillAttr(b[40:], st)
}

// negativeEntry writes a fuse_entry_out with nodeid 0: "no such entry",
// which the guest caches for CacheTimeout.
func (d *Device) negativeEntry(b []byte) {
	clear(b[:entryOutLen])
	putTimeout(b, 16, 32, d.cacheTimeout)
}

// fixMode sets n's permission bits to mode when the process's umask took
// some away at creation (the guest already applied its own umask).
func (d *Device) fixMode(n *node, mode uint32) {
	if mode&d.umask&0o7777 != 0 && n.mode != unix.S_IFLNK {
		unix.Fchmodat(d.procFd, procName(n), mode&0o7777, 0)
	}
}

// processUmask reads the process's umask from /proc/self/status (without
// changing it, which umask(2) would do for every thread); 022 if unknown.
func processUmask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o022
	}
	i := bytes.Index(b, []byte("\nUmask:"))
	if i < 0 {
		return 0o022
	}
	f := bytes.Fields(b[i+len("\nUmask:"):])
	if len(f) == 0 {
		return 0o022
	}
	v, err := strconv.ParseUint(string(f[0]), 8, 32)
	if err != nil {
		return 0o022
	}
	return uint32(v)
}
