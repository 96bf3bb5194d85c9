package vsock

// ring is a fixed byte buffer used as a FIFO between one producer and one
// consumer that hold the device's mutex while they move its indices but
// not while they copy: the producer fills only the free space and the
// consumer reads only the pending bytes, so each byte has one owner at a
// time.
type ring struct {
	buf  []byte
	head int // first pending byte
	n    int // pending bytes
}

func (r *ring) size() int { return len(r.buf) }
func (r *ring) free() int { return len(r.buf) - r.n }

// space returns the contiguous free bytes after the pending ones.
func (r *ring) space() []byte {
	if len(r.buf) == 0 {
		return nil
	}
	tail := (r.head + r.n) % len(r.buf)
	if tail < r.head || r.n == len(r.buf) {
		return r.buf[tail:r.head]
	}
	return r.buf[tail:]
}

// data returns the contiguous pending bytes from the head.
func (r *ring) data() []byte {
	end := r.head + r.n
	if end > len(r.buf) {
		end = len(r.buf)
	}
	return r.buf[r.head:end]
}

// produced commits k bytes written into space().
func (r *ring) produced(k int) { r.n += k }

// consumed drops k pending bytes from the head.
func (r *ring) consumed(k int) {
	r.head = (r.head + k) % len(r.buf)
	r.n -= k
	// head is not rewound when the ring empties: the producer may be
	// filling the space it computed after the old head.
}
