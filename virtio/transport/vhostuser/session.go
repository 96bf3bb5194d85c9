package vhostuser

// One frontend connection: its negotiated state and the request handlers.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	"github.com/flintvm/flint/virtio/transport"
)

// session is the state of one frontend connection. Handlers run on the
// connection's goroutine with mu held; a fault (NeedsReset, dead call
// pipe) takes mu from its own goroutine.
type session struct {
	dev  virtio.Device
	log  *slog.Logger
	conn *msgConn // nil in tests that drive handle directly

	mu          sync.Mutex
	closed      bool
	owner       bool
	features    uint64 // last SET_FEATURES, VHOST_USER_F_PROTOCOL_FEATURES included
	featuresSet bool
	protocol    uint64 // SET_PROTOCOL_FEATURES
	mem         *memTable
	rings       []ring
	act         *activation // non-nil while the device runs
	activations int
	// resume: the device ran in this session and the guest's driver
	// has not reset it since, as far as the frontend tells (see
	// guestReset); its next start is a virtio.Resumer's Resume.
	resume   bool
	requests uint64 // requests read so far
	retired  []int  // call fds replaced while the device ran
	backend  backendChan
	faults   sync.WaitGroup
	// limit bounds the log lines a frontend (or the guest behind it) can
	// cause again and again: refused requests, ring restarts, device
	// starts and stops (issue 13 finding 3).
	limit transport.LogLimit
}

func newSession(dev virtio.Device, log *slog.Logger, conn *msgConn) (*session, error) {
	maxes := dev.QueueMaxSizes()
	s := &session{dev: dev, log: log, conn: conn, rings: make([]ring, len(maxes))}
	s.backend.fd = noFD
	for i, mx := range maxes {
		q, err := queue.New(mx)
		if err != nil {
			return nil, fmt.Errorf("vhost-user: %v device queue %d: %w", dev.Type(), i, err)
		}
		r := &s.rings[i]
		r.q, r.errFD = q, noFD
		r.call.Store(int64(noFD))
	}
	return s, nil
}

// nack is a request error that does not end the session: it is logged
// and, with REPLY_ACK, answered with a non-zero status.
type nack struct{ error }

// handle checks m's fds and runs its handler. A returned error ends the
// session. m's fds that the handler did not take are closed.
func (s *session) handle(m *message) error {
	defer m.close()
	want, err := wantFDs(m)
	if err != nil {
		return err
	}
	if len(m.fds) != want {
		return fmt.Errorf("%v: %d file descriptors, want %d", m.hdr.Request, len(m.fds), want)
	}
	// SET_MEM_TABLE's fds are checked and mapped before the lock is
	// taken: their fstat and fstatfs may ask a FUSE server that never
	// answers (see waitingFS), and nothing that takes the lock (a debug
	// dump's Snapshot, a device fault's stop) is to wait for it.
	var mt mapped
	if m.hdr.Request == ReqSetMemTable {
		mt = mapRequest(m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		mt.t.close()
		return errors.New("session closed")
	}
	err = s.dispatch(m, mt)
	// Decided after the request ran: UML already asks for an ack on the
	// SET_PROTOCOL_FEATURES that negotiates REPLY_ACK.
	ack := m.hdr.Flags&FlagNeedReply != 0 && s.protocol&(1<<ProtocolReplyAck) != 0 && !hasReply(m.hdr.Request)
	var soft nack
	if errors.As(err, &soft) {
		s.limit.Log(s.log, slog.LevelWarn, "vhost-user request refused", "request", m.hdr.Request, "err", soft.error)
		if ack {
			return s.replyU64(m.hdr.Request, 1)
		}
		return nil
	}
	if err != nil {
		if ack {
			s.replyU64(m.hdr.Request, 1) // best effort: the connection closes next
		}
		return err
	}
	if ack {
		return s.replyU64(m.hdr.Request, 0)
	}
	return nil
}

// wantFDs is the number of fds m's request must carry.
func wantFDs(m *message) (int, error) {
	switch m.hdr.Request {
	case ReqSetMemTable:
		n := le.Uint32(m.payload)
		if n == 0 || n > MaxRegions {
			return 0, fmt.Errorf("SET_MEM_TABLE: %d regions, want 1 to %d", n, MaxRegions)
		}
		return int(n), nil
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		v, err := decodeVringFD(m.hdr.Request, m.payload)
		if err != nil {
			return 0, err
		}
		if v.NoFD {
			return 0, nil
		}
		return 1, nil
	case ReqSetBackendReqFD:
		return 1, nil
	}
	return 0, nil
}

func (s *session) reply(r Request, p []byte) error {
	if s.conn == nil {
		return nil
	}
	return s.conn.reply(r, p)
}

func (s *session) replyU64(r Request, v uint64) error {
	var b [8]byte
	le.PutUint64(b[:], v)
	return s.reply(r, b[:])
}

func (s *session) dispatch(m *message, mt mapped) error {
	p := m.payload
	switch m.hdr.Request {
	case ReqGetFeatures:
		return s.replyU64(m.hdr.Request, s.offered()|1<<FeatureProtocolFeatures)
	case ReqSetFeatures:
		return s.setFeatures(le.Uint64(p))
	case ReqSetOwner:
		s.owner = true
		return nil
	case ReqResetOwner:
		// Deprecated; the spec recommends disabling all rings.
		s.guestReset()
		for i := range s.rings {
			s.stopRing(i)
		}
		return nil
	case ReqSetMemTable:
		return s.setMemTable(mt)
	case ReqSetVringNum, ReqSetVringBase, ReqGetVringBase, ReqSetVringEnable:
		return s.vringState(m.hdr.Request, decodeState(p))
	case ReqSetVringAddr:
		return s.setVringAddr(p)
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		return s.vringFD(m)
	case ReqGetProtocolFeatures:
		return s.replyU64(m.hdr.Request, OfferedProtocolFeatures)
	case ReqSetProtocolFeatures:
		v := le.Uint64(p)
		if extra := v &^ OfferedProtocolFeatures; extra != 0 {
			return fmt.Errorf("SET_PROTOCOL_FEATURES: %#x were not offered", extra)
		}
		s.protocol = v
		return nil
	case ReqGetQueueNum:
		return s.replyU64(m.hdr.Request, uint64(len(s.rings)))
	case ReqSetBackendReqFD:
		if s.protocol&(1<<ProtocolBackendReq) == 0 {
			return errors.New("SET_BACKEND_REQ_FD without the BACKEND_REQ protocol feature")
		}
		n, err := takeNotifyFD(m, false)
		if err != nil {
			return fmt.Errorf("SET_BACKEND_REQ_FD: %w", err)
		}
		s.backend.set(n)
		return nil
	case ReqGetConfig, ReqSetConfig:
		return s.config(m.hdr.Request, p)
	}
	return fmt.Errorf("%v: %w", m.hdr.Request, errUnknown) // checkSize let it through: a bug
}

// offered is what the backend offers the frontend: the device's
// features. VIRTIO_F_RING_PACKED among them only when the device offers
// it (net-backend: --packed on, off by default, since UML negotiates
// packed rings and then breaks them: SET_VRING_BASE 0, wrap counter 0).
func (s *session) offered() uint64 { return s.dev.Features() }

// packed reports whether the last SET_FEATURES negotiated packed rings.
func (s *session) packed() bool {
	return s.featuresSet && virtio.Has(s.features, virtio.FeatureRingPacked)
}

func (s *session) setFeatures(v uint64) error {
	offered := s.offered()
	if extra := v &^ (offered | 1<<FeatureProtocolFeatures); extra != 0 {
		return fmt.Errorf("SET_FEATURES %#x: %#x were not offered", v, extra)
	}
	neg, err := virtio.Negotiate(offered, v&^(1<<FeatureProtocolFeatures))
	if err != nil {
		return fmt.Errorf("SET_FEATURES: %w", err)
	}
	if s.featuresSet && v == s.features {
		return nil
	}
	if !s.featuresSet || (v^s.features)&^(1<<FeatureProtocolFeatures) != 0 {
		// A driver negotiates only after a reset; the protocol bit is
		// the frontend's own.
		s.guestReset()
	}
	s.quiesce()
	if err := s.dev.AckFeatures(neg); err != nil {
		return fmt.Errorf("SET_FEATURES: the device refused %#x: %w", neg, err)
	}
	s.features, s.featuresSet = v, true
	s.log.Debug("vhost-user features", "features", fmt.Sprintf("%#x", v))
	return s.tryActivate()
}

// mapped is a SET_MEM_TABLE's table as mapRequest mapped it, or why it
// could not be.
type mapped struct {
	t   *memTable
	err error
}

// mapRequest decodes and maps SET_MEM_TABLE m's regions. It runs
// without the session's lock (see handle).
func mapRequest(m *message) mapped {
	descs, err := decodeMemTable(m.payload, len(m.fds))
	if err != nil {
		return mapped{err: err}
	}
	t, err := mapMemTable(descs, m.fds)
	return mapped{t: t, err: err}
}

// setMemTable switches to the table mapRequest mapped: the device stops
// (quiesce), the old table is unmapped, and the device restarts on the
// new one when it can.
func (s *session) setMemTable(mt mapped) error {
	if mt.err != nil {
		return mt.err
	}
	t := mt.t
	s.quiesce()
	s.mem.close()
	s.mem = t
	s.limit.Log(s.log, slog.LevelInfo, "vhost-user memory table", "regions", len(t.regions), "bytes", t.size())
	return s.tryActivate()
}

func (s *session) vringState(req Request, st vringState) error {
	r, err := s.ring(st.Index)
	if err != nil {
		return fmt.Errorf("%v: %w", req, err)
	}
	if req != ReqSetVringEnable {
		s.guestReset()
	}
	switch req {
	case ReqSetVringNum:
		if max := uint32(r.q.MaxSize()); st.Num == 0 || st.Num > max || st.Num&(st.Num-1) != 0 {
			return fmt.Errorf("SET_VRING_NUM: ring %d size %d is not a power of two up to %d", st.Index, st.Num, max)
		}
		s.reprogram(r, st.Index, req)
		r.num = uint16(st.Num)
	case ReqSetVringBase:
		// Split: the next avail index. Packed (vhost-user spec): bits
		// 0-14 the next avail slot, bit 15 the avail wrap counter, bits
		// 16-30 the next used slot, bit 31 the used wrap counter, as
		// QEMU sends them (a fresh ring: 0x80008000). Upper 16 bits of 0
		// mean used = avail: DPDK-style frontends send the avail half
		// only, for a quiescent ring. (A used position of slot 0, wrap
		// 0 with avail elsewhere cannot be told from that; it is read
		// as used = avail too.)
		if st.Num > 0xffff && !s.packed() {
			return fmt.Errorf("SET_VRING_BASE: ring %d base %#x does not fit a split ring index", st.Index, st.Num)
		}
		s.reprogram(r, st.Index, req)
		r.base, r.used, r.usedSet = uint16(st.Num), uint16(st.Num>>16), st.Num>>16 != 0
	case ReqGetVringBase:
		s.stopRing(int(st.Index))
		var b [stateSize]byte
		encodeState(b[:], vringState{Index: st.Index, Num: s.vringBase(r)})
		return s.reply(req, b[:])
	case ReqSetVringEnable:
		if st.Num > 1 {
			return fmt.Errorf("SET_VRING_ENABLE: ring %d: %d is not 0 or 1", st.Index, st.Num)
		}
		// The device restarts only if the set of enabled rings changed
		// (QEMU repeats these for every queue-pair change).
		r.enabled = st.Num == 1
		return s.tryActivate()
	}
	return nil
}

// guestReset notes that the frontend stopped or reprogrammed a ring
// (GET_VRING_BASE, SET_VRING_NUM, _BASE, _ADDR; QEMU stops every ring
// for its guest's reset, UML sets each ring up again when its guest's
// driver binds), renegotiated the device's features (a driver can only
// after a reset) or reset its ownership: the guest's driver starts over,
// and so does the device at its next start (Activate, not Resume). A
// restart for the rest (a new memory table, a kick fd replaced, the
// rings restarted after a fault, a change of the enabled rings or of
// the frontend's own feature bits) resumes the device as the driver
// left it.
func (s *session) guestReset() { s.resume = false }

// vringBase is GET_VRING_BASE's answer for a stopped ring: split, the
// next avail index; packed, the next avail position | the next used
// position<<16 (each slot | wrap counter<<15).
func (s *session) vringBase(r *ring) uint32 {
	if s.packed() {
		return uint32(r.base) | uint32(r.usedPos())<<16
	}
	return uint32(r.base)
}

// reprogram stops a started ring before its size, addresses or base
// change. QEMU stops rings first (GET_VRING_BASE); UML never does, and
// reprograms rings it dropped when its driver is rebound.
func (s *session) reprogram(r *ring, index uint32, req Request) {
	if r.kick != nil {
		s.limit.Log(s.log, slog.LevelInfo, "vhost-user ring reprogrammed while started; stopping it", "ring", index, "request", req)
		s.stopRing(int(index))
	}
}

func (s *session) setVringAddr(p []byte) error {
	a, err := decodeAddr(p)
	if err != nil {
		return err
	}
	r, err := s.ring(a.Index)
	if err != nil {
		return fmt.Errorf("SET_VRING_ADDR: %w", err)
	}
	if s.mem != nil {
		for _, ua := range []uint64{a.Desc, a.Avail, a.Used} {
			if _, ok := s.mem.userToGuest(ua, 1); !ok {
				return fmt.Errorf("SET_VRING_ADDR: ring %d address %#x is outside the memory table", a.Index, ua)
			}
		}
	}
	s.guestReset()
	s.reprogram(r, a.Index, ReqSetVringAddr)
	r.addr, r.addrSet = a, true
	return nil
}

func (s *session) vringFD(m *message) error {
	req := m.hdr.Request
	v, _ := decodeVringFD(req, m.payload) // checked by wantFDs
	r, err := s.ring(uint32(v.Index))
	if err != nil {
		return fmt.Errorf("%v: %w", req, err)
	}
	n := noFD
	if !v.NoFD {
		if n, err = takeNotifyFD(m, req == ReqSetVringKick); err != nil {
			return fmt.Errorf("%v: ring %d: %w", req, v.Index, err)
		}
	}
	switch req {
	case ReqSetVringKick:
		if !n.valid() {
			return fmt.Errorf("SET_VRING_KICK: ring %d without an fd (polling) is not supported", v.Index)
		}
		if r.kick != nil {
			s.stopRing(int(v.Index))
		}
		r.kick = os.NewFile(uintptr(n.fd()), fmt.Sprintf("vhost-user-kick%d", v.Index))
		return s.tryActivate()
	case ReqSetVringCall:
		if old := notifyFD(r.call.Swap(int64(n))); old.valid() {
			return s.retireCall(old.fd())
		}
	case ReqSetVringErr:
		r.errFD.close()
		r.errFD = n
	}
	return nil
}

// takeNotifyFD takes m's fd as a call, err, kick or backend-channel fd:
// an eventfd, pipe or unix socket (checkNotifyFD), made non-blocking. A
// kick fd must be an eventfd (the spec's kind, QEMU's and UML's): the
// device's engine reads a pipe or socket, and a frontend that clears the
// O_NONBLOCK of the file it shares makes that read block where neither
// the device's reset nor the runtime can stop it (the whole backend
// freezes at the next garbage collection), while an eventfd kick is
// never read (virtio's kickReader). On error the fd is closed.
func takeNotifyFD(m *message, kick bool) (notifyFD, error) {
	fd := m.take(0)
	kind, err := checkNotifyFD(fd)
	if err == nil && kick && kind != kindEventfd {
		err = fmt.Errorf("%v is not an eventfd: kick fds must be", kind)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return noFD, err
	}
	return newNotifyFD(fd, kind == kindSocket), nil
}

func (s *session) config(req Request, p []byte) error {
	if s.protocol&(1<<ProtocolConfig) == 0 {
		return fmt.Errorf("%v without the CONFIG protocol feature", req)
	}
	c, err := decodeConfig(req, p)
	if err != nil {
		return err
	}
	size := uint64(s.dev.ConfigSize())
	if req == ReqSetConfig {
		if uint64(c.Offset) > size || uint64(c.Size) > size-uint64(c.Offset) {
			return nack{fmt.Errorf("SET_CONFIG [%d, +%d) outside the %d-byte config space", c.Offset, c.Size, size)}
		}
		s.dev.WriteConfig(uint64(c.Offset), c.Data)
		return nil
	}
	// The reply echoes the request with the bytes filled in; past the
	// device's config space they read as zero.
	clear(c.Data)
	if uint64(c.Offset) < size {
		n := min(uint64(c.Size), size-uint64(c.Offset))
		s.dev.ReadConfig(uint64(c.Offset), c.Data[:n])
	}
	return s.reply(req, p)
}

// end tears the session down: the device is reset (even if it never
// ran, to drop negotiated features), every fd closed, memory unmapped.
func (s *session) end() {
	s.mu.Lock()
	s.closed = true
	s.quiesce()
	s.dev.Reset()
	for i := range s.rings {
		r := &s.rings[i]
		if r.kick != nil {
			r.kick.Close()
			r.kick = nil
		}
		notifyFD(r.call.Swap(int64(noFD))).close()
		r.errFD.close()
		r.errFD = noFD
		r.q.Reset()
	}
	s.backend.close()
	s.mem.close()
	s.mem = nil
	s.mu.Unlock()
	s.faults.Wait()
}
