package queue

// Ring words for debug dumps.

import (
	"log/slog"
	"strconv"
)

// RingState is a queue's shared ring words as they are in guest memory
// at one moment, for debug dumps of a stalled device: what the driver
// made available and asked for (avail.idx, avail.flags, used_event), and
// what the device published and asked for (used.idx, used.flags,
// avail_event). Each word is read with its own sequentially consistent
// load; the set is not one atomic snapshot.
type RingState struct {
	// Size is the queue size; Ready whether the queue was validated (all
	// the words below are zero when it is not).
	Size  uint16
	Ready bool
	// EventIdx reports whether VIRTIO_F_RING_EVENT_IDX is in use: then
	// UsedEvent and AvailEvent are what suppresses notifications, else
	// the NO_INTERRUPT and NO_NOTIFY flags are.
	EventIdx bool
	// AvailIdx and AvailFlags are the driver's avail.idx and avail.flags
	// (bit 0: VIRTQ_AVAIL_F_NO_INTERRUPT); UsedEvent is used_event, the
	// avail ring's tail.
	AvailIdx, AvailFlags, UsedEvent uint16
	// UsedIdx and UsedFlags are the device's used.idx and used.flags
	// (bit 0: VIRTQ_USED_F_NO_NOTIFY); AvailEvent is avail_event, the
	// used ring's tail.
	UsedIdx, UsedFlags, AvailEvent uint16
	// Packed reports a packed ring: then there are no avail.idx and
	// used.idx (both 0), AvailFlags and UsedEvent are the driver event
	// suppression's flags and off_wrap, UsedFlags and AvailEvent the
	// device's.
	Packed bool
	// For a packed ring, the descriptors the two off_wraps point at:
	// AvailAtDeviceEvent reports whether the descriptor at the device
	// event's off_wrap slot (AvailEvent) is available for that off_wrap's
	// wrap counter (a kick is owed if the device asked for one there:
	// DeviceEventDesc, and its engine waits for a kick); UsedAtDriverEvent
	// whether the descriptor at the driver event's off_wrap slot
	// (UsedEvent) is used for its wrap counter (with the driver's flags
	// DriverEventDesc, an interrupt is owed). Both are false when the
	// off_wrap's slot is outside the ring.
	AvailAtDeviceEvent, UsedAtDriverEvent bool
}

// Packed event suppression flags values (struct pvirtq_event_suppress):
// the low two bits of AvailFlags (the driver's) and UsedFlags (the
// device's) of a packed RingState.
const (
	EventFlagsEnable  = ringEventEnable
	EventFlagsDisable = ringEventDisable
	EventFlagsDesc    = ringEventDesc
)

// PackedPos formats a packed ring position (bits 0-14 the slot, bit 15
// the wrap counter) as "slot/wN": 0x8040 is "64/w1".
func PackedPos(p uint16) string {
	w := "/w0"
	if p&posWrap != 0 {
		w = "/w1"
	}
	return strconv.Itoa(int(p&^posWrap)) + w
}

// isUsed reports whether a descriptor with flags f is used for wrap
// counter w (0 or posWrap): AVAIL and USED both equal the wrap counter.
func isUsed(f, w uint16) bool {
	a, u := f&pdescFAvail != 0, f&pdescFUsed != 0
	return a == u && u == (w != 0)
}

// NoInterrupt reports VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks for no
// used-buffer notifications (meaningful without EventIdx).
func (s RingState) NoInterrupt() bool { return s.AvailFlags&availFNoInterrupt != 0 }

// NoNotify reports VIRTQ_USED_F_NO_NOTIFY: the device asks the driver not
// to kick (meaningful without EventIdx).
func (s RingState) NoNotify() bool { return s.UsedFlags&usedFNoNotify != 0 }

// LogValue implements slog.LogValuer: the words as key=value attributes,
// used_event and avail_event only with EventIdx.
func (s RingState) LogValue() slog.Value {
	return slog.GroupValue(s.Attrs()...)
}

// Attrs returns the words as slog attributes: size, ready, avail_idx,
// used_idx, no_interrupt, no_notify, and with EventIdx used_event and
// avail_event (the flags are still shown: a driver may set them anyway).
func (s RingState) Attrs() []slog.Attr {
	a := make([]slog.Attr, 0, 10)
	a = append(a, slog.Int("size", int(s.Size)), slog.Bool("ready", s.Ready))
	if !s.Ready {
		return a
	}
	if s.Packed {
		return append(a, slog.Bool("packed", true),
			slog.Int("driver_event_flags", int(s.AvailFlags)), slog.String("driver_off_wrap", PackedPos(s.UsedEvent)),
			slog.Bool("used_at_driver_event", s.UsedAtDriverEvent),
			slog.Int("device_event_flags", int(s.UsedFlags)), slog.String("device_off_wrap", PackedPos(s.AvailEvent)),
			slog.Bool("avail_at_device_event", s.AvailAtDeviceEvent))
	}
	a = append(a,
		slog.Int("avail_idx", int(s.AvailIdx)), slog.Int("used_idx", int(s.UsedIdx)),
		slog.Bool("no_interrupt", s.NoInterrupt()), slog.Bool("no_notify", s.NoNotify()),
		slog.Bool("event_idx", s.EventIdx))
	if s.EventIdx {
		a = append(a, slog.Int("used_event", int(s.UsedEvent)), slog.Int("avail_event", int(s.AvailEvent)))
	}
	return a
}

// RingState reads the ring words from guest memory. Unlike the rest of
// Queue it may be called from another goroutine than the device's, but
// only while the queue's configuration cannot change and its memory
// stays mapped: with the transport's lock that serialises Validate and
// Reset held (transport.Core's). It reads only fields the transport
// writes (size, features, the word handles) and the shared words
// themselves (for a packed ring also the flags of the descriptors at the
// two off_wraps, through the per-slot handles Validate built), never the
// device's running state, so it races with neither the device nor the
// driver. A queue that is not ready reports its size and Ready false.
func (q *Queue) RingState() RingState {
	s := RingState{Size: q.size, Ready: q.ready, EventIdx: q.eventIdx, Packed: q.packed}
	if !q.ready {
		return s
	}
	if q.packed {
		s.AvailFlags, s.UsedEvent = q.pk.drvFlags.Load(), q.pk.drvOffWrap.Load()
		s.UsedFlags, s.AvailEvent = q.pk.devFlags.Load(), q.pk.devOffWrap.Load()
		if i := s.AvailEvent &^ posWrap; i < q.size {
			s.AvailAtDeviceEvent = isAvail(q.pk.flags[i].Load(), s.AvailEvent&posWrap)
		}
		if i := s.UsedEvent &^ posWrap; i < q.size {
			s.UsedAtDriverEvent = isUsed(q.pk.flags[i].Load(), s.UsedEvent&posWrap)
		}
		return s
	}
	s.AvailIdx, s.AvailFlags, s.UsedEvent = q.availIdx.Load(), q.availFlags.Load(), q.usedEvent.Load()
	s.UsedIdx, s.UsedFlags, s.AvailEvent = q.usedIdxW.Load(), q.usedFlagsW.Load(), q.availEvent.Load()
	return s
}
