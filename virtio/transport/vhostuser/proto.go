package vhostuser

// The vhost-user wire format (QEMU docs/interop/vhost-user.rst): message
// header, request numbers, flags, protocol feature bits, and decoders for
// every payload this backend accepts. Decoding is pure (no I/O, no fds),
// so the fuzz target exercises all of it.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Request is a vhost-user front-end request number.
type Request uint32

// Front-end requests. Those this backend does not implement (logging,
// IOTLB, postcopy, inflight tracking, memory slots, RARP, NET_SET_MTU...)
// are refused as unknown: their protocol features are never offered, so
// a frontend that sends them is broken.
const (
	ReqGetFeatures         Request = 1
	ReqSetFeatures         Request = 2
	ReqSetOwner            Request = 3
	ReqResetOwner          Request = 4
	ReqSetMemTable         Request = 5
	ReqSetVringNum         Request = 8
	ReqSetVringAddr        Request = 9
	ReqSetVringBase        Request = 10
	ReqGetVringBase        Request = 11
	ReqSetVringKick        Request = 12
	ReqSetVringCall        Request = 13
	ReqSetVringErr         Request = 14
	ReqGetProtocolFeatures Request = 15
	ReqSetProtocolFeatures Request = 16
	ReqGetQueueNum         Request = 17
	ReqSetVringEnable      Request = 18
	ReqSetBackendReqFD     Request = 21
	ReqGetConfig           Request = 24
	ReqSetConfig           Request = 25
)

// backendConfigChange is VHOST_USER_BACKEND_CONFIG_CHANGE_MSG (formerly
// SLAVE_CONFIG_CHANGE_MSG), sent on the backend channel.
const backendConfigChange = 2

var requestNames = map[Request]string{
	ReqGetFeatures: "GET_FEATURES", ReqSetFeatures: "SET_FEATURES", ReqSetOwner: "SET_OWNER",
	ReqResetOwner: "RESET_OWNER", ReqSetMemTable: "SET_MEM_TABLE", ReqSetVringNum: "SET_VRING_NUM",
	ReqSetVringAddr: "SET_VRING_ADDR", ReqSetVringBase: "SET_VRING_BASE", ReqGetVringBase: "GET_VRING_BASE",
	ReqSetVringKick: "SET_VRING_KICK", ReqSetVringCall: "SET_VRING_CALL", ReqSetVringErr: "SET_VRING_ERR",
	ReqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", ReqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	ReqGetQueueNum: "GET_QUEUE_NUM", ReqSetVringEnable: "SET_VRING_ENABLE",
	ReqSetBackendReqFD: "SET_BACKEND_REQ_FD", ReqGetConfig: "GET_CONFIG", ReqSetConfig: "SET_CONFIG",
}

// String names the request, e.g. "SET_MEM_TABLE".
func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("request-%d", uint32(r))
}

// header flags.
const (
	// FlagVersion is the protocol version in the flags' low two bits.
	FlagVersion uint32 = 0x1
	// FlagReply marks a reply (back-end to front-end).
	FlagReply uint32 = 0x4
	// FlagNeedReply asks for a REPLY_ACK status reply.
	FlagNeedReply uint32 = 0x8

	versionMask uint32 = 0x3
)

// FeatureProtocolFeatures is VHOST_USER_F_PROTOCOL_FEATURES, the feature
// bit (30) GET_FEATURES sets next to the device's virtio features.
const FeatureProtocolFeatures = 30

// Protocol feature bits (VHOST_USER_PROTOCOL_F_*).
const (
	ProtocolMQ         = 0
	ProtocolReplyAck   = 3
	ProtocolBackendReq = 5 // SLAVE_REQ: the backend channel
	ProtocolConfig     = 9
)

// OfferedProtocolFeatures are the protocol features this backend offers,
// each implemented fully: MQ (GET_QUEUE_NUM answers the device's number
// of rings, e.g. 2N+1 for a virtio-net device with N queue pairs and a
// control queue; ring indices from 0 to that minus one are accepted,
// others refused), REPLY_ACK (a u64 status for any request sent with
// NEED_REPLY), BACKEND_REQ (a channel for config-change notifications)
// and CONFIG (GET_CONFIG/SET_CONFIG). The device serves every ring it
// has, the control queue included: a frontend that keeps a virtio-net
// control queue to itself (QEMU's vhost-user-net) is not served.
const OfferedProtocolFeatures uint64 = 1<<ProtocolMQ | 1<<ProtocolReplyAck | 1<<ProtocolBackendReq | 1<<ProtocolConfig

// Sizes and limits.
const (
	// HeaderSize is the size of a message header.
	HeaderSize = 12
	// MaxRegions is the most memory regions SET_MEM_TABLE may carry
	// (VHOST_MEMORY_BASELINE_NREGIONS).
	MaxRegions = 8
	// MaxConfigSize is the largest configuration access GET_CONFIG and
	// SET_CONFIG may carry (VHOST_USER_MAX_CONFIG_SIZE).
	MaxConfigSize = 256
	// MaxFDs is the most file descriptors one message may carry.
	MaxFDs = MaxRegions
	// MaxPayload is the largest payload any accepted request has
	// (GET_CONFIG with MaxConfigSize bytes).
	MaxPayload = configHdrSize + MaxConfigSize

	regionSize    = 32 // guest_phys_addr, memory_size, userspace_addr, mmap_offset
	memHdrSize    = 8  // nregions u32, padding u32
	stateSize     = 8  // index u32, num u32
	addrSize      = 40 // index, flags u32; desc, used, avail, log u64
	u64Size       = 8
	configHdrSize = 12 // offset, size, flags u32

	// vringFDIndexMask and vringNoFD split the u64 of SET_VRING_KICK,
	// _CALL and _ERR: ring index in bits 0-7, "no fd" in bit 8.
	vringFDIndexMask = 0xff
	vringNoFD        = 1 << 8

	// vringFLog is VHOST_VRING_F_LOG in SET_VRING_ADDR's flags.
	vringFLog = 1
)

// header is a vhost-user message header. All fields are in host byte
// order (little-endian on every platform Flint supports).
type header struct {
	Request Request
	Flags   uint32
	Size    uint32
}

var le = binary.LittleEndian

// parseHeader decodes a request header and checks its flags: version 1,
// no REPLY bit, no unknown bits.
func parseHeader(b []byte) (header, error) {
	if len(b) < HeaderSize {
		return header{}, fmt.Errorf("short header (%d bytes)", len(b))
	}
	h := header{Request: Request(le.Uint32(b[0:])), Flags: le.Uint32(b[4:]), Size: le.Uint32(b[8:])}
	if v := h.Flags & versionMask; v != FlagVersion {
		return h, fmt.Errorf("%v: protocol version %d, want 1", h.Request, v)
	}
	if h.Flags&FlagReply != 0 {
		return h, fmt.Errorf("%v: request has the REPLY flag", h.Request)
	}
	if extra := h.Flags &^ (versionMask | FlagNeedReply); extra != 0 {
		return h, fmt.Errorf("%v: unknown header flags %#x", h.Request, extra)
	}
	return h, nil
}

func putHeader(b []byte, h header) {
	le.PutUint32(b[0:], uint32(h.Request))
	le.PutUint32(b[4:], h.Flags)
	le.PutUint32(b[8:], h.Size)
}

// errUnknown is wrapped by checkSize for requests this backend refuses.
var errUnknown = errors.New("unknown or unsupported request")

// checkSize checks a header's payload size against what its request
// carries, before the payload is read. It bounds every read by
// MaxPayload.
func checkSize(h header) error {
	want := -1 // exact size, or -1 when the request has a range
	switch h.Request {
	case ReqGetFeatures, ReqSetOwner, ReqResetOwner, ReqGetProtocolFeatures, ReqGetQueueNum, ReqSetBackendReqFD:
		want = 0
	case ReqSetFeatures, ReqSetProtocolFeatures, ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		want = u64Size
	case ReqSetVringNum, ReqSetVringBase, ReqGetVringBase, ReqSetVringEnable:
		want = stateSize
	case ReqSetVringAddr:
		want = addrSize
	case ReqSetMemTable:
		// Frontends differ: QEMU sends only the regions in use, UML its
		// whole (2-region) array. Accept any whole number of regions up to
		// MaxRegions; decodeMemTable checks nregions against it.
		n := int64(h.Size) - memHdrSize
		if n < regionSize || n > MaxRegions*regionSize || n%regionSize != 0 {
			return fmt.Errorf("%v: payload of %d bytes is not a memory table of 1 to %d regions", h.Request, h.Size, MaxRegions)
		}
		return nil
	case ReqGetConfig, ReqSetConfig:
		if h.Size < configHdrSize || h.Size > MaxPayload {
			return fmt.Errorf("%v: payload of %d bytes, want %d to %d", h.Request, h.Size, configHdrSize, MaxPayload)
		}
		return nil
	default:
		return fmt.Errorf("%v (flags %#x, %d bytes): %w", h.Request, h.Flags, h.Size, errUnknown)
	}
	if int64(h.Size) != int64(want) {
		return fmt.Errorf("%v: payload of %d bytes, want %d", h.Request, h.Size, want)
	}
	return nil
}

// hasReply reports whether the request always has a reply of its own, so
// that NEED_REPLY adds nothing.
func hasReply(r Request) bool {
	switch r {
	case ReqGetFeatures, ReqGetProtocolFeatures, ReqGetVringBase, ReqGetQueueNum, ReqGetConfig:
		return true
	}
	return false
}

// vringState is the payload of SET_VRING_NUM, _BASE, _ENABLE and
// GET_VRING_BASE.
type vringState struct {
	Index, Num uint32
}

func decodeState(p []byte) vringState {
	return vringState{Index: le.Uint32(p[0:]), Num: le.Uint32(p[4:])}
}

func encodeState(b []byte, s vringState) {
	le.PutUint32(b[0:], s.Index)
	le.PutUint32(b[4:], s.Num)
}

// vringAddr is SET_VRING_ADDR's payload: frontend user addresses.
type vringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

func decodeAddr(p []byte) (vringAddr, error) {
	a := vringAddr{
		Index: le.Uint32(p[0:]), Flags: le.Uint32(p[4:]),
		Desc: le.Uint64(p[8:]), Used: le.Uint64(p[16:]), Avail: le.Uint64(p[24:]), Log: le.Uint64(p[32:]),
	}
	if a.Flags&vringFLog != 0 {
		return a, fmt.Errorf("SET_VRING_ADDR: ring %d asks for dirty logging, which was not negotiated", a.Index)
	}
	if a.Flags != 0 {
		return a, fmt.Errorf("SET_VRING_ADDR: ring %d has unknown flags %#x", a.Index, a.Flags)
	}
	return a, nil
}

// vringFD is the u64 of SET_VRING_KICK, _CALL and _ERR.
type vringFD struct {
	Index int
	NoFD  bool
}

func decodeVringFD(r Request, p []byte) (vringFD, error) {
	v := le.Uint64(p)
	if extra := v &^ (vringFDIndexMask | vringNoFD); extra != 0 {
		return vringFD{}, fmt.Errorf("%v: unknown bits %#x in %#x", r, extra, v)
	}
	return vringFD{Index: int(v & vringFDIndexMask), NoFD: v&vringNoFD != 0}, nil
}

// memRegionDesc is one region of SET_MEM_TABLE.
type memRegionDesc struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

// decodeMemTable decodes SET_MEM_TABLE's payload (size already checked by
// checkSize) and checks the table itself: nregions in [1, MaxRegions]
// and within the payload, one fd per region, no empty region, no region
// wrapping the guest, user or file offset space, and no two regions
// overlapping in guest or user addresses.
func decodeMemTable(p []byte, nfds int) ([]memRegionDesc, error) {
	n := le.Uint32(p[0:])
	if n == 0 || n > MaxRegions || uint64(n) > uint64(len(p)-memHdrSize)/regionSize {
		return nil, fmt.Errorf("SET_MEM_TABLE: %d regions in a %d-byte payload", n, len(p))
	}
	if int(n) != nfds {
		return nil, fmt.Errorf("SET_MEM_TABLE: %d regions but %d fds", n, nfds)
	}
	rs := make([]memRegionDesc, n)
	for i := range rs {
		b := p[memHdrSize+regionSize*i:]
		r := memRegionDesc{GuestAddr: le.Uint64(b[0:]), Size: le.Uint64(b[8:]), UserAddr: le.Uint64(b[16:]), MmapOffset: le.Uint64(b[24:])}
		switch {
		case r.Size == 0:
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d is empty", i)
		case r.GuestAddr+r.Size < r.GuestAddr || r.UserAddr+r.Size < r.UserAddr || r.MmapOffset+r.Size < r.MmapOffset:
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d (%#x bytes) wraps an address space", i, r.Size)
		case r.Size > maxRegionBytes:
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d of %#x bytes is larger than %#x", i, r.Size, uint64(maxRegionBytes))
		}
		for j := range i {
			o := rs[j]
			if overlap(r.GuestAddr, r.Size, o.GuestAddr, o.Size) {
				return nil, fmt.Errorf("SET_MEM_TABLE: regions %d and %d overlap in guest addresses", j, i)
			}
			if overlap(r.UserAddr, r.Size, o.UserAddr, o.Size) {
				return nil, fmt.Errorf("SET_MEM_TABLE: regions %d and %d overlap in user addresses", j, i)
			}
		}
		rs[i] = r
	}
	return rs, nil
}

// maxRegionBytes bounds one region (1 TiB, mem.MaxSize).
const maxRegionBytes = 1 << 40

func overlap(a, an, b, bn uint64) bool { return a < b+bn && b < a+an }

// configAccess is the payload of GET_CONFIG and SET_CONFIG.
type configAccess struct {
	Offset, Size, Flags uint32
	Data                []byte
}

func decodeConfig(r Request, p []byte) (configAccess, error) {
	c := configAccess{Offset: le.Uint32(p[0:]), Size: le.Uint32(p[4:]), Flags: le.Uint32(p[8:]), Data: p[configHdrSize:]}
	if uint64(c.Size) != uint64(len(c.Data)) || c.Size > MaxConfigSize {
		return c, fmt.Errorf("%v: config size %d in a %d-byte payload", r, c.Size, len(p))
	}
	if c.Flags > 1 {
		return c, fmt.Errorf("%v: unknown config flags %#x", r, c.Flags)
	}
	return c, nil
}
