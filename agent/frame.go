package agent

// Stdin framing. A one-port virtio-console device has no way to say
// "end of input" (the host cannot hang up a port without MULTIPORT's
// control queue), so the host sends the command's stdin in frames and
// the agent turns the empty frame into EOF on the command's stdin pipe:
//
//	frame = length (2 bytes, little endian, 0-MaxFrame) + length bytes
//	length 0 = end of input (nothing follows)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ReadyByte is what the agent writes to the stdin device once it has the
// port open in raw mode: the host sends nothing before it
// (virtio/console's InputAfterGuestWrite), because Linux's virtio_console
// drops input that reaches a one-port console before the port is set up,
// and bytes that reach the tty before raw mode would be cooked. The host
// discards what the guest writes to that port.
const ReadyByte = 0x06

// MaxFrame is the largest frame payload.
const MaxFrame = 4096

const frameHeader = 2

// FrameReader reads another reader's bytes as stdin frames (the host side:
// the virtio-console device for stdin reads from it). At the source's EOF
// or error it yields the end-of-input frame, then io.EOF.
type FrameReader struct {
	src  io.Reader
	buf  []byte // one encoded frame
	off  int    // how much of buf has been read
	done bool   // the end-of-input frame is in buf
}

// NewFrameReader frames src.
func NewFrameReader(src io.Reader) *FrameReader {
	return &FrameReader{src: src, buf: make([]byte, 0, frameHeader+MaxFrame)}
}

// Read implements io.Reader.
func (f *FrameReader) Read(p []byte) (int, error) {
	for f.off == len(f.buf) {
		if f.done {
			return 0, io.EOF
		}
		buf := f.buf[:frameHeader+MaxFrame]
		n, err := f.src.Read(buf[frameHeader:])
		binary.LittleEndian.PutUint16(buf, uint16(n))
		f.buf, f.off = buf[:frameHeader+n], 0
		if err != nil {
			if n > 0 {
				// This frame first, then the end-of-input frame.
				f.buf = append(f.buf, 0, 0)
			} else {
				f.buf = f.buf[:frameHeader]
			}
			f.done = true
		} else if n == 0 {
			f.buf = f.buf[:0] // an empty read is not the end: read again
		}
	}
	n := copy(p, f.buf[f.off:])
	f.off += n
	return n, nil
}

// errFrame is a frame the agent cannot decode.
var errFrame = errors.New("stdin: malformed frame")

// copyFrames writes the payloads of the frames read from src to dst until
// the end-of-input frame (nil), src's end before it (io.ErrUnexpectedEOF),
// or a malformed frame. A dst that stops accepting (the command closed its
// stdin) ends the copy with dst's error.
func copyFrames(dst io.Writer, src io.Reader) error {
	var hdr [frameHeader]byte
	buf := make([]byte, MaxFrame)
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return unexpected(err)
		}
		n := int(binary.LittleEndian.Uint16(hdr[:]))
		if n == 0 {
			return nil
		}
		if n > MaxFrame {
			return fmt.Errorf("%w: length %d above %d", errFrame, n, MaxFrame)
		}
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			return unexpected(err)
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return err
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
