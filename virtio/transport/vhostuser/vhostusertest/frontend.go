package vhostusertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Request numbers, header flags and bits, written from the vhost-user
// specification independently of the backend under test.
const (
	GetFeatures         = 1
	SetFeatures         = 2
	SetOwner            = 3
	ResetOwner          = 4
	SetMemTable         = 5
	SetLogBase          = 6
	SetVringNum         = 8
	SetVringAddr        = 9
	SetVringBase        = 10
	GetVringBase        = 11
	SetVringKick        = 12
	SetVringCall        = 13
	SetVringErr         = 14
	GetProtocolFeatures = 15
	SetProtocolFeatures = 16
	GetQueueNum         = 17
	SetVringEnable      = 18
	SetBackendReqFD     = 21
	GetConfig           = 24
	SetConfig           = 25

	FlagVersion   = 1
	FlagReply     = 4
	FlagNeedReply = 8

	ProtocolFeatures   = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES
	ProtocolMQ         = 1 << 0
	ProtocolReplyAck   = 1 << 3
	ProtocolBackendReq = 1 << 5
	ProtocolConfig     = 1 << 9

	NoFD = 1 << 8 // the "invalid fd" bit of SET_VRING_KICK/CALL/ERR
)

var le = binary.LittleEndian

// Header is a message header as received.
type Header struct {
	Request, Flags, Size uint32
}

// Region is one SET_MEM_TABLE region.
type Region struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
	FD                                    int
}

// Frontend is the frontend end of a vhost-user connection.
type Frontend struct {
	Conn *net.UnixConn
	// ReplyAck sets NEED_REPLY on requests that have no reply of their
	// own and waits for the status (set it once REPLY_ACK is negotiated).
	ReplyAck bool
	// Timeout bounds each reply wait (default 5 s).
	Timeout time.Duration
}

// Dial connects to a backend listening at path.
func Dial(path string) (*Frontend, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return &Frontend{Conn: c}, nil
}

// Pair returns a connected frontend and the backend's end of a
// socketpair, for ServeConn.
func Pair() (*Frontend, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "vhost-user-pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	if a == nil || b == nil {
		return nil, nil, errors.New("vhostusertest: socketpair conns")
	}
	return &Frontend{Conn: a}, b, nil
}

// Close closes the connection.
func (f *Frontend) Close() error { return f.Conn.Close() }

// SendRaw writes b in one sendmsg with fds attached.
func (f *Frontend) SendRaw(b []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := f.Conn.WriteMsgUnix(b, oob, nil)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return err
}

// Message encodes a request.
func Message(req, flags uint32, payload []byte) []byte {
	b := make([]byte, 12+len(payload))
	le.PutUint32(b[0:], req)
	le.PutUint32(b[4:], flags|FlagVersion)
	le.PutUint32(b[8:], uint32(len(payload)))
	copy(b[12:], payload)
	return b
}

// Send sends a request (version flag added) with fds.
func (f *Frontend) Send(req, flags uint32, payload []byte, fds ...int) error {
	return f.SendRaw(Message(req, flags, payload), fds...)
}

// Recv reads one reply and checks that its flags are exactly
// VERSION|REPLY, as UML's frontend does.
func (f *Frontend) Recv() (Header, []byte, error) {
	t := f.Timeout
	if t == 0 {
		t = 5 * time.Second
	}
	f.Conn.SetReadDeadline(time.Now().Add(t))
	defer f.Conn.SetReadDeadline(time.Time{})
	var hb [12]byte
	if _, err := io.ReadFull(f.Conn, hb[:]); err != nil {
		return Header{}, nil, err
	}
	h := Header{le.Uint32(hb[0:]), le.Uint32(hb[4:]), le.Uint32(hb[8:])}
	if h.Flags != FlagVersion|FlagReply {
		return h, nil, fmt.Errorf("reply to %d has flags %#x", h.Request, h.Flags)
	}
	if h.Size > 4096 {
		return h, nil, fmt.Errorf("reply to %d has %d bytes", h.Request, h.Size)
	}
	p := make([]byte, h.Size)
	if _, err := io.ReadFull(f.Conn, p); err != nil {
		return h, nil, err
	}
	return h, p, nil
}

// Call sends a request that has a reply of its own and returns the
// reply's payload.
func (f *Frontend) Call(req uint32, payload []byte) ([]byte, error) {
	if err := f.Send(req, 0, payload); err != nil {
		return nil, err
	}
	h, p, err := f.Recv()
	if err != nil {
		return nil, err
	}
	if h.Request != req {
		return nil, fmt.Errorf("reply to %d for request %d", h.Request, req)
	}
	return p, nil
}

// Do sends a request without a reply of its own; with ReplyAck it asks
// for and checks the status.
func (f *Frontend) Do(req uint32, payload []byte, fds ...int) error {
	var flags uint32
	if f.ReplyAck {
		flags = FlagNeedReply
	}
	if err := f.Send(req, flags, payload, fds...); err != nil {
		return err
	}
	if !f.ReplyAck {
		return nil
	}
	h, p, err := f.Recv()
	if err != nil {
		return err
	}
	if h.Request != req || len(p) != 8 {
		return fmt.Errorf("ack for %d: request %d, %d bytes", req, h.Request, len(p))
	}
	if v := le.Uint64(p); v != 0 {
		return fmt.Errorf("request %d refused with status %d", req, v)
	}
	return nil
}

func u64(v uint64) []byte { b := make([]byte, 8); le.PutUint64(b, v); return b }

func state(i, n uint32) []byte {
	b := make([]byte, 8)
	le.PutUint32(b[0:], i)
	le.PutUint32(b[4:], n)
	return b
}

// GetU64 calls a request whose reply is one u64.
func (f *Frontend) GetU64(req uint32) (uint64, error) {
	p, err := f.Call(req, nil)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("request %d: %d-byte reply", req, len(p))
	}
	return le.Uint64(p), nil
}

// SetU64 sends a request carrying one u64.
func (f *Frontend) SetU64(req uint32, v uint64) error { return f.Do(req, u64(v)) }

// SetState sends SET_VRING_NUM, _BASE or _ENABLE.
func (f *Frontend) SetState(req uint32, index, num uint32) error { return f.Do(req, state(index, num)) }

// GetVringBase stops ring index and returns its next avail index.
func (f *Frontend) GetVringBase(index uint32) (uint32, error) {
	p, err := f.Call(GetVringBase, state(index, 0))
	if err != nil {
		return 0, err
	}
	if len(p) != 8 || le.Uint32(p) != index {
		return 0, fmt.Errorf("GET_VRING_BASE reply %x", p)
	}
	return le.Uint32(p[4:]), nil
}

// MemTable encodes SET_MEM_TABLE's payload for regions (padded to slots
// regions, as UML pads to its array size; 0 means len(regions)).
func MemTable(slots int, regions ...Region) []byte {
	if slots < len(regions) {
		slots = len(regions)
	}
	b := make([]byte, 8+32*slots)
	le.PutUint32(b, uint32(len(regions)))
	for i, r := range regions {
		o := b[8+32*i:]
		le.PutUint64(o[0:], r.GuestAddr)
		le.PutUint64(o[8:], r.Size)
		le.PutUint64(o[16:], r.UserAddr)
		le.PutUint64(o[24:], r.MmapOffset)
	}
	return b
}

// SetMemTable sends the regions with their fds.
func (f *Frontend) SetMemTable(regions ...Region) error {
	fds := make([]int, len(regions))
	for i, r := range regions {
		fds[i] = r.FD
	}
	return f.Do(SetMemTable, MemTable(0, regions...), fds...)
}

// VringAddr encodes SET_VRING_ADDR's payload (user addresses).
func VringAddr(index, flags uint32, desc, used, avail, log uint64) []byte {
	b := make([]byte, 40)
	le.PutUint32(b[0:], index)
	le.PutUint32(b[4:], flags)
	le.PutUint64(b[8:], desc)
	le.PutUint64(b[16:], used)
	le.PutUint64(b[24:], avail)
	le.PutUint64(b[32:], log)
	return b
}

// SetVringFD sends SET_VRING_KICK, _CALL or _ERR for ring index with fd,
// or with the NOFD bit when fd < 0.
func (f *Frontend) SetVringFD(req uint32, index uint32, fd int) error {
	if fd < 0 {
		return f.Do(req, u64(uint64(index)|NoFD))
	}
	return f.Do(req, u64(uint64(index)), fd)
}

// GetConfig reads size bytes of device config space at offset 0 through
// GET_CONFIG, as UML reads it (offset 0, size = offset+len of the field).
func (f *Frontend) GetConfig(offset, size uint32) ([]byte, error) {
	b := make([]byte, 12+size)
	le.PutUint32(b[0:], offset)
	le.PutUint32(b[4:], size)
	p, err := f.Call(GetConfig, b)
	if err != nil {
		return nil, err
	}
	if len(p) != len(b) || le.Uint32(p[4:]) != size {
		return nil, fmt.Errorf("GET_CONFIG reply of %d bytes", len(p))
	}
	return p[12:], nil
}
