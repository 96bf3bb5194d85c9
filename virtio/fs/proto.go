package fs

// The FUSE wire format (kernel include/uapi/linux/fuse.h), as fixed
// offsets into little-endian byte slices: every field is read or written
// at a constant offset of a buffer whose length the caller has checked,
// so no struct is ever cast onto guest bytes.

import "encoding/binary"

// Protocol version the device speaks: 7.31, the minor that introduced
// virtio-fs. A kernel with a newer minor negotiates down to it; an older
// one is answered with its own minor (7.31's structs are a superset).
const (
	protoMajor = 7
	protoMinor = 31
	// minMinor is the oldest minor accepted: 7.23 brought the 64-byte
	// INIT reply with time_gran and RENAME2; every virtio-fs kernel is
	// newer.
	minMinor = 23
)

// Opcodes.
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opSetattr     = 4
	opReadlink    = 5
	opSymlink     = 6
	opMknod       = 8
	opMkdir       = 9
	opUnlink      = 10
	opRmdir       = 11
	opRename      = 12
	opLink        = 13
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opStatfs      = 17
	opRelease     = 18
	opFsync       = 20
	opSetxattr    = 21
	opGetxattr    = 22
	opListxattr   = 23
	opRemovexattr = 24
	opFlush       = 25
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opFsyncdir    = 30
	opAccess      = 34
	opCreate      = 35
	opInterrupt   = 36
	opDestroy     = 38
	opBatchForget = 42
	opFallocate   = 43
	opReaddirplus = 44
	opRename2     = 45
	opLseek       = 46
	numOps        = 64 // opcodes below this are counted per opcode
)

// Sizes of the fixed parts.
const (
	inHeaderLen    = 40 // fuse_in_header
	outHeaderLen   = 16 // fuse_out_header
	attrLen        = 88 // fuse_attr
	entryOutLen    = 40 + attrLen
	attrOutLen     = 16 + attrLen
	openOutLen     = 16
	writeInLen     = 40 // fuse_write_in
	readInLen      = 40 // fuse_read_in
	writeOutLen    = 8
	initInLen      = 16 // major, minor, max_readahead, flags (the rest is ignored)
	initOutLen     = 64
	kstatfsLen     = 80
	direntLen      = 24 // fuse_dirent without its name
	setattrInLen   = 88
	forgetOneLen   = 16
	batchForgetLen = 8
	rootID         = 1 // FUSE_ROOT_ID
)

// INIT flags the device may answer with (masked by what the kernel offers).
const (
	initAsyncRead       = 1 << 0
	initAtomicOTrunc    = 1 << 3
	initBigWrites       = 1 << 5
	initAutoInvalData   = 1 << 12
	initDoReaddirplus   = 1 << 13
	initReaddirplusAuto = 1 << 14
	initParallelDirops  = 1 << 18
	initMaxPages        = 1 << 22
	initCacheSymlinks   = 1 << 23

	initWanted = initAsyncRead | initAtomicOTrunc | initBigWrites | initAutoInvalData | initDoReaddirplus |
		initReaddirplusAuto | initParallelDirops | initMaxPages | initCacheSymlinks
)

// SETATTR valid bits.
const (
	fattrMode     = 1 << 0
	fattrUID      = 1 << 1
	fattrGID      = 1 << 2
	fattrSize     = 1 << 3
	fattrAtime    = 1 << 4
	fattrMtime    = 1 << 5
	fattrFH       = 1 << 6
	fattrAtimeNow = 1 << 7
	fattrMtimeNow = 1 << 8
)

// Offsets in fuse_setattr_in: valid (le32 at 0), padding, then these;
// lock_owner (24), ctime (48), ctimensec (64) and the unused words are
// ignored.
const (
	setattrFH        = 8  // le64
	setattrSize      = 16 // le64
	setattrAtime     = 32 // le64; mtime follows at 40
	setattrAtimeNsec = 56 // le32; mtimensec follows at 60
	setattrMode      = 68 // le32
	setattrUID       = 76 // le32
	setattrGID       = 80 // le32
)

// Other flags.
const (
	getattrFH     = 1 // fuse_getattr_in.getattr_flags: fh is valid
	fsyncDatasync = 1 // fuse_fsync_in.fsync_flags
	openKeepCache = 2 // fuse_open_out.open_flags: FOPEN_KEEP_CACHE
)

// inHeader is a decoded fuse_in_header.
type inHeader struct {
	len    uint32
	opcode uint32
	unique uint64
	nodeid uint64
	uid    uint32
	gid    uint32
}

// decodeInHeader reads b (at least inHeaderLen bytes).
func decodeInHeader(b []byte) inHeader {
	_ = b[inHeaderLen-1]
	return inHeader{
		len:    le32(b, 0),
		opcode: le32(b, 4),
		unique: le64(b, 8),
		nodeid: le64(b, 16),
		uid:    le32(b, 24),
		gid:    le32(b, 28),
	}
}

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

// putOutHeader writes fuse_out_header: the reply's total length, the
// negated errno (0 for success) and the request's unique id.
func putOutHeader(b []byte, n uint32, errno int32, unique uint64) {
	put32(b, 0, n)
	put32(b, 4, uint32(errno))
	put64(b, 8, unique)
}

// cstring splits b at its first NUL: the string before it and the bytes
// after. ok is false when b holds no NUL.
func cstring(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// nameMax is the longest path component (NAME_MAX).
const nameMax = 255

// pathMax is the longest symlink target accepted (PATH_MAX, its NUL
// included).
const pathMax = 4096
