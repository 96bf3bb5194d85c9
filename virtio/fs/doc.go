// Package fs is the virtio-fs device (virtio 1.2 §5.11, device ID 26): it
// serves one host directory to the guest over the FUSE protocol, inside
// Flint (no virtiofsd). Queue 0 is the hiprio queue (FORGET), queue 1
// the one request queue; the configuration space is the tag (36 bytes)
// and num_request_queues (1). The guest mounts it with
// `mount -t virtiofs TAG DIR` (Linux modules virtiofs and fuse, with the
// virtio transport's own). It implements virtio.Device, so it runs behind
// virtio-mmio, virtio-pci and vhost-user alike, and in tests.
//
// # Protocol
//
// FUSE 7.31 (kernels with a newer minor negotiate down; 7.23 is the
// oldest accepted). Served: INIT, DESTROY, LOOKUP, FORGET, BATCH_FORGET,
// GETATTR, SETATTR, READLINK, SYMLINK, MKNOD (regular files and FIFOs;
// device nodes and sockets EPERM), MKDIR, UNLINK, RMDIR, RENAME, RENAME2
// (NOREPLACE, EXCHANGE), LINK, OPEN, READ, WRITE, STATFS, RELEASE, FSYNC,
// FLUSH, OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR, ACCESS,
// CREATE, FALLOCATE, LSEEK (SEEK_DATA/SEEK_HOLE); INTERRUPT is ignored
// (requests are served in order and never wait); a BATCH_FORGET applies
// at most 8192 entries. Everything else,
// extended attributes included, is ENOSYS, which makes the kernel stop
// asking. READ and WRITE carry up to 1 MiB (max_pages 256; a WRITE of
// more, or a READ of more than 256 pages of 64 KiB, is EINVAL). The guest
// caches names, negative lookups and attributes for Config.CacheTimeout
// (1 s by default) and keeps file pages across opens until the host
// file's size or mtime changes (KEEP_CACHE with AUTO_INVAL_DATA).
//
// The wire format is this package's own (proto.go): fixed offsets into
// little-endian byte slices whose lengths are checked first. The types
// of github.com/hanwen/go-fuse/v2's fuse package were considered and not
// used: they are meant to be cast onto raw buffers with unsafe, come with
// that package's server and mount code, and would add a dependency for
// some thirty fixed layouts.
//
// # Requests
//
// A request is one chain: fuse_in_header and the arguments
// device-readable, fuse_out_header and the answer device-writable. The
// header's len must lie within the chain's readable bytes, else the answer
// is EINVAL; a chain with fewer than 40 readable bytes is answered EINVAL
// with unique 0; a chain without room for a 16-byte out header is returned
// with used length 0. Arguments are copied into a fixed buffer (a request
// other than WRITE with more than a few KiB of arguments is EINVAL); an
// answer is written only into the chain's writable part, and one that
// would not fit becomes EIO (a request with a fixed-size answer, such as
// LOOKUP, CREATE or SETATTR, is refused so before it changes anything). READ goes with preadv straight from the host
// file into the guest's buffers, WRITE with pwritev straight out of them:
// no staging copy and no allocation per request (BenchmarkRead,
// BenchmarkWrite, TestReadWriteAllocs). Nothing a guest sends makes the
// device panic (FuzzRequest).
//
// # Confinement
//
// A nodeid is an O_PATH descriptor of a host inode, never a path. Every
// name the guest sends is one component: "", ".", "..", a name with "/" or
// longer than 255 bytes is refused before any system call. A child is
// opened below its parent's descriptor with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS) and O_NOFOLLOW, so a symlink is never followed by
// the device: READLINK hands its target to the guest, which resolves it
// inside its own mount. A node is reopened for I/O through
// /proc/self/fd/N, the inode it already holds, so renames cannot redirect
// it; creation, removal and renames take a parent descriptor and one
// component. Only regular files and directories are ever opened: OPEN, and
// CREATE of a name that exists, answer ENXIO for a FIFO (whose open(2)
// would block the device), a device node or a socket. Mount points of the
// host kernel's pseudo file systems and shared state (/proc, /sys,
// debugfs, cgroup, nsfs, mqueue, hugetlbfs, autofs, ...) are refused
// (EACCES): a share of "/" never shows the VMM's own /proc. A directory the host itself moves out of Root stays reachable
// through the nodeids the guest already holds (as with virtiofsd); the
// guest cannot move anything out of Root.
//
// With Config.ReadOnly every changing operation (SETATTR, MKNOD, MKDIR,
// SYMLINK, LINK, UNLINK, RMDIR, RENAME, CREATE, WRITE, FALLOCATE) is EROFS
// and OPEN refuses write access and O_TRUNC; host files are only ever
// opened read-only, with O_NOATIME when the VMM may (its own files, or
// CAP_FOWNER), so reading leaves access times alone, but for a
// symlink's: READLINK updates it as readlink(2) does (it takes no
// O_NOATIME). The guest should also mount it with -o ro.
//
// The guest's files are made as the VMM's user, root often, whatever
// owner the guest asks for at creation. So no mode the guest gives
// (CREATE, MKNOD, MKDIR, SETATTR) sets set-user-ID, or set-group-ID on a
// file (a directory keeps it: it only hands down its group): a writable
// share would otherwise hold root programs any host user could run. A
// set-ID file opened for writing or truncated loses those bits first
// (set-group-ID only when group-executable, as Linux does for a writer
// without CAP_FSETID, which the VMM may have), so the guest cannot put
// its code into a host set-ID program either.
//
// Inode numbers are the host's (mixed with a small per-file-system index
// off Root's file system, so a share spanning mounts never repeats one);
// a host inode has one nodeid while the guest holds it, counted per
// lookup and released by FORGET. The descriptors the guest can make the
// device hold (nodes plus open files) are capped by Config.MaxOpenFiles:
// past it LOOKUP, CREATE, OPEN, MKNOD, MKDIR and SYMLINK answer ENFILE
// (before making anything) and READDIRPLUS entries come without
// attributes, so a lookup flood never exhausts the VMM's own descriptors.
// Reset (and DESTROY) closes them all.
//
// # Seccomp
//
// After setup Flint runs under internal/seccomp's allowlist, which by
// default has none of the file-serving calls. A VMM with a virtio-fs
// device installs the filter with the FileServer option, which
// vmm.Config.SeccompOptions sets whenever the VM has a share.
//
// # Imports
//
// fs imports virtio, virtio/queue, mem and the standard library (plus
// x/sys/unix). Its only unsafe code (io_unsafe.go) passes iovec arrays to
// preadv/pwritev.
package fs
