package tap

import (
	"encoding/binary"
	"errors"
)

// VnetHdrLen is the size of the header in front of every frame: struct
// virtio_net_hdr_v1 (flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset, num_buffers), the layout virtio-net uses with VERSION_1 or
// MRG_RXBUF. Multi-byte fields are little-endian.
const VnetHdrLen = 12

// Vnet header flags (VnetHdr.Flags).
const (
	// VnetHdrFNeedsCsum: the checksum at CsumStart+CsumOffset is partial
	// (covers the pseudo header only) and must be completed over the data
	// from CsumStart on.
	VnetHdrFNeedsCsum = 1
	// VnetHdrFDataValid: the checksum has been validated (receive side).
	VnetHdrFDataValid = 2
)

// Vnet header GSO types (VnetHdr.GSOType).
const (
	GSONone  = 0    // not a GSO frame
	GSOTCPv4 = 1    // TCP over IPv4, segment payloads of GSOSize bytes
	GSOUDP   = 3    // UFO: one UDP datagram fragmented at GSOSize
	GSOTCPv6 = 4    // TCP over IPv6
	GSOUDPL4 = 5    // USO: UDP segmentation (Linux 6.2+)
	GSOECN   = 0x80 // flag: the TCP segments may carry CWR
)

// VnetHdr is the decoded virtio-net header. The data path does not need it
// (the guest's header bytes go to the kernel as they are); it serves tests,
// tools, and a device that writes NumBuffers.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // bytes of Ethernet+IP+L4 headers (a hint)
	GSOSize    uint16 // payload bytes per segment
	CsumStart  uint16 // offset of the checksummed data from the frame start
	CsumOffset uint16 // offset of the checksum field from CsumStart
	NumBuffers uint16 // RX: buffers the frame spans (1 without MRG_RXBUF); the device sets it, the kernel does not
}

// errShortHdr is returned by ParseVnetHdr for fewer than VnetHdrLen bytes.
var errShortHdr = errors.New("tap: vnet header shorter than 12 bytes")

// ParseVnetHdr decodes the first VnetHdrLen bytes of b.
func ParseVnetHdr(b []byte) (VnetHdr, error) {
	if len(b) < VnetHdrLen {
		return VnetHdr{}, errShortHdr
	}
	le := binary.LittleEndian
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     le.Uint16(b[2:]),
		GSOSize:    le.Uint16(b[4:]),
		CsumStart:  le.Uint16(b[6:]),
		CsumOffset: le.Uint16(b[8:]),
		NumBuffers: le.Uint16(b[10:]),
	}, nil
}

// Put encodes h into the first VnetHdrLen bytes of b; it panics if b is
// shorter.
func (h *VnetHdr) Put(b []byte) {
	_ = b[VnetHdrLen-1]
	le := binary.LittleEndian
	b[0] = h.Flags
	b[1] = h.GSOType
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[10:], h.NumBuffers)
}

// hostLittleEndian reports the host byte order (for TUNSETVNETLE).
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
