package vmm

// Device state in dumps (SIGUSR1, --timeout): for every virtio device one
// line with its transport's state (status, ISR, interrupt mode, MSI-X) and
// one line per queue with the ring words as they are in guest memory and
// what the device's engine for that queue is doing. Together they show
// which side of a stalled transfer waits for which notification.

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/flintvm/flint/kvm"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	"github.com/flintvm/flint/virtio/transport"
)

// virtioDev is one virtio device of the VM, for dumps.
type virtioDev struct {
	typ   virtio.DeviceID
	name  string // net0, block0...
	ident []any  // slog key-value pairs: tap=, drive=
	t     virtioTransport
}

// logDeviceState logs every virtio device's state and the devices'
// counters, at warn (a dump is asked for). why prefixes the messages
// ("dump"). It does nothing once Close has started: the transports and
// guest memory are going away.
func (m *Machine) logDeviceState(why string) {
	m.dumpMu.Lock()
	defer m.dumpMu.Unlock()
	if m.devicesClosed {
		return
	}
	for _, d := range m.virtio {
		logVirtioSnapshot(m.log, why, d.name, d.ident, d.t.Snapshot())
	}
	m.logNetStats(why)
	for i, d := range m.drives {
		logDriveStats(m.log, slog.LevelWarn, why, m.driveIDs[i], d)
	}
}

// logCounters logs a device's counters, every one its Stats names, after
// the key-value pairs ident: one line per device for dumps and exits.
func logCounters(log *slog.Logger, level slog.Level, msg string, counters []virtio.Counter, ident ...any) {
	attrs := make([]slog.Attr, 0, len(ident)/2+len(counters))
	for i := 0; i+1 < len(ident); i += 2 {
		attrs = append(attrs, slog.Any(fmt.Sprint(ident[i]), ident[i+1]))
	}
	for _, c := range counters {
		attrs = append(attrs, slog.Uint64(c.Name, *c.Value))
	}
	log.LogAttrs(context.Background(), level, msg, attrs...)
}

// logVirtioSnapshot logs one device's snapshot: a "virtio device" line
// and a "virtio queue" line per queue, each starting with dev=name and
// ident.
func logVirtioSnapshot(log *slog.Logger, why, name string, ident []any, s transport.Snapshot) {
	ctx := context.Background()
	head := make([]slog.Attr, 0, 4)
	head = append(head, slog.String("dev", name))
	for i := 0; i+1 < len(ident); i += 2 {
		head = append(head, slog.Any(fmt.Sprint(ident[i]), ident[i+1]))
	}
	head = append(head, slog.String("transport", s.Kind))
	log.LogAttrs(ctx, slog.LevelWarn, why+": virtio device", append(head[:len(head):len(head)], deviceAttrs(s)...)...)
	for _, q := range s.Queues {
		log.LogAttrs(ctx, slog.LevelWarn, why+": virtio queue", append(head[:len(head):len(head)], queueAttrs(s, q)...)...)
	}
}

// deviceAttrs is a snapshot's transport-wide state: status, features,
// whether the device runs, the ISR bits and the interrupt mode: edge or
// level for MMIO (with a level line, whether it is asserted); for PCI
// whether MSI-X or INTx is in use, the MSI-X enable and function mask,
// the config vector and every table entry's mask and pending bits.
func deviceAttrs(s transport.Snapshot) []slog.Attr {
	a := []slog.Attr{
		slog.String("type", s.Device.String()),
		slog.String("status", s.Status.String()),
		slog.String("features", hex(s.Features)),
		slog.Bool("active", s.Active),
	}
	if s.Busy {
		a = append(a, slog.Bool("busy", true))
	}
	if s.Kind == "vhost-user" {
		return a // no ISR, no interrupt lines: the frontend's call eventfds
	}
	a = append(a, slog.String("isr", hex(uint64(s.ISR))), slog.Uint64("guest_errors", s.GuestErrors))
	switch {
	case s.MSIX != nil && s.MSIX.Enabled:
		a = append(a, slog.String("irq", "msix"))
	case s.Level:
		a = append(a, slog.String("irq", "level"), slog.Bool("line_asserted", s.LineAsserted))
	default:
		a = append(a, slog.String("irq", "edge"))
	}
	if x := s.MSIX; x != nil {
		a = append(a,
			slog.Bool("msix_enabled", x.Enabled), slog.Bool("function_mask", x.FunctionMask),
			slog.String("config_vector", vectorName(x.ConfigVector)),
			slog.String("vectors", vectorsString(x.Vectors)))
	}
	return a
}

// queueAttrs is one queue's line: index and name, the ring words, the
// engine's state, and the queue's interrupt: the ISR bits, and for PCI its
// MSI-X vector with that vector's mask and pending bits. For a split ring
// it says how many buffers the driver made available beyond the engine's
// last_avail (avail_pending); a packed ring has no avail.idx, so instead
// its positions are slot/wrap and it says whether a kick or an interrupt
// is owed (packedOwed).
func queueAttrs(s transport.Snapshot, q transport.QueueSnapshot) []slog.Attr {
	name := "q" + strconv.Itoa(q.Index)
	if q.HasEngine && q.Engine.Name != "" {
		name = q.Engine.Name
	}
	a := []slog.Attr{slog.Int("q", q.Index), slog.String("name", name), slog.Bool("enabled", q.Enabled)}
	a = append(a, q.Ring.Attrs()...)
	switch {
	case q.HasEngine && q.Ring.Packed:
		e := q.Engine
		a = append(a, slog.String("engine", e.Activity.String()),
			slog.String("last_avail", queue.PackedPos(e.NextAvail)), slog.String("next_used", queue.PackedPos(e.NextUsed)),
			slog.Uint64("transitions", uint64(e.Transitions)))
		if q.Ring.Ready && e.Activity != virtio.ActivityInactive {
			a = append(a, packedOwed(q.Ring, e)...)
		}
	case q.HasEngine:
		a = append(a, q.Engine.Attrs()...)
		if q.Ring.Ready && q.Engine.Activity != virtio.ActivityInactive {
			a = append(a, slog.Int("avail_pending", int(q.Ring.AvailIdx-q.Engine.NextAvail)))
		}
	}
	if s.Kind != "vhost-user" {
		a = append(a, slog.String("isr", hex(uint64(s.ISR))))
	}
	if x := s.MSIX; x != nil && q.Index < len(x.QueueVectors) {
		v := x.QueueVectors[q.Index]
		a = append(a, slog.String("vector", vectorName(v)))
		if vs, ok := x.Vector(v); ok {
			a = append(a, slog.Bool("vector_masked", vs.Masked), slog.Bool("vector_pending", vs.Pending))
		}
	}
	return a
}

// packedOwed says, for a packed ring, whether a notification asked for
// is owed: kick_owed (shown while the engine waits for a kick and the
// device's flags are DESC) when the descriptor at the device's off_wrap
// (its last_avail when it asked) is available, so the driver should have
// kicked; irq_owed (shown when the driver's flags are DESC) when the
// descriptor at the driver's off_wrap is used, so the device should have
// interrupted. Without DESC the off_wraps are not in use.
func packedOwed(r queue.RingState, e virtio.EngineState) []slog.Attr {
	var a []slog.Attr
	if r.UsedFlags&3 == queue.EventFlagsDesc && e.Activity == virtio.ActivityWaitKick {
		a = append(a, slog.Bool("kick_owed", r.AvailAtDeviceEvent))
	}
	if r.AvailFlags&3 == queue.EventFlagsDesc {
		a = append(a, slog.Bool("irq_owed", r.UsedAtDriverEvent))
	}
	return a
}

// vectorName is an MSI-X vector number, or "none" for
// VIRTIO_MSI_NO_VECTOR.
func vectorName(v uint16) string {
	if v == 0xffff {
		return "none"
	}
	return strconv.Itoa(int(v))
}

// vectorsString lists MSI-X table entries as "0:ok 1:masked
// 2:masked+pending".
func vectorsString(vs []transport.VectorSnapshot) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(':')
		switch {
		case v.Masked && v.Pending:
			b.WriteString("masked+pending")
		case v.Masked:
			b.WriteString("masked")
		case v.Pending:
			b.WriteString("pending")
		default:
			b.WriteString("ok")
		}
	}
	return b.String()
}

// logIOAPIC logs the in-kernel IOAPIC's latched pins, the pins waiting
// for an EOI (remote IRR, masked or not) and every pin the guest has
// unmasked: vector, trigger, mask, remote IRR, delivery and destination.
// With the vCPUs' LAPIC lines it shows where an interrupt a device raised
// stopped (a masked pin, a level line waiting for EOI, a vector requested
// at a LAPIC and never taken).
func (m *Machine) logIOAPIC(why string) {
	if m.vm == nil {
		return
	}
	st, err := m.vm.IOAPIC()
	if err != nil {
		m.log.Warn(why+": IOAPIC", "err", err)
		return
	}
	m.log.Warn(why+": IOAPIC", ioapicAttrs(&st)...)
}

// ioapicAttrs is logIOAPIC's line: the latched pins (irr), then each pin
// that is latched, waits for an EOI or is unmasked.
func ioapicAttrs(st *kvm.IOAPICState) []any {
	attrs := []any{"irr", hex(uint64(st.IRR))}
	for pin, e := range st.RedirTbl {
		if e.Masked() && st.IRR&(1<<pin) == 0 && !e.RemoteIRR() {
			continue
		}
		attrs = append(attrs, "pin"+strconv.Itoa(pin), redirString(e))
	}
	return attrs
}

// redirString formats a redirection entry: "vec=0x25,edge,dest=0x1",
// with ",masked" and ",remote_irr" when set, the delivery mode when it
// is not fixed (",lowest", ",nmi", ...) and ",logical" for a logical
// destination.
func redirString(e kvm.RedirEntry) string {
	s := "vec=" + hex(uint64(e.Vector()))
	if e.Level() {
		s += ",level"
	} else {
		s += ",edge"
	}
	if e.Masked() {
		s += ",masked"
	}
	if e.RemoteIRR() {
		s += ",remote_irr"
	}
	if m := e.DeliveryMode(); m != 0 {
		s += "," + deliveryModes[m]
	}
	if e.LogicalDest() {
		s += ",logical"
	}
	return s + ",dest=" + hex(uint64(e.Dest()))
}

// deliveryModes names the IOAPIC's delivery modes (bits 8-10 of a
// redirection entry; 3 and 6 are reserved).
var deliveryModes = [8]string{"fixed", "lowest", "smi", "mode3", "nmi", "init", "mode6", "extint"}

// vectorList formats interrupt vectors as "0x22,0x41" ("-" for none).
func vectorList(v []uint8) string {
	if len(v) == 0 {
		return "-"
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = hex(uint64(x))
	}
	return strings.Join(parts, ",")
}
