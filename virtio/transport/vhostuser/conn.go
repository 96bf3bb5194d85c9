package vhostuser

// Message framing on the unix socket: a header, a payload bounded by its
// request, and the SCM_RIGHTS file descriptors that came with them.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// msgTimeout bounds how long the rest of a message may take once its
// first byte arrived, and how long a reply may wait for socket space: a
// frontend that stalls mid-message or stops reading replies is dropped
// instead of holding the backend forever. Between messages a frontend may
// stay silent indefinitely (UML does, once its rings run).
var msgTimeout = 10 * time.Second

// message is one received request. fds are owned by the message until a
// handler takes one (setting its slot to -1); close releases the rest.
type message struct {
	hdr     header
	payload []byte
	fds     []int
}

// take returns fds[i] and gives up the message's ownership of it.
func (m *message) take(i int) int {
	fd := m.fds[i]
	m.fds[i] = -1
	return fd
}

func (m *message) close() {
	for i, fd := range m.fds {
		if fd >= 0 {
			unix.Close(fd)
			m.fds[i] = -1
		}
	}
	m.fds = m.fds[:0]
}

// msgConn reads requests and writes replies on one frontend connection.
type msgConn struct {
	uc  *net.UnixConn
	hdr [HeaderSize]byte
	buf [MaxPayload]byte
	oob []byte
	out [HeaderSize + MaxPayload]byte
	fds []int
}

// newMsgConn wraps uc. The control buffer has room for MaxFDs fds: a
// message with more is truncated by the kernel (MSG_CTRUNC, the excess
// closed by it) and refused. Go receives fds close-on-exec.
func newMsgConn(uc *net.UnixConn) *msgConn {
	return &msgConn{uc: uc, oob: make([]byte, unix.CmsgSpace(4*MaxFDs))}
}

// errEOF reports a frontend that closed the connection between messages.
var errEOF = errors.New("frontend closed the connection")

// next reads one request into m (reusing its buffers). The header is
// checked (flags, a payload size that fits its request) before the
// payload is read. On error every fd received is closed.
func (c *msgConn) next(m *message) error {
	m.close()
	c.fds = c.fds[:0]
	err := c.readMsg(m)
	if err != nil {
		for _, fd := range c.fds {
			unix.Close(fd)
		}
		c.fds = c.fds[:0]
		return err
	}
	m.fds = append(m.fds[:0], c.fds...)
	return nil
}

func (c *msgConn) readMsg(m *message) error {
	n, err := c.readFull(c.hdr[:], true)
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return errEOF
		}
		return fmt.Errorf("reading a header (%d of %d bytes): %w", n, HeaderSize, err)
	}
	defer c.uc.SetReadDeadline(time.Time{})
	h, err := parseHeader(c.hdr[:])
	if err != nil {
		return err
	}
	if err := checkSize(h); err != nil {
		return err
	}
	m.hdr = h
	m.payload = c.buf[:h.Size]
	if n, err := c.readFull(m.payload, false); err != nil {
		return fmt.Errorf("%v: reading the payload (%d of %d bytes): %w", h.Request, n, h.Size, err)
	}
	return nil
}

// readFull fills b, collecting any fds that arrive with its bytes. The
// first read of a message waits without a deadline; after the first byte
// the rest must come within msgTimeout.
func (c *msgConn) readFull(b []byte, first bool) (int, error) {
	if !first {
		c.uc.SetReadDeadline(time.Now().Add(msgTimeout))
	}
	got := 0
	for got < len(b) {
		n, oobn, flags, _, err := c.uc.ReadMsgUnix(b[got:], c.oob)
		if oobn > 0 {
			if perr := c.parseRights(c.oob[:oobn]); perr != nil {
				return got, perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return got, fmt.Errorf("more than %d file descriptors in one message", MaxFDs)
		}
		got += n
		if err != nil {
			return got, err
		}
		if n == 0 {
			return got, io.EOF
		}
		if got > 0 && first {
			first = false
			c.uc.SetReadDeadline(time.Now().Add(msgTimeout))
		}
	}
	return got, nil
}

// parseRights takes the fds of every SCM_RIGHTS message in oob.
func (c *msgConn) parseRights(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	var bad error
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			if bad == nil {
				bad = fmt.Errorf("unexpected control message level %d type %d", msgs[i].Header.Level, msgs[i].Header.Type)
			}
			continue
		}
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fmt.Errorf("SCM_RIGHTS: %w", err)
		}
		c.fds = append(c.fds, fds...)
	}
	if bad == nil && len(c.fds) > MaxFDs {
		bad = fmt.Errorf("more than %d file descriptors in one message", MaxFDs)
	}
	return bad
}

// reply sends a reply to request r: the header (flags VERSION|REPLY, as
// strict frontends such as UML require exactly) and payload.
func (c *msgConn) reply(r Request, payload []byte) error {
	putHeader(c.out[:], header{Request: r, Flags: FlagVersion | FlagReply, Size: uint32(len(payload))})
	n := copy(c.out[HeaderSize:], payload)
	c.uc.SetWriteDeadline(time.Now().Add(msgTimeout))
	defer c.uc.SetWriteDeadline(time.Time{})
	if _, err := c.uc.Write(c.out[:HeaderSize+n]); err != nil {
		return fmt.Errorf("%v: sending the reply: %w", r, err)
	}
	return nil
}
