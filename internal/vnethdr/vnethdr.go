// Package vnethdr is the virtio-net header, struct virtio_net_hdr_v1: the
// 12 bytes in front of every frame that both ends of Flint's data path
// speak, the virtio-net device (virtio/netdev) with the guest and the TAP
// (net/tap, opened with IFF_VNET_HDR and TUNSETVNETHDRSZ 12) with the host
// kernel. Defined once here so the two cannot drift. Multi-byte fields are
// little-endian (VERSION_1; net/tap sets TUNSETVNETLE).
//
// The data path does not decode headers (the guest's bytes reach the kernel
// as they are); it uses the constants. Header, Parse and Put serve tests,
// tools and checks.
package vnethdr

import (
	"encoding/binary"
	"errors"
)

// Len is the header's size: flags u8, gso_type u8, then hdr_len, gso_size,
// csum_start, csum_offset and num_buffers as le16.
const Len = 12

// NumBuffersOffset is where num_buffers sits, the one field the device
// fills on receive (mergeable buffers); the kernel leaves it alone.
const NumBuffersOffset = 10

// Header flags (virtio 1.2 §5.1.6).
const (
	// FNeedsCsum: the checksum at CsumStart+CsumOffset is partial (covers
	// the pseudo header only) and must be completed over the data from
	// CsumStart on.
	FNeedsCsum = 1
	// FDataValid: the checksum has been validated (receive side).
	FDataValid = 2
)

// GSO types (Header.GSOType).
const (
	GSONone  = 0    // not a GSO frame
	GSOTCPv4 = 1    // TCP over IPv4, segment payloads of GSOSize bytes
	GSOUDP   = 3    // UFO: one UDP datagram fragmented at GSOSize
	GSOTCPv6 = 4    // TCP over IPv6
	GSOUDPL4 = 5    // USO: UDP segmentation (Linux 6.2+)
	GSOECN   = 0x80 // flag: the TCP segments may carry CWR
)

// Header is a decoded virtio-net header.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // bytes of Ethernet+IP+L4 headers (a hint)
	GSOSize    uint16 // payload bytes per segment
	CsumStart  uint16 // offset of the checksummed data from the frame start
	CsumOffset uint16 // offset of the checksum field from CsumStart
	NumBuffers uint16 // RX: buffers the frame spans (1 without MRG_RXBUF)
}

// ErrShort is returned by Parse for fewer than Len bytes.
var ErrShort = errors.New("vnet header shorter than 12 bytes")

// Parse decodes the first Len bytes of b.
func Parse(b []byte) (Header, error) {
	if len(b) < Len {
		return Header{}, ErrShort
	}
	le := binary.LittleEndian
	return Header{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     le.Uint16(b[2:]),
		GSOSize:    le.Uint16(b[4:]),
		CsumStart:  le.Uint16(b[6:]),
		CsumOffset: le.Uint16(b[8:]),
		NumBuffers: le.Uint16(b[NumBuffersOffset:]),
	}, nil
}

// Put encodes h into the first Len bytes of b; it panics if b is shorter
// (a caller's bug: every frame buffer starts with room for the header).
func (h *Header) Put(b []byte) {
	_ = b[Len-1]
	le := binary.LittleEndian
	b[0] = h.Flags
	b[1] = h.GSOType
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[NumBuffersOffset:], h.NumBuffers)
}
