package vsock

// The virtio-vsock packet header (virtio 1.2 §5.10.6): its layout, and
// the one decoder every guest packet goes through.

import (
	"encoding/binary"
	"errors"
)

// HeaderLen is the size of struct virtio_vsock_hdr: src_cid le64,
// dst_cid le64, src_port le32, dst_port le32, len le32, type le16, op
// le16, flags le32, buf_alloc le32, fwd_cnt le32.
const HeaderLen = 44

// HostCID is the host's context ID (VMADDR_CID_HOST): the only peer a
// guest of Flint reaches.
const HostCID = 2

// MinGuestCID is the smallest CID a guest may have (0-2 are reserved).
const MinGuestCID = 3

// MaxPayload is the largest payload one packet may carry: Linux's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE (64 KiB); a guest packet claiming more
// is malformed.
const MaxPayload = 64 << 10

// TypeStream is VIRTIO_VSOCK_TYPE_STREAM, the only socket type Flint
// offers (no VIRTIO_VSOCK_F_SEQPACKET).
const TypeStream = 1

// Op is a packet's operation.
type Op uint16

// Operations (VIRTIO_VSOCK_OP_*).
const (
	OpInvalid       Op = 0
	OpRequest       Op = 1
	OpResponse      Op = 2
	OpRST           Op = 3
	OpShutdown      Op = 4
	OpRW            Op = 5
	OpCreditUpdate  Op = 6
	OpCreditRequest Op = 7
)

// Shutdown flags (VIRTIO_VSOCK_SHUTDOWN_*): the sender will receive or
// send no more.
const (
	ShutdownRcv  = 1
	ShutdownSend = 2
	shutdownBoth = ShutdownRcv | ShutdownSend
)

// Header is a decoded packet header.
type Header struct {
	SrcCID, DstCID   uint64
	SrcPort, DstPort uint32
	Len              uint32
	Type             uint16
	Op               Op
	Flags            uint32
	BufAlloc         uint32
	FwdCnt           uint32
}

// Errors of ParseHeader: each makes the device answer with RST (unless
// the packet is itself an RST) and drop the packet.
var (
	ErrShort    = errors.New("vsock: packet shorter than its header")
	ErrLen      = errors.New("vsock: len exceeds the packet's buffers or 64 KiB")
	ErrPayload  = errors.New("vsock: payload on an operation that carries none")
	ErrType     = errors.New("vsock: socket type is not STREAM")
	ErrOp       = errors.New("vsock: unknown operation")
	ErrSrcCID   = errors.New("vsock: src_cid is not the guest's CID")
	ErrDstCID   = errors.New("vsock: dst_cid is not the host")
	ErrFlags    = errors.New("vsock: flags set on an operation that has none, or unknown shutdown flags")
	ErrZeroPort = errors.New("vsock: port 0") // never chosen by Linux; reserved here for "no connection"
)

// ParseHeader decodes the header at the start of b (a copy of the first
// HeaderLen bytes of a transmit chain) and checks every field against a
// guest whose CID is guestCID and whose chain holds avail readable
// bytes in all: the payload length fits the chain and MaxPayload, only
// RW carries a payload, the type is STREAM, the operation is known, the
// CIDs are the guest's and the host's, flags only on SHUTDOWN (RCV and
// SEND only), no port is 0. On error the Header is still filled as far
// as it could be read, so the caller can address an RST to its sender.
// It does not allocate.
func ParseHeader(b []byte, avail uint32, guestCID uint64) (Header, error) {
	var h Header
	if len(b) < HeaderLen || avail < HeaderLen {
		return h, ErrShort
	}
	le := binary.LittleEndian
	h = Header{
		SrcCID: le.Uint64(b[0:]), DstCID: le.Uint64(b[8:]),
		SrcPort: le.Uint32(b[16:]), DstPort: le.Uint32(b[20:]),
		Len: le.Uint32(b[24:]), Type: le.Uint16(b[28:]), Op: Op(le.Uint16(b[30:])),
		Flags: le.Uint32(b[32:]), BufAlloc: le.Uint32(b[36:]), FwdCnt: le.Uint32(b[40:]),
	}
	switch {
	case h.Len > avail-HeaderLen || h.Len > MaxPayload:
		return h, ErrLen
	case h.Op != OpRW && h.Len != 0:
		return h, ErrPayload
	case h.Op == OpInvalid || h.Op > OpCreditRequest:
		return h, ErrOp
	case h.Type != TypeStream:
		return h, ErrType
	case h.SrcCID != guestCID:
		return h, ErrSrcCID
	case h.DstCID != HostCID:
		return h, ErrDstCID
	case h.Op == OpShutdown && h.Flags&^shutdownBoth != 0, h.Op != OpShutdown && h.Flags != 0:
		return h, ErrFlags
	case h.SrcPort == 0 || h.DstPort == 0:
		return h, ErrZeroPort
	}
	return h, nil
}

// Put writes h into b[:HeaderLen] (b must hold it).
func (h *Header) Put(b []byte) {
	le := binary.LittleEndian
	_ = b[HeaderLen-1]
	le.PutUint64(b[0:], h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], h.Type)
	le.PutUint16(b[30:], uint16(h.Op))
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
}
