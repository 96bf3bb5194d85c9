package vhostuser

// Ring state and the device's lifecycle behind vhost-user: when the
// rings a frontend programmed and enabled are all started, the device is
// activated with them (rings it disabled are left out); any change to a
// running ring, to the set of enabled rings, the memory table or the
// features first quiesces it (Device.Reset), saving each ring's next
// avail index (and, for a packed ring, its next used position), and
// restarts it afterwards. Split and packed (VIRTIO_F_RING_PACKED) rings
// are both served.

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// maxRetired bounds the call fds replaced while the device runs and kept
// open until the next reset (see activation.Signal). A frontend that
// swaps them more often than that gets a quick device restart instead.
const maxRetired = 16

// ring is one vring as the frontend programmed it.
type ring struct {
	q       *queue.Queue
	num     uint16 // SET_VRING_NUM; 0: not set (the maximum)
	addr    vringAddr
	addrSet bool
	base    uint16       // next avail index (packed: avail position) to start from
	used    uint16       // packed: next used position, if usedSet (else = base)
	usedSet bool         // packed: used was given (SET_VRING_BASE's upper half) or saved
	kick    *os.File     // non-nil: the ring is started
	enabled bool         // SET_VRING_ENABLE (matters with PROTOCOL_FEATURES)
	call    atomic.Int64 // a notifyFD
	errFD   notifyFD
}

// usedPos is a packed ring's next used position: the one SET_VRING_BASE
// gave or quiesce saved, else (a DPDK-style base of the avail half only,
// on a quiescent ring) the avail position.
func (r *ring) usedPos() uint16 {
	if r.usedSet {
		return r.used
	}
	return r.base
}

// programmed reports whether the frontend set this ring up (addresses or
// a kick); rings it never touches (an un-negotiated control queue) are
// left out of activation.
func (r *ring) programmed() bool { return r.addrSet || r.kick != nil }

func (s *session) ring(index uint32) (*ring, error) {
	if uint64(index) >= uint64(len(s.rings)) {
		return nil, fmt.Errorf("ring index %d out of range (the device has %d rings)", index, len(s.rings))
	}
	return &s.rings[index], nil
}

// protocolNegotiated reports whether the last SET_FEATURES kept
// VHOST_USER_F_PROTOCOL_FEATURES; only then do rings start disabled.
func (s *session) protocolNegotiated() bool { return s.features&(1<<FeatureProtocolFeatures) != 0 }

// quiesce stops the device if it runs: Device.Reset (which waits for the
// device's goroutines), then what each running ring's engine left pushed
// but unpublished is published (publishLeft), its next avail index is
// saved as its base (for a packed ring its next used position too: it
// has no used index in memory to re-read at restart, as a split ring's
// used->idx is) and its queue reset, and the retired call fds are
// closed. Rings keep their started/enabled state, so tryActivate resumes
// them where they stopped.
func (s *session) quiesce() {
	if s.act == nil {
		return
	}
	s.dev.Reset()
	s.act.dead.Store(true)
	s.act = nil
	for i := range s.rings {
		r := &s.rings[i]
		if r.q.Ready() {
			s.publishLeft(i)
			r.base = r.q.NextAvail()
			r.used, r.usedSet = r.q.NextUsed(), r.q.Packed()
		}
		r.q.Reset()
	}
	for _, fd := range s.retired {
		unix.Close(fd)
	}
	s.retired = s.retired[:0]
	s.log.Debug("vhost-user device stopped")
}

// publishLeft publishes the used entries ring i's queue holds pushed
// but unpublished after the device's reset, and notifies the driver if
// it asks for it. An engine leaves them so when its queue broke (or it
// faulted): under virtio-pci or MMIO the driver must then reset the
// device, which drops them anyway, but a vhost-user frontend may resume
// the ring at GET_VRING_BASE's position instead, and a packed ring's
// used position (saved with the base) must be one the driver saw: the
// driver reads used descriptors only from its own position on. Those
// buffers were completed (a frame sent, one received), so giving them
// back is right for a split ring too, whose restart reads the used index
// from memory. The frontend may have truncated its memory: a fault
// leaves them unpublished, as before.
func (s *session) publishLeft(i int) {
	r := &s.rings[i]
	err := faultSafe("publishing a stopped ring", func() error {
		if r.q.Publish() && r.q.NeedsInterrupt() {
			_ = notifyFD(r.call.Load()).signal() // best effort: the ring is stopping
		}
		return nil
	})
	if err != nil {
		s.limit.Log(s.log, slog.LevelWarn, "vhost-user ring stopped with completions unpublished", "ring", i, "err", err)
	}
}

// stopRing stops ring i (GET_VRING_BASE, or reprogramming a started
// ring): the device is quiesced if it runs on the ring, and the ring's
// kick fd closed, so it stays stopped until the next SET_VRING_KICK. A
// ring the device does not run on (the frontend disabled it) keeps its
// base, and the device keeps running on the others.
func (s *session) stopRing(i int) {
	if s.act != nil && s.act.rings[i] {
		s.quiesce()
	}
	r := &s.rings[i]
	if r.kick != nil {
		r.kick.Close()
		r.kick = nil
	}
}

// retireCall keeps a replaced call fd open while the device may still
// write it; too many of them restart the device, which releases them.
func (s *session) retireCall(fd int) error {
	if s.act == nil {
		unix.Close(fd)
		return nil
	}
	s.retired = append(s.retired, fd)
	if len(s.retired) < maxRetired {
		return nil
	}
	s.quiesce()
	return s.tryActivate()
}

// tryActivate starts the device on the rings the frontend programmed
// and enabled (every programmed ring, without PROTOCOL_FEATURES) once
// each of them is started and has addresses, and the memory table and
// features are set. A ring the frontend started but disabled is left
// out: the spec has it processed "without side effects", and QEMU starts
// the rings of every queue pair but enables only the pairs its guest
// uses. It returns an error only for a frontend fault (rings outside
// memory, refused features): the connection is then dropped. If the
// device itself refuses the rings (a required queue missing), it waits
// for more (logged at Debug only while some programmed ring is still
// disabled, as UML's are until it enables each in turn). A running
// device restarts when the set of rings changes (a ring enabled, or
// started, since it started), so the rings it runs on
// do not depend on the order the frontend started or enabled them in;
// it stops at once when a ring it runs on is disabled, even if another
// enabled ring still waits for its kick.
func (s *session) tryActivate() error {
	if s.mem == nil || !s.featuresSet || s.closed {
		return nil
	}
	set := make([]bool, len(s.rings))
	started, waiting, disabled := 0, false, false
	for i := range s.rings {
		r := &s.rings[i]
		if !r.programmed() {
			continue
		}
		if s.protocolNegotiated() && !r.enabled {
			disabled = true
			continue
		}
		if r.kick == nil || !r.addrSet {
			waiting = true // enabled, not started yet
			continue
		}
		set[i] = true
		started++
	}
	if !s.runsWithin(set) {
		s.quiesce() // a ring it runs on was disabled (all of them, maybe)
	}
	if waiting || started == 0 {
		return nil
	}
	if s.act != nil && slices.Equal(set, s.act.rings) {
		return nil
	}
	if s.act != nil {
		s.limit.Log(s.log, slog.LevelInfo, "vhost-user rings changed while the device runs; restarting it", "rings", started)
		s.quiesce()
	}
	neg := s.features &^ (1 << FeatureProtocolFeatures)
	queues := make([]virtio.Queue, len(s.rings))
	for i := range s.rings {
		r := &s.rings[i]
		if !set[i] {
			continue
		}
		if err := s.setupQueue(i, neg); err != nil {
			s.resetQueues()
			return err
		}
		queues[i] = virtio.Queue{Ring: r.q, Kick: r.kick}
	}
	if err := s.dev.AckFeatures(neg); err != nil {
		s.resetQueues()
		return fmt.Errorf("the device refused features %#x: %w", neg, err)
	}
	act := &activation{s: s, rings: set}
	start := s.dev.Activate
	if r, ok := s.dev.(virtio.Resumer); ok && s.resume {
		start = r.Resume
	}
	if err := start(s.mem.m, queues, act); err != nil {
		act.dead.Store(true)
		s.dev.Reset()
		s.resetQueues()
		if disabled {
			// UML enables its rings one by one: no log budget for each.
			s.log.Debug("vhost-user device not started yet; rings disabled", "started_rings", started, "reason", err)
			return nil
		}
		s.limit.Log(s.log, slog.LevelInfo, "vhost-user device not started yet", "started_rings", started, "reason", err)
		return nil
	}
	s.act = act
	s.activations++
	s.resume = true
	s.limit.Log(s.log, slog.LevelInfo, "vhost-user device started", "rings", started, "features", fmt.Sprintf("%#x", neg))
	return nil
}

// runsWithin reports whether the device is stopped or runs on rings
// that are all in set: a running ring leaves the set only when the
// frontend disables it (stopping or reprogramming one quiesces the
// device at once).
func (s *session) runsWithin(set []bool) bool {
	if s.act == nil {
		return true
	}
	for i, on := range s.act.rings {
		if on && !set[i] {
			return false
		}
	}
	return true
}

func (s *session) resetQueues() {
	for i := range s.rings {
		s.rings[i].q.Reset()
	}
}

// setupQueue programs ring i's queue: guest-physical addresses translated
// from the frontend's user addresses (each whole area inside one
// region), size, ring features and the positions to start from, then
// validates it against memory. A split ring has a descriptor table,
// avail and used rings; it starts at the base's avail index and the used
// index its used->idx holds now. A packed ring (RING_PACKED negotiated)
// has a descriptor ring and, at SET_VRING_ADDR's avail and used
// addresses, the driver and device event suppression areas (4 bytes
// each); it starts at the base's avail and used positions.
func (s *session) setupQueue(i int, neg uint64) error {
	r := &s.rings[i]
	n := r.num
	if n == 0 {
		n = r.q.MaxSize()
	}
	q := r.q
	q.Reset()
	packed := virtio.Has(neg, virtio.FeatureRingPacked)
	availBytes, usedBytes := queue.AvailRingBytes(n), queue.UsedRingBytes(n)
	if packed {
		availBytes, usedBytes = queue.PackedEventBytes, queue.PackedEventBytes
	}
	desc, ok1 := s.mem.userToGuest(r.addr.Desc, queue.DescTableBytes(n))
	avail, ok2 := s.mem.userToGuest(r.addr.Avail, availBytes)
	used, ok3 := s.mem.userToGuest(r.addr.Used, usedBytes)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("ring %d (size %d): desc %#x, avail %#x or used %#x is not inside the memory table",
			i, n, r.addr.Desc, r.addr.Avail, r.addr.Used)
	}
	if err := q.SetSize(n); err != nil {
		return fmt.Errorf("ring %d: %w", i, err)
	}
	if err := q.SetAddrs(desc, avail, used); err != nil {
		return fmt.Errorf("ring %d: %w", i, err)
	}
	if err := q.SetFeatures(neg); err != nil {
		return fmt.Errorf("ring %d: %w", i, err)
	}
	nextUsed := r.usedPos()
	if !packed {
		idx, err := s.mem.m.ReadU16(used + 2)
		if err != nil {
			return fmt.Errorf("ring %d: used index: %w", i, err)
		}
		nextUsed = idx
	}
	q.SetNextAvail(r.base)
	q.SetNextUsed(nextUsed)
	if err := q.Validate(s.mem.m); err != nil {
		return fmt.Errorf("ring %d: %w", i, err)
	}
	return nil
}

// fault stops the device after NeedsReset or a dead call pipe, from a
// goroutine of its own (the caller is a device goroutine, which
// Device.Reset waits for). Every ring is stopped and every err fd
// written; the frontend restarts rings with SET_VRING_KICK.
func (s *session) fault(a *activation, reason string, q int) {
	if a.faulted.Swap(true) {
		return
	}
	s.limit.Log(s.log, slog.LevelWarn, "vhost-user device stopped: "+reason, "ring", q)
	s.faults.Add(1)
	go func() {
		defer s.faults.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.act != a {
			return
		}
		for i := range s.rings {
			s.stopRing(i)
		}
		for i := range s.rings {
			_ = s.rings[i].errFD.signalRare() // best effort
		}
	}()
}
