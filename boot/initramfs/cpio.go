package initramfs

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// The newc format (the kernel's Documentation/driver-api/early-userspace/
// buffer-format.rst): each entry is a 110-byte ASCII header ("070701" and
// thirteen 8-digit hex fields), the NUL-terminated name padded so that
// header+name ends on a 4-byte boundary, then the body padded likewise. The
// kernel computes both paddings from offsets in the whole initrd, so an
// archive must start on a 4-byte boundary (WriteUserInitrd sees to that).
const (
	newcMagic   = "070701"
	headerLen   = 110
	trailerName = "TRAILER!!!"

	// MaxNameLen is the longest entry name (or symlink target) accepted,
	// in bytes without the NUL: the kernel's PATH_MAX (4096) with the NUL.
	MaxNameLen = 4095
	// MaxFileSize is the largest body a newc entry can describe (its size
	// field has 8 hex digits).
	MaxFileSize = 1<<32 - 1
)

// File type bits of the newc mode field (the st_mode values Linux uses).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
	modeBlock   = 0o060000
	permMask    = 0o7777
)

// DeviceKind says whether a device node is a character or a block device.
type DeviceKind int

// Device node kinds.
const (
	CharDevice DeviceKind = iota
	BlockDevice
)

// Errors the writer returns; each is wrapped with the entry's name.
var (
	// ErrBadName: an entry name or symlink target the archive cannot hold
	// (empty, NUL, a "." or ".." or empty component, too long, the trailer's
	// name, or a name already written).
	ErrBadName = errors.New("invalid cpio entry name")
	// ErrBadEntry: a mode, size or device number the format cannot hold, or
	// a reader that gave fewer bytes than the size it was announced with.
	ErrBadEntry = errors.New("invalid cpio entry")
	// ErrClosed: an entry written after Close.
	ErrClosed = errors.New("cpio archive already closed")
)

// Writer writes a newc cpio archive to an io.Writer, entry by entry, with no
// temporary files. It never panics on bad input: a bad name, mode or size is
// an error and nothing of that entry is written. A failed write to the
// underlying io.Writer (or a short reader) leaves a partial entry behind, so
// it breaks the Writer: every later call returns the same error.
//
// The kernel does not create missing parent directories when it unpacks an
// archive; write them first (MkdirAll does).
type Writer struct {
	w       io.Writer
	off     int64
	ino     uint32
	mtime   uint32
	err     error           // sticky: set once the archive is broken or closed
	names   map[string]bool // entry names written; true for directories
	scratch []byte          // header + name + padding of the entry being written
	copyBuf []byte
}

// NewWriter returns a Writer that writes an archive to w. The archive must
// start on a 4-byte boundary of the initrd it belongs to.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, ino: 1, names: map[string]bool{}}
}

// SetModTime sets the modification time (seconds since the epoch) of the
// entries written after it; the default is 0, so archives are reproducible.
func (w *Writer) SetModTime(sec uint32) { w.mtime = sec }

// Offset returns the number of bytes written so far.
func (w *Writer) Offset() int64 { return w.off }

// cleanName validates an entry name and returns it as stored: relative,
// without a leading "/". Each "/"-separated component must be non-empty and
// neither "." nor "..": the kernel's unpacker would follow such a path out of
// the place the entry means (or fail on it).
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	switch {
	case n == "":
		return "", fmt.Errorf("%w %q: empty", ErrBadName, name)
	case len(n) > MaxNameLen:
		return "", fmt.Errorf("%w: %d bytes long, at most %d", ErrBadName, len(n), MaxNameLen)
	case strings.IndexByte(n, 0) >= 0:
		return "", fmt.Errorf("%w %q: contains a NUL byte", ErrBadName, name)
	case n == trailerName:
		return "", fmt.Errorf("%w %q: the name that ends an archive", ErrBadName, name)
	}
	for rest := n; ; {
		comp, tail, more := strings.Cut(rest, "/")
		if comp == "" || comp == "." || comp == ".." {
			return "", fmt.Errorf("%w %q: a path component is empty, \".\" or \"..\"", ErrBadName, name)
		}
		if !more {
			break
		}
		rest = tail
	}
	return n, nil
}

func checkPerm(name string, perm uint32) error {
	if perm&^permMask != 0 {
		return fmt.Errorf("%w %q: mode %#o has bits outside the permission bits 07777", ErrBadEntry, name, perm)
	}
	return nil
}

// claim validates name, checks it is new and returns its stored form. The
// name is recorded only by commit, once the entry is written.
func (w *Writer) claim(name string) (string, error) {
	if w.err != nil {
		return "", w.err
	}
	n, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if _, dup := w.names[n]; dup {
		return "", fmt.Errorf("%w %q: already in the archive", ErrBadName, name)
	}
	return n, nil
}

// Dir writes a directory entry with permission bits perm (e.g. 0o755).
func (w *Writer) Dir(name string, perm uint32) error {
	n, err := w.claim(name)
	if err != nil {
		return err
	}
	if err := checkPerm(name, perm); err != nil {
		return err
	}
	return w.entry(n, modeDir|perm, 2, 0, 0, 0, nil, nil)
}

// MkdirAll writes directory entries (permission bits perm) for name and
// every parent of it that this archive does not hold yet. A parent that the
// archive holds as something other than a directory is an error.
func (w *Writer) MkdirAll(name string, perm uint32) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if err := checkPerm(name, perm); err != nil {
		return err
	}
	for i := 0; i <= len(n); i++ {
		if i < len(n) && n[i] != '/' {
			continue
		}
		if isDir, ok := w.names[n[:i]]; ok {
			if !isDir {
				return fmt.Errorf("%w %q: %q is already in the archive and is not a directory", ErrBadName, name, n[:i])
			}
			continue
		}
		if w.err != nil {
			return w.err
		}
		if err := w.entry(n[:i], modeDir|perm, 2, 0, 0, 0, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// File writes a regular file with permission bits perm and contents data.
func (w *Writer) File(name string, perm uint32, data []byte) error {
	n, err := w.claim(name)
	if err != nil {
		return err
	}
	if err := checkPerm(name, perm); err != nil {
		return err
	}
	if int64(len(data)) > MaxFileSize {
		return fmt.Errorf("%w %q: %d bytes, a newc entry holds at most %d", ErrBadEntry, name, len(data), int64(MaxFileSize))
	}
	return w.entry(n, modeRegular|perm, 1, 0, 0, int64(len(data)), data, nil)
}

// FileFrom writes a regular file of size bytes read from r. A reader that
// ends early breaks the archive (the header already promised size bytes).
func (w *Writer) FileFrom(name string, perm uint32, size int64, r io.Reader) error {
	n, err := w.claim(name)
	if err != nil {
		return err
	}
	if err := checkPerm(name, perm); err != nil {
		return err
	}
	if size < 0 || size > MaxFileSize {
		return fmt.Errorf("%w %q: size %d outside 0..%d", ErrBadEntry, name, size, int64(MaxFileSize))
	}
	if r == nil && size > 0 {
		return fmt.Errorf("%w %q: no reader for %d bytes", ErrBadEntry, name, size)
	}
	return w.entry(n, modeRegular|perm, 1, 0, 0, size, nil, r)
}

// Symlink writes a symbolic link name pointing to target. The target is
// stored as given (it may be relative and contain ".."), but must be
// non-empty, NUL-free and at most MaxNameLen bytes.
func (w *Writer) Symlink(name, target string) error {
	n, err := w.claim(name)
	if err != nil {
		return err
	}
	switch {
	case target == "":
		return fmt.Errorf("%w %q: empty symlink target", ErrBadName, name)
	case len(target) > MaxNameLen:
		return fmt.Errorf("%w %q: symlink target of %d bytes, at most %d", ErrBadName, name, len(target), MaxNameLen)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("%w %q: symlink target contains a NUL byte", ErrBadName, name)
	}
	return w.entry(n, modeSymlink|0o777, 1, 0, 0, int64(len(target)), []byte(target), nil)
}

// Device writes a device node with permission bits perm and device number
// major:minor (each at most 0xffffffff, the field's width; Linux uses 12 and
// 20 bits).
func (w *Writer) Device(name string, perm uint32, kind DeviceKind, major, minor uint32) error {
	n, err := w.claim(name)
	if err != nil {
		return err
	}
	if err := checkPerm(name, perm); err != nil {
		return err
	}
	var typ uint32
	switch kind {
	case CharDevice:
		typ = modeChar
	case BlockDevice:
		typ = modeBlock
	default:
		return fmt.Errorf("%w %q: unknown device kind %d", ErrBadEntry, name, kind)
	}
	return w.entry(n, typ|perm, 1, major, minor, 0, nil, nil)
}

// Close writes the trailer entry and the padding after it. The Writer
// accepts no entry afterwards; Close does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	w.ino = 0 // the trailer, like gen_init_cpio's, has inode 0
	if err := w.entry(trailerName, 0, 1, 0, 0, 0, nil, nil); err != nil {
		return err
	}
	w.err = ErrClosed
	return nil
}

// entry writes one validated entry: the header, the name, and the body from
// data or, when r is not nil, size bytes from r.
func (w *Writer) entry(name string, mode, nlink, rmajor, rminor uint32, size int64, data []byte, r io.Reader) error {
	nameSize := len(name) + 1
	hdr := align4(headerLen + nameSize)
	if cap(w.scratch) < hdr {
		w.scratch = make([]byte, hdr, max(hdr, 512))
	}
	b := w.scratch[:hdr]
	copy(b, newcMagic)
	fields := [13]uint32{
		w.ino, mode, 0, 0, nlink, w.mtime, uint32(size),
		0, 0, rmajor, rminor, uint32(nameSize), 0,
	}
	for i, v := range fields {
		putHex8(b[len(newcMagic)+8*i:], v)
	}
	copy(b[headerLen:], name)
	clear(b[headerLen+len(name):])
	if err := w.write(b); err != nil {
		return err
	}
	if r != nil {
		if err := w.copyFrom(name, size, r); err != nil {
			return err
		}
	} else if err := w.write(data); err != nil {
		return err
	}
	if pad := align4(int(size)) - int(size); pad > 0 {
		var zero [3]byte
		if err := w.write(zero[:pad]); err != nil {
			return err
		}
	}
	w.names[name] = mode&^permMask == modeDir
	w.ino++
	return nil
}

func (w *Writer) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("cpio archive broken at offset %d: %w", w.off, err)
		return w.err
	}
	return nil
}

// copyFrom copies exactly size bytes of r into the archive. A destination
// that reads for itself (BufferWriter: straight into its buffer; *os.File:
// copy_file_range or splice) gets the reader, limited to size bytes.
func (w *Writer) copyFrom(name string, size int64, r io.Reader) error {
	var n int64
	var err error
	if rf, ok := w.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(io.LimitReader(r, size))
		w.off += n
	} else {
		if w.copyBuf == nil {
			w.copyBuf = make([]byte, 64<<10)
		}
		for n < size && err == nil {
			var m int
			m, err = io.ReadFull(r, w.copyBuf[:min(size-n, int64(len(w.copyBuf)))])
			if werr := w.write(w.copyBuf[:m]); werr != nil {
				return werr
			}
			n += int64(m)
		}
	}
	if err == nil && n < size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		w.err = fmt.Errorf("%w %q: copied %d of the %d bytes announced: %w", ErrBadEntry, name, n, size, err)
		return w.err
	}
	return nil
}

func align4(n int) int { return (n + 3) &^ 3 }

const hexDigits = "0123456789ABCDEF"

// putHex8 writes v as 8 upper-case hex digits.
func putHex8(b []byte, v uint32) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// WriteUserInitrd copies a user's initrd (compressed or not) from r to dst
// and pads it with NUL bytes to a multiple of 4, so that a Writer on dst
// starts the next archive where the kernel accepts one: init/initramfs.c
// looks for an uncompressed archive's magic only at 4-byte aligned offsets
// of the whole initrd and skips NUL bytes between archives. It returns the
// bytes written, padding included.
func WriteUserInitrd(dst io.Writer, r io.Reader) (int64, error) {
	n, err := io.Copy(dst, r)
	if err != nil {
		return n, fmt.Errorf("copying the user initrd: %w", err)
	}
	if pad := (4 - n%4) % 4; pad > 0 {
		var zero [3]byte
		m, err := dst.Write(zero[:pad])
		n += int64(m)
		if err == nil && m < int(pad) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return n, fmt.Errorf("padding the user initrd: %w", err)
		}
	}
	return n, nil
}

// ErrBufferFull is what BufferWriter returns once its buffer is full.
var ErrBufferFull = errors.New("initramfs buffer full")

// BufferWriter is an io.Writer into a fixed byte slice (such as the guest
// memory reserved for the initrd), so an archive can be written in place.
type BufferWriter struct {
	buf []byte
	n   int
}

// NewBufferWriter returns a BufferWriter that fills buf from its start.
func NewBufferWriter(buf []byte) *BufferWriter { return &BufferWriter{buf: buf} }

// Write copies p after what was written before; what does not fit is not
// written and the error is ErrBufferFull.
func (b *BufferWriter) Write(p []byte) (int, error) {
	n := copy(b.buf[b.n:], p)
	b.n += n
	if n < len(p) {
		return n, fmt.Errorf("%w: %d bytes do not fit in %d", ErrBufferFull, len(p)-n, len(b.buf))
	}
	return n, nil
}

// ReadFrom reads r until EOF straight into the buffer, so a Writer copies a
// file's contents without an intermediate buffer. Data beyond the buffer's
// end is an ErrBufferFull error.
func (b *BufferWriter) ReadFrom(r io.Reader) (int64, error) {
	start := b.n
	for {
		if b.n == len(b.buf) {
			var probe [1]byte
			if m, _ := io.ReadFull(r, probe[:]); m > 0 {
				return int64(b.n - start), fmt.Errorf("%w: the data does not fit in %d bytes", ErrBufferFull, len(b.buf))
			}
			return int64(b.n - start), nil
		}
		m, err := r.Read(b.buf[b.n:])
		b.n += m
		if err == io.EOF {
			return int64(b.n - start), nil
		}
		if err != nil {
			return int64(b.n - start), err
		}
	}
}

// Len returns the number of bytes written.
func (b *BufferWriter) Len() int { return b.n }

// Bytes returns the written part of the buffer.
func (b *BufferWriter) Bytes() []byte { return b.buf[:b.n] }
