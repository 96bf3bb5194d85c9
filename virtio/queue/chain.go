package queue

import "golang.org/x/sys/unix"

// Chain is one popped descriptor chain: the buffers the driver made
// available under one head index, as views into guest memory.
//
// The caller owns a Chain and reuses it across Pop calls: Pop truncates the
// slices to zero length and appends, so once they have grown to the
// largest chain seen, popping allocates nothing. The segments alias guest
// memory: they stay valid (in bounds) until the memory is closed, but the
// driver may reuse the buffers as soon as the chain is returned with Push
// and Publish, so the device must not touch them afterwards.
type Chain struct {
	// Head is the chain's head descriptor index, the id to Push when the
	// device is done with it.
	Head uint16
	// Readable holds the device-readable buffers (driver -> device), in
	// chain order. No segment is empty.
	Readable [][]byte
	// Writable holds the device-writable buffers (device -> driver), in
	// chain order. No segment is empty.
	Writable [][]byte
	// ReadLen and WriteLen are the total bytes in Readable and Writable.
	ReadLen, WriteLen uint32
	// Indirect reports that the chain used an indirect descriptor table.
	Indirect bool

	descs int // descriptors visited, for the TTL invariant in tests
	riov  []unix.Iovec
	wiov  []unix.Iovec
}

// Reset empties the chain, keeping its capacity.
func (c *Chain) Reset() {
	clear(c.Readable) // drop references to guest memory
	clear(c.Writable)
	c.Head = 0
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	c.ReadLen, c.WriteLen = 0, 0
	c.Indirect = false
	c.descs = 0
}

// ReadableIovecs returns the readable segments as an iovec array for
// writev(2) (device reads guest memory, writes to the backend). The array
// is owned by the chain and rebuilt on each call; it is valid until the
// chain is popped into again.
func (c *Chain) ReadableIovecs() []unix.Iovec {
	c.riov = fillIovecs(c.riov[:0], c.Readable)
	return c.riov
}

// WritableIovecs returns the writable segments as an iovec array for
// readv(2) (backend data lands directly in guest memory); see
// ReadableIovecs.
func (c *Chain) WritableIovecs() []unix.Iovec {
	c.wiov = fillIovecs(c.wiov[:0], c.Writable)
	return c.wiov
}

// fillIovecs appends one iovec per segment. Segments are never empty, so
// &s[0] is valid; an Iovec's Base is an ordinary Go pointer into guest
// memory (mmap'd, or a Go slice in tests, which the pointer keeps alive),
// so no unsafe code is needed to build the array.
func fillIovecs(dst []unix.Iovec, segs [][]byte) []unix.Iovec {
	for _, s := range segs {
		if len(s) == 0 {
			continue
		}
		v := unix.Iovec{Base: &s[0]}
		v.SetLen(len(s))
		dst = append(dst, v)
	}
	return dst
}

// AppendIovecs appends to dst iovecs for bytes [off, off+n) of the
// concatenation of segs (a chain's buffers, in order), up to max
// entries in dst, for preadv/pwritev straight between a file and guest
// memory. It skips empty segments and does not allocate beyond dst's
// capacity.
func AppendIovecs(dst []unix.Iovec, segs [][]byte, off, n uint64, limit int) []unix.Iovec {
	for i, s := seek(segs, off); s != nil && n > 0 && len(dst) < limit; i, s = next(segs, i) {
		if uint64(len(s)) > n {
			s = s[:n]
		}
		if len(s) == 0 {
			continue
		}
		v := unix.Iovec{Base: &s[0]}
		v.SetLen(len(s))
		dst = append(dst, v)
		n -= uint64(len(s))
	}
	return dst
}

// seek finds the byte off bytes into the concatenation of segs: it
// returns the index of its segment and the rest of that segment from it
// (nil, past the end).
func seek(segs [][]byte, off uint64) (int, []byte) {
	for i, s := range segs {
		if off < uint64(len(s)) {
			return i, s[off:]
		}
		off -= uint64(len(s))
	}
	return len(segs), nil
}

// next is the segment after segs[i] (nil after the last).
func next(segs [][]byte, i int) (int, []byte) {
	if i++; i < len(segs) {
		return i, segs[i]
	}
	return i, nil
}

// ReadAt copies readable bytes of the chain, starting off bytes into the
// chain's readable data, into p. It returns the number of bytes copied,
// less than len(p) when the readable data ends first. Use it for headers
// that may be split across buffers (the virtio-net header).
func (c *Chain) ReadAt(p []byte, off uint64) int {
	return CopySegs(p, c.Readable, off, false)
}

// WriteAt copies p into the chain's writable buffers, starting off bytes
// into them, and returns the number of bytes written (less than len(p)
// when the writable space ends first).
func (c *Chain) WriteAt(p []byte, off uint64) int {
	return CopySegs(p, c.Writable, off, true)
}

// CopySegs copies between p and the bytes of segs (a chain's buffers, in
// order), starting off bytes into their concatenation: into segs if
// toSegs, else out of them into p. It returns the number of bytes copied,
// less than len(p) when segs end first. It does not allocate.
func CopySegs(p []byte, segs [][]byte, off uint64, toSegs bool) int {
	i, s := seek(segs, off)
	done := 0
	for s != nil && done < len(p) {
		if toSegs {
			done += copy(s, p[done:])
		} else {
			done += copy(p[done:], s)
		}
		i, s = next(segs, i)
	}
	return done
}
