package vmm

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/flintvm/flint/kvm"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	"github.com/flintvm/flint/virtio/transport"
)

// dumpLines logs s as a dump does and returns the lines.
func dumpLines(t *testing.T, name string, ident []any, s transport.Snapshot) []string {
	t.Helper()
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	logVirtioSnapshot(log, "dump", name, ident, s)
	return strings.Split(strings.TrimSpace(b.String()), "\n")
}

// wantIn fails unless line contains every fragment, in order.
func wantIn(t *testing.T, line string, frags ...string) {
	t.Helper()
	rest := line
	for _, f := range frags {
		i := strings.Index(rest, f)
		if i < 0 {
			t.Fatalf("%q missing (or out of order) in\n%s", f, line)
		}
		rest = rest[i+len(f):]
	}
}

func TestDumpLinesMMIO(t *testing.T) {
	s := transport.Snapshot{
		Kind: "mmio", Device: virtio.DeviceNet, Active: true, ISR: 1,
		Status:   virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK,
		Features: 1<<32 | 1<<29,
		Queues: []transport.QueueSnapshot{
			{Index: 0, Enabled: true, HasEngine: true,
				Ring:   queue.RingState{Size: 256, Ready: true, EventIdx: true, AvailIdx: 300, UsedIdx: 200, UsedEvent: 200, AvailEvent: 201},
				Engine: virtio.EngineState{Queue: 0, Name: "rx", Activity: virtio.ActivityWaitReadable, NextAvail: 200, NextUsed: 200, Transitions: 7}},
			{Index: 1, Enabled: true, HasEngine: true,
				Ring:   queue.RingState{Size: 256, Ready: true, AvailIdx: 12, AvailFlags: 1, UsedIdx: 10, UsedFlags: 1},
				Engine: virtio.EngineState{Queue: 1, Name: "tx", Activity: virtio.ActivityWaitKick, NextAvail: 10, NextUsed: 10, Transitions: 3}},
		},
	}
	lines := dumpLines(t, "net0", []any{"tap", "tap0"}, s)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want a device line and two queue lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	wantIn(t, lines[0], `level=WARN`, `msg="dump: virtio device"`, `dev=net0`, `tap=tap0`, `transport=mmio`, `type=net`,
		`status=ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK`, `features=0x120000000`, `active=true`, `isr=0x1`, `irq=edge`)
	if strings.Contains(lines[0], "msix") || strings.Contains(lines[0], "busy") || strings.Contains(lines[0], "line_asserted") {
		t.Fatalf("MSI-X, busy or a line in an MMIO edge device's line: %s", lines[0])
	}
	wantIn(t, lines[1], `msg="dump: virtio queue"`, `dev=net0`, `tap=tap0`, `transport=mmio`, `q=0`, `name=rx`, `enabled=true`,
		`size=256`, `ready=true`, `avail_idx=300`, `used_idx=200`, `no_interrupt=false`, `no_notify=false`, `event_idx=true`,
		`used_event=200`, `avail_event=201`, `engine=waiting-readable`, `last_avail=200`, `next_used=200`, `transitions=7`,
		`avail_pending=100`, `isr=0x1`)
	wantIn(t, lines[2], `q=1`, `name=tx`, `avail_idx=12`, `used_idx=10`, `no_interrupt=true`, `no_notify=true`,
		`event_idx=false`, `engine=waiting-kick`, `last_avail=10`, `next_used=10`, `avail_pending=2`)
	if strings.Contains(lines[2], "used_event") || strings.Contains(lines[2], "vector") {
		t.Fatalf("event words without EVENT_IDX, or a vector on MMIO: %s", lines[2])
	}

	s.Level, s.LineAsserted = true, true
	wantIn(t, dumpLines(t, "net0", nil, s)[0], `irq=level`, `line_asserted=true`)
}

func TestDumpLinesPCI(t *testing.T) {
	s := transport.Snapshot{
		Kind: "pci", Device: virtio.DeviceBlock, Active: true, ISR: 2, Level: false,
		MSIX: &transport.MSIXSnapshot{Enabled: true, FunctionMask: false, ConfigVector: 0, QueueVectors: []uint16{1},
			Vectors: []transport.VectorSnapshot{{}, {Masked: true, Pending: true}}},
		Queues: []transport.QueueSnapshot{{Index: 0, Enabled: true, Ring: queue.RingState{Size: 128, Ready: true, AvailIdx: 5, UsedIdx: 5}}},
	}
	lines := dumpLines(t, "block0", []any{"drive", "root"}, s)
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	wantIn(t, lines[0], `dev=block0`, `drive=root`, `transport=pci`, `type=block`, `isr=0x2`, `irq=msix`,
		`msix_enabled=true`, `function_mask=false`, `config_vector=0`, `vectors="0:ok 1:masked+pending"`)
	wantIn(t, lines[1], `q=0`, `name=q0`, `size=128`, `avail_idx=5`, `isr=0x2`, `vector=1`, `vector_masked=true`, `vector_pending=true`)
	if strings.Contains(lines[1], "engine=") {
		t.Fatalf("an engine for a device that reports none: %s", lines[1])
	}

	// MSI-X disabled: INTx; a queue without a vector; a busy transport.
	s.MSIX.Enabled, s.MSIX.QueueVectors[0] = false, 0xffff
	s.Level, s.LineAsserted, s.Busy = true, true, true
	lines = dumpLines(t, "block0", nil, s)
	wantIn(t, lines[0], `busy=true`, `irq=level`, `line_asserted=true`, `msix_enabled=false`)
	wantIn(t, lines[1], `vector=none`)
	if strings.Contains(lines[1], "vector_masked") {
		t.Fatalf("mask bits for no vector: %s", lines[1])
	}
}

func TestDumpLinesVhostUser(t *testing.T) {
	s := transport.Snapshot{Kind: "vhost-user", Device: virtio.DeviceNet,
		Queues: []transport.QueueSnapshot{{Index: 0, Ring: queue.RingState{Size: 256}, HasEngine: true,
			Engine: virtio.EngineState{Name: "rx"}}}}
	lines := dumpLines(t, "net0", nil, s)
	if strings.Contains(lines[0], "isr") || strings.Contains(lines[1], "isr") || strings.Contains(lines[1], "avail_pending") {
		t.Fatalf("ISR or a pending count for vhost-user / an inactive engine:\n%s\n%s", lines[0], lines[1])
	}
	wantIn(t, lines[1], `name=rx`, `enabled=false`, `ready=false`, `engine=inactive`)
}

// TestDumpLinesPacked: a packed queue's line has no avail_pending (a
// packed ring has no avail.idx, and its positions carry the wrap counter
// in bit 15: a reviewer's dump of an RX queue waiting at slot 64, wrap 1
// read avail_pending=32704, a lost kick that was not), its positions are
// slot/wrap, and it says whether a kick or an interrupt is owed.
func TestDumpLinesPacked(t *testing.T) {
	waiting := transport.QueueSnapshot{Index: 0, Enabled: true, HasEngine: true,
		Ring:   queue.RingState{Size: 256, Ready: true, EventIdx: true, Packed: true, UsedFlags: queue.EventFlagsDesc, AvailEvent: 0x8040},
		Engine: virtio.EngineState{Name: "rx", Activity: virtio.ActivityWaitKick, NextAvail: 0x8040, NextUsed: 0x8040, Transitions: 9}}
	s := transport.Snapshot{Kind: "pci", Device: virtio.DeviceNet, Active: true,
		Queues: []transport.QueueSnapshot{waiting}}
	line := dumpLines(t, "net0", nil, s)[1]
	if strings.Contains(line, "avail_pending=") || strings.Contains(line, "irq_owed") {
		t.Fatalf("avail_pending for a packed ring, or irq_owed without the driver's DESC: %s", line)
	}
	wantIn(t, line, `packed=true`, `device_event_flags=2`, `device_off_wrap=64/w1`, `avail_at_device_event=false`,
		`engine=waiting-kick`, `last_avail=64/w1`, `next_used=64/w1`, `transitions=9`, `kick_owed=false`)

	// The driver made the buffer available at the device's off_wrap and
	// asked for an interrupt at a used descriptor: both are owed.
	s.Queues[0].Ring.AvailAtDeviceEvent = true
	s.Queues[0].Ring.AvailFlags, s.Queues[0].Ring.UsedEvent, s.Queues[0].Ring.UsedAtDriverEvent = queue.EventFlagsDesc, 0x803f, true
	wantIn(t, dumpLines(t, "net0", nil, s)[1], `driver_event_flags=2`, `driver_off_wrap=63/w1`, `used_at_driver_event=true`,
		`kick_owed=true`, `irq_owed=true`)

	// An engine at work, not waiting for a kick: no kick owed either way.
	s.Queues[0].Engine.Activity = virtio.ActivityWaitReadable
	if line := dumpLines(t, "net0", nil, s)[1]; strings.Contains(line, "kick_owed") {
		t.Fatalf("kick_owed for an engine that waits for no kick: %s", line)
	}
}

type fakeTransport struct {
	snap  transport.Snapshot
	calls int
}

func (f *fakeTransport) Close()                       {}
func (f *fakeTransport) Snapshot() transport.Snapshot { f.calls++; return f.snap }

// TestLogDeviceState: a dump logs every device, and nothing once Close
// has begun (the transports and guest memory are going away).
func TestLogDeviceState(t *testing.T) {
	var b bytes.Buffer
	ft := &fakeTransport{snap: transport.Snapshot{Kind: "mmio", Device: virtio.DeviceNet,
		Queues: []transport.QueueSnapshot{{Index: 0}, {Index: 1}}}}
	m := &Machine{log: slog.New(slog.NewTextHandler(&b, nil)),
		virtio: []virtioDev{{typ: virtio.DeviceNet, name: "net0", ident: []any{"tap", "t0"}, t: ft}}}
	m.logDeviceState("dump")
	if ft.calls != 1 || strings.Count(b.String(), `msg="dump: virtio queue" dev=net0 tap=t0`) != 2 {
		t.Fatalf("%d snapshots, log:\n%s", ft.calls, b.String())
	}
	m.Close()
	b.Reset()
	m.logDeviceState("dump")
	if ft.calls != 1 || b.Len() != 0 {
		t.Fatalf("dumped after Close: %d snapshots, log:\n%s", ft.calls, b.String())
	}
}

// TestRedirString: a redirection entry's fields as the IOAPIC dump line
// shows them; fixed delivery and a physical destination are not named.
func TestRedirString(t *testing.T) {
	for _, c := range []struct {
		e    uint64
		want string
	}{
		{0x01_000000_0000_0025, "vec=0x25,edge,dest=0x1"},
		{0x03_000000_0001_c029, "vec=0x29,level,masked,remote_irr,dest=0x3"},
		{0x0f_000000_0000_0931, "vec=0x31,edge,lowest,logical,dest=0xf"},
		{0x00_000000_0000_0400, "vec=0x0,edge,nmi,dest=0x0"},
		{0x00_000000_0000_0700, "vec=0x0,edge,extint,dest=0x0"},
	} {
		if got := redirString(kvm.RedirEntry(c.e)); got != c.want {
			t.Errorf("redirString(%#x) = %q, want %q", c.e, got, c.want)
		}
	}
}

// TestIOAPICAttrs: the dump shows a pin that is latched, one waiting for
// an EOI (even masked: the guest masks a level pin while it handles it)
// and one unmasked, and leaves out a masked idle pin.
func TestIOAPICAttrs(t *testing.T) {
	var st kvm.IOAPICState
	for pin := range st.RedirTbl {
		st.RedirTbl[pin] = kvm.RedirEntry(1<<16 | 0x20 + uint64(pin)) // masked, idle
	}
	st.RedirTbl[4] = 0x24           // unmasked
	st.RedirTbl[9] |= 1<<15 | 1<<14 // masked level pin waiting for EOI
	st.IRR = 1 << 5                 // pin 5: masked, latched
	got := fmt.Sprint(ioapicAttrs(&st))
	want := "[irr 0x20 pin4 vec=0x24,edge,dest=0x0 pin5 vec=0x25,edge,masked,dest=0x0 pin9 vec=0x29,level,masked,remote_irr,dest=0x0]"
	if got != want {
		t.Fatalf("ioapicAttrs = %s\nwant          %s", got, want)
	}
}
