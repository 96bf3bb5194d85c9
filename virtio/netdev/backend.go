package netdev

import (
	"time"

	"github.com/flintvm/flint/internal/vnethdr"
)

// HdrLen is the size of the virtio-net header in front of every packet,
// in both directions (internal/vnethdr, shared with net/tap): VERSION_1
// devices always use this 12-byte layout.
const HdrLen = vnethdr.Len

// Backend is the host side of the device: a packet source and sink that
// speaks the 12-byte virtio-net header in front of every frame, as a
// Linux TAP opened with IFF_VNET_HDR and TUNSETVNETHDRSZ 12 does. The
// device passes the guest's headers through untouched on transmit and
// the backend's headers through on receive (it only fills num_buffers,
// which the kernel leaves alone, and clears flags the driver did not
// negotiate).
//
// *tap.Queue (package net/tap) satisfies Backend as it is. Tests use an
// in-memory fake or a socketpair.
//
// The device calls the read-side methods from its RX goroutine and the
// write-side methods from its TX goroutine, concurrently; the deadline
// setters come from the goroutine that calls Device.Reset. Data-path
// calls must not allocate; errors should be bare unix.Errno values or
// the os sentinels named below.
type Backend interface {
	// TryReadv reads one frame (header first) into iovs without
	// blocking: it returns the frame's length, or unix.EAGAIN when no
	// frame is queued. A frame longer than iovs is truncated to them.
	TryReadv(iovs [][]byte) (int, error)

	// WaitReadable blocks until a frame can be read, the read deadline
	// passes (os.ErrDeadlineExceeded) or the backend is closed
	// (os.ErrClosed); it reads nothing.
	WaitReadable() error

	// Writev sends one frame (header first) gathered from iovs. It may
	// block until the backend accepts it (then the write deadline
	// interrupts it with os.ErrDeadlineExceeded) or return unix.EAGAIN,
	// after which the device calls WaitWritable and retries. Any other
	// error drops this frame only.
	Writev(iovs [][]byte) (int, error)

	// WaitWritable blocks until a write would be accepted, the write
	// deadline passes or the backend is closed.
	WaitWritable() error

	// SetReadDeadline and SetWriteDeadline interrupt WaitReadable and
	// Writev/WaitWritable: a time in the past wakes blocked calls at
	// once, the zero time clears the deadline. Device.Reset uses them to
	// stop its goroutines; Activate clears them. While the device is
	// active it owns the deadlines: nobody else may set them.
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// ReadvParker is a Backend that can read a frame or park in one call
// (*tap.Queue can), so that the RX engine's wait for the backend costs no
// system call besides the readv that finds nothing: the device uses it
// instead of TryReadv and WaitReadable when its backend has it.
type ReadvParker interface {
	// ReadvOrPark reads one frame into iovs as TryReadv does. When none
	// is queued it calls idle (the device publishes what it delivered,
	// signals the driver and gives its held buffers back: iovs must not
	// be used after idle), then parks as WaitReadable does and returns
	// parked with nothing read, with WaitReadable's error: nil when a
	// frame can be read now. A frame that arrives after the readv found
	// nothing, idle included, must end the park. idle runs on the
	// caller's goroutine and never calls the read side.
	ReadvOrPark(iovs [][]byte, idle func()) (n int, parked bool, err error)
}

// OffloadFunc applies the receive offloads the driver accepted to the
// backend. features is the whole negotiated feature word (bit n =
// feature n): the GUEST_* bits say which partially checksummed and GSO
// packets the backend may hand to the guest. For a TAP this is
// TUNSETOFFLOAD with tap.OffloadsForGuest(features). The device calls it
// from AckFeatures on every negotiation and with 0 from Reset.
type OffloadFunc func(features uint64) error
