package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// wantAll fails unless s contains every fragment.
func wantAll(t *testing.T, what, s string, frags ...string) {
	t.Helper()
	for _, f := range frags {
		if !strings.Contains(s, f) {
			t.Errorf("%s lacks %q:\n%s", what, f, s)
		}
	}
}

// checkDigestShape: one line, within maxEvidence, with the prefix.
func checkDigestShape(t *testing.T, ev string) {
	t.Helper()
	if strings.Contains(ev, "\n") || len(ev) > maxEvidence || !strings.HasPrefix(ev, evidencePrefix) {
		t.Errorf("digest of %d characters, want one line of at most %d starting %q:\n%s", len(ev), maxEvidence, evidencePrefix, ev)
	}
}

// TestDigestNetStall: a network case that net-case.sh's stall detector
// ended (CI, 2026-12-06: the guest's CPU 0 soft-locked, vCPU 1's state
// impossible): two SIGUSR1 dumps 3 s apart, the threads' kernel stacks,
// then flint's goroutine dump. The digest has the guest's last beat and
// how long before the dump it came, the lockup, the stall, each vCPU's
// change between the dumps, the lost state, the queues and counters that
// did not move, and where flint's threads wait.
func TestDigestNetStall(t *testing.T) {
	b, err := os.ReadFile("testdata/digest/net-stall.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	ev := evidence(out)
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev,
		"guest last beat t=16.19s rx=31 tx=28 ~169s before dump1 (flint up 185s)",
		"guest kernel last [162.1s]", "last step NET-GUEST-PING result=ok",
		"guest soft lockup CPU#0 126s [cat:190]",
		"NET-HOST-STALL at 161s, 60s without a packet",
		"2 dumps, dump1->dump2 3s apart: vcpu0 0xffffffff811609e1 same if=on runnable io+0 mmio+0 intr+1, vcpu1 0xffffffffc048f20c same",
		"vcpu1 state lost",
		"net0 rx waiting-readable a/u 3495/3250 pend 245 same, net0 tx waiting-kick a/u 45459/45459 same, tap0 rx+0 tx+0",
		"flint threads: 7 futex_wait_queue, 1 R, 1 do_epoll_wait, 1 R kvm_arch_vcpu_ioctl_run")
	if strings.Contains(ev, "did not leave KVM_RUN") {
		t.Errorf("a stuck vCPU where none was reported: %s", ev)
	}

	// The tail skips the goroutine dump's bulk: the lines before it (the
	// stall's thread stacks) and the last lines (the host side's results).
	tl := outputTail(out)
	wantAll(t, "tail", tl, "NET-HOST-STALL sending SIGQUIT", "lines of flint's goroutine dump left out", "NET-HOST-FLINT rc=2")
	if strings.Contains(tl, "goroutine 1 gp=") || strings.Contains(tl, "runtime.gopark") {
		t.Errorf("the tail has the goroutine dump:\n%s", tl)
	}
	if n := strings.Count(tl, "\n") + 1; n > 61 {
		t.Errorf("tail of %d lines, want at most 61", n)
	}
	if got := outputTail("a\nb\nc"); got != "a\nb\nc" {
		t.Errorf("a short output's tail is %q, want all of it", got)
	}
}

// stuckBoot is a boot (no network case) whose dump found vCPU 1 not
// leaving KVM_RUN, with a dump line landing inside a guest console line,
// and L1's process dump of flint's threads.
const stuckBoot = `[    0.000000] Linux version 6.1.0-28-amd64
time=2026-12-06T10:28:20.001Z level=INFO msg="kernel loaded" protocol=527
[    9.449128] smpboot: CPU 1 is now offline
[   10.775796] Run /init as init process
[   10.8time=2026-12-06T10:30:31.945Z level=WARN msg="dump: vCPU" vcpu=0 rip=0xffffffffaf0c2277 rsp=0xffffffffb0403d08 rflags=0x2 interrupts_enabled=false cr0=0x80050033 cr3=0x6010000 cr4=0x110b0 efer=0xd01 cs=0x10 mp_state=0 rax=0x56 io_exits=8127 mmio_exits=0 intr_exits=1
time=2026-12-06T10:30:31.954Z level=WARN msg="dump: vCPU memory" vcpu=0 code_at_rip_minus_16=8fb9 stack="0xffffffffaf0bb053 0x3c"
time=2026-12-06T10:30:33.956Z level=WARN msg="dump: vCPU did not leave KVM_RUN" vcpu=1 waited=2s`

var stuckPS = []string{
	"L1-PS 1 init S wchan=do_wait",
	"L1-PS 6283 flint S wchan=futex_wait_queue",
	"L1-PS   thread 6283 S wchan=futex_wait_queue futex_wait_queue+0x60/0x90 futex_wait+0x185/0x270",
	"L1-PS   thread 6294 R wchan=0 ",
	"L1-PS   thread 6295 D wchan=0 svm_vcpu_run+0x1/0x2 kvm_arch_vcpu_ioctl_run+0xa4e/0x1750 kvm_vcpu_ioctl+0x25e/0x720",
	"L1-PS   thread 6296 S wchan=kvm_vcpu_block kvm_vcpu_block+0x52/0xc0 kvm_vcpu_halt+0xba/0x3e0",
	"L1-PS 6286 iperf3 S wchan=do_select",
	"L1-PS   thread 6286 S wchan=do_select",
}

// TestDigestStuckVCPU: one dump, a vCPU that did not leave KVM_RUN, no
// heartbeat, and flint's threads from L1's process dump (not iperf3's).
func TestDigestStuckVCPU(t *testing.T) {
	r := &result{output: stuckBoot, l1ps: stuckPS}
	ev := evidence(r.evidenceText())
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev, "no guest heartbeat", "guest kernel last [10.8s]",
		"1 dump: vcpu0 0xffffffffaf0c2277 if=off runnable io=8127 mmio=0 intr=1",
		"1 vCPU(s) did not leave KVM_RUN (vcpu1)",
		"flint threads: 1 futex_wait_queue, 1 R, 1 D kvm_arch_vcpu_ioctl_run, 1 kvm_vcpu_block")
	if strings.Contains(ev, "do_select") || strings.Contains(ev, "state lost") {
		t.Errorf("another process's thread, or a lost state that was not: %s", ev)
	}
}

// TestDigestNoDump: a boot cut off before any dump says so.
func TestDigestNoDump(t *testing.T) {
	ev := evidence("[    1.000000] Booting\nNET-GUEST-BEAT t=10.0 rx_packets=5 tx_packets=6 irqs=virtio0=3\nNET-GUEST-BEAT t=20.1 rx_packets=5 tx_packets=6 irqs=virtio0=3\n")
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev, "guest last beat t=20.1s rx=5 tx=6 (same since t=10.0s)", "no state dump in the output")
	if ev := evidence(""); !strings.Contains(ev, "no guest heartbeat") || !strings.Contains(ev, "no state dump") {
		t.Errorf("empty output: %s", ev)
	}
}

// TestDigestPacked: packed queues as vmm/dump.go prints them (slot/wrap,
// kick_owed, irq_owed) are summed up with those; a block queue that owes
// a kick is shown too, a console's idle queue is not; two dumps in which
// the RX queue moved say so.
func TestDigestPacked(t *testing.T) {
	q := func(at, dev, name, rest string) string {
		return fmt.Sprintf(`time=2026-12-06T10:00:%sZ level=WARN msg="dump: virtio queue" dev=%s transport=pci q=0 name=%s enabled=true size=256 ready=true packed=true %s isr=0x0 vector=1 vector_masked=false vector_pending=false`, at, dev, name, rest)
	}
	dump := func(at, rxPos string) []string {
		return []string{
			fmt.Sprintf(`time=2026-12-06T10:00:%sZ level=WARN msg="dump: virtio device" dev=net0 tap=tap0 transport=pci type=net status=ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK active=true`, at),
			q(at, "net0", "rx", "driver_event_flags=2 driver_off_wrap=63/w1 used_at_driver_event=false device_event_flags=2 device_off_wrap="+rxPos+" avail_at_device_event=true engine=waiting-kick last_avail="+rxPos+" next_used="+rxPos+" transitions=9 kick_owed=true irq_owed=false"),
			fmt.Sprintf(`time=2026-12-06T10:00:%sZ level=WARN msg="dump: virtio device" dev=block0 transport=pci type=block active=true`, at),
			q(at, "block0", "requests", "driver_event_flags=2 driver_off_wrap=5/w0 used_at_driver_event=true device_event_flags=1 device_off_wrap=0/w0 avail_at_device_event=false engine=waiting-kick last_avail=5/w0 next_used=5/w0 transitions=4 irq_owed=true"),
			fmt.Sprintf(`time=2026-12-06T10:00:%sZ level=WARN msg="dump: virtio device" dev=console0 transport=pci type=console active=true`, at),
			q(at, "console0", "receiveq", "driver_event_flags=0 driver_off_wrap=0/w0 used_at_driver_event=true device_event_flags=0 device_off_wrap=0/w0 avail_at_device_event=false engine=waiting-readable last_avail=0/w1 next_used=0/w1 transitions=2"),
			fmt.Sprintf(`time=2026-12-06T10:00:%sZ level=WARN msg="dump: vCPU" vcpu=0 rip=0xffffffff81a17a1a interrupts_enabled=true cs=0x10 mp_state=3 io_exits=10 mmio_exits=20 intr_exits=3`, at),
		}
	}
	out := strings.Join(append(dump("01.000", "64/w1"), dump("04.000", "70/w1")...), "\n")
	ev := evidence(out)
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev, "2 dumps, dump1->dump2 3s apart: vcpu0 0xffffffff81a17a1a same if=on halted io+0 mmio+0 intr+0",
		"net0 rx waiting-kick at 70/w1 used 70/w1 kick_owed=true irq_owed=false moved",
		"block0 requests waiting-kick at 5/w0 used 5/w0 irq_owed=true same")
	if strings.Contains(ev, "console0") || strings.Contains(ev, "pend") {
		t.Errorf("an idle console queue, or a pending count for a packed ring: %s", ev)
	}
}

// TestEvidenceLines: the digest logged in at most three lines that each
// survive make test's summary (200 characters a message), in order and
// whole but for a marked cut.
func TestEvidenceLines(t *testing.T) {
	b, err := os.ReadFile("testdata/digest/net-stall.txt")
	if err != nil {
		t.Fatal(err)
	}
	ev := evidence(string(b))
	ls := evidenceLines(ev)
	if len(ls) == 0 || len(ls) > maxEvidenceLines {
		t.Fatalf("%d lines, want 1 to %d", len(ls), maxEvidenceLines)
	}
	var joined []string
	for i, l := range ls {
		if len(l) > 200 {
			t.Errorf("line %d has %d characters: %s", i, len(l), l)
		}
		label := fmt.Sprintf("ev %d/%d: ", i+1, len(ls))
		if !strings.HasPrefix(l, label) {
			t.Errorf("line %d lacks %q: %s", i, label, l)
		}
		joined = append(joined, strings.TrimSuffix(strings.TrimPrefix(l, label), "..."))
	}
	rest := strings.TrimPrefix(ev, evidencePrefix)
	for _, p := range joined {
		i := strings.Index(rest, p)
		if i < 0 {
			t.Fatalf("line %q is not the digest's next piece:\n%s", p, rest)
		}
		rest = rest[i+len(p):]
	}
	if got := evidenceLines(evidencePrefix + "short"); len(got) != 1 || got[0] != "ev 1/1: short" {
		t.Errorf("short digest: %q", got)
	}
}

// fatalRecorder records what cutOff and logFailedOutput say.
type fatalRecorder struct {
	logs  []string
	fatal string
}

func (r *fatalRecorder) Helper()                      {}
func (r *fatalRecorder) Log(args ...any)              { r.logs = append(r.logs, fmt.Sprint(args...)) }
func (r *fatalRecorder) Logf(f string, args ...any)   { r.logs = append(r.logs, fmt.Sprintf(f, args...)) }
func (r *fatalRecorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }

// TestCutOffMessage: a cut-off boot's failure has why and the digest on
// its first line (what make test's summary shows of it), the digest's
// summary-sized lines logged just before it, and the tail after it.
func TestCutOffMessage(t *testing.T) {
	var rec fatalRecorder
	r := &result{output: stuckBoot, l1ps: stuckPS, unfinished: true, hung: true}
	cutOff(&rec, "case cut off: nested host suspected flint hang: boot b printed nothing for 2m1s", r)
	first, rest, _ := strings.Cut(rec.fatal, "\n")
	wantAll(t, "first line", first, "case cut off: nested host suspected flint hang", evidencePrefix,
		"did not leave KVM_RUN (vcpu1)", "1 kvm_vcpu_block", "; its output so far:")
	wantAll(t, "tail", rest, "[   10.775796] Run /init as init process")
	if len(rec.logs) == 0 || !strings.HasPrefix(rec.logs[0], "ev 1/") {
		t.Errorf("digest lines not logged before the failure: %q", rec.logs)
	}

	// A net case that failed its checks after net-case.sh's stall
	// detector fired ends with the digest's lines, after the tail.
	b, err := os.ReadFile("testdata/digest/net-stall.txt")
	if err != nil {
		t.Fatal(err)
	}
	rec = fatalRecorder{}
	logFailedOutput(&rec, "no NET-GUEST-DONE line", &result{output: string(b)})
	if len(rec.logs) < 2 || !strings.HasPrefix(rec.logs[0], "no NET-GUEST-DONE line; the output's end:\n") ||
		!strings.HasPrefix(rec.logs[len(rec.logs)-1], "ev ") || !strings.Contains(strings.Join(rec.logs[1:], " "), "NET-HOST-STALL at 161s") {
		t.Errorf("a stalled case's failure output: %q", rec.logs)
	}
	// Without a dump or a stall, only the tail.
	rec = fatalRecorder{}
	logFailedOutput(&rec, "sha256 differs", &result{output: "NET-GUEST-DONE\n"})
	if len(rec.logs) != 1 {
		t.Errorf("a case without a dump logs %q", rec.logs)
	}
}

// TestDigestSecondLook: a dump that looks at a vCPU again (its RIP was
// unmapped: vmm.DumpState) is still one dump, with its queues (but not
// one never used), and the second look's RIP and the lost state are
// named; a log line that landed in the guest's last step is not part of
// the step.
func TestDigestSecondLook(t *testing.T) {
	out := strings.Join([]string{
		`time=2026-12-06T10:00:00.000Z level=WARN msg="dump: virtio device" dev=net0 tap=tap0 transport=mmio type=net active=true`,
		`time=2026-12-06T10:00:00.001Z level=WARN msg="dump: virtio queue" dev=net0 tap=tap0 transport=mmio q=0 name=rx enabled=true size=256 ready=true avail_idx=300 used_idx=44 engine=waiting-readable last_avail=44 next_used=44 transitions=8 avail_pending=256 isr=0x0`,
		`time=2026-12-06T10:00:00.001Z level=WARN msg="dump: virtio queue" dev=net0 tap=tap0 transport=mmio q=1 name=tx enabled=true size=256 ready=true avail_idx=0 used_idx=0 engine=waiting-kick last_avail=0 next_used=0 transitions=2 avail_pending=0 isr=0x0`,
		`NET-GUEST-PING-OUT --- 1time=2026-12-06T10:00:00.001Z level=WARN msg="dump: vCPU memory" vcpu=0`,
		`time=2026-12-06T10:00:00.002Z level=WARN msg="dump: vCPU" vcpu=0 rip=0xffffffff81000000 interrupts_enabled=true cs=0x10 mp_state=3 io_exits=1 mmio_exits=2 intr_exits=3`,
		`time=2026-12-06T10:00:00.003Z level=WARN msg="dump: vCPU" vcpu=1 rip=0xffffffffc048f20c interrupts_enabled=true cs=0x10 mp_state=0 io_exits=1 mmio_exits=2 intr_exits=3`,
		`time=2026-12-06T10:00:00.004Z level=WARN msg="dump: the vCPU's instruction pointer is not mapped by its page tables (a lost state if a second look finds the same)" vcpu=1 cr3=0x7fe32000 rip=0xffffffffc048f20c`,
		`time=2026-12-06T10:00:01.005Z level=WARN msg="dump: vCPU" vcpu=1 rip=0xffffffffc048f20c interrupts_enabled=true cs=0x10 mp_state=0 io_exits=1 mmio_exits=2 intr_exits=4`,
		`time=2026-12-06T10:00:01.006Z level=WARN msg="vCPU state is impossible for this guest: its instruction pointer is not mapped by its own page tables, the same at two looks, so KVM or the hypervisor under it lost the guest's state" vcpu=1 why=dump`,
	}, "\n")
	ev := evidence(out)
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev, "1 dump: vcpu0 0xffffffff81000000 if=on halted", "vcpu1 0xffffffffc048f20c if=on runnable io=1 mmio=2 intr=3 (2nd look 0xffffffffc048f20c)",
		"vcpu1 state lost", "net0 rx waiting-readable a/u 300/44 pend 256", "last step NET-GUEST-PING-OUT --- 1;")
	if strings.Contains(ev, "net0 tx") {
		t.Errorf("a queue never used: %s", ev)
	}
}

// TestDigestInterrupts: where a device's interrupt stands (the vCPUs'
// LAPIC vectors, an injection under way, the IOAPIC pins with one in
// flight) is in the digest; LAPICs with nothing pending and quiet pins are
// not.
func TestDigestInterrupts(t *testing.T) {
	out := strings.Join([]string{
		`time=2026-12-06T10:00:01Z level=WARN msg="dump: virtio device" dev=net0 tap=tap0 transport=mmio type=net isr=0x1 active=true`,
		`time=2026-12-06T10:00:01Z level=WARN msg="dump: IOAPIC" irr=0x20 pin4=vec=0x24,edge,dest=0x1 pin5=vec=0x25,edge,dest=0x1 pin9=vec=0x29,level,remote_irr,dest=0x1`,
		`time=2026-12-06T10:00:01Z level=WARN msg="dump: vCPU" vcpu=0 rip=0xffffffff81a17a1a interrupts_enabled=true cs=0x10 mp_state=3 io_exits=1 mmio_exits=2 intr_exits=3 lapic_irr=0x25,0xec lapic_isr=- tpr=0x0 ppr=0x0 intr_injected=false intr_nr=0x0 intr_shadow=0`,
		`time=2026-12-06T10:00:01Z level=WARN msg="dump: vCPU" vcpu=1 rip=0xffffffff81a17a1a interrupts_enabled=true cs=0x10 mp_state=0 io_exits=1 mmio_exits=2 intr_exits=3 lapic_irr=- lapic_isr=0x29 tpr=0x0 ppr=0x20 intr_injected=true intr_nr=0xec intr_shadow=0`,
	}, "\n")
	ev := evidence(out)
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev, "vcpu0 0xffffffff81a17a1a if=on halted irr=0x25,0xec io=1 mmio=2 intr=3,",
		"vcpu1 0xffffffff81a17a1a if=on runnable isr=0x29 injecting=0xec io=1 mmio=2 intr=3",
		"ioapic irr=0x20 pin5 vec=0x25,edge,dest=0x1 pin9 vec=0x29,level,remote_irr,dest=0x1")
	if strings.Contains(ev, "pin4") || strings.Contains(ev, "irr=-") {
		t.Errorf("a quiet pin, or an empty LAPIC set: %s", ev)
	}
}

// TestDigestInterruptsNoDevices: a machine with no virtio device dumps
// the IOAPIC first; a second dump's IOAPIC line starts that dump, not
// the one before it (whose vCPUs it would otherwise join, leaving the
// last dump without one and the earlier one with the later pins).
func TestDigestInterruptsNoDevices(t *testing.T) {
	vcpu := `time=2026-12-06T10:00:0%dZ level=WARN msg="dump: vCPU" vcpu=0 rip=0xffffffff81a17a1a interrupts_enabled=true cs=0x10 mp_state=3 io_exits=1 mmio_exits=2 intr_exits=3 lapic_irr=- lapic_isr=- tpr=0x0 ppr=0x0 intr_injected=false intr_nr=0x0 intr_shadow=0`
	out := strings.Join([]string{
		`time=2026-12-06T10:00:01Z level=WARN msg="dump: IOAPIC" irr=0x0 pin4=vec=0x24,edge,dest=0x1`,
		fmt.Sprintf(vcpu, 1),
		`time=2026-12-06T10:00:05Z level=WARN msg="dump: IOAPIC" irr=0x20 pin5=vec=0x25,edge,dest=0x1`,
		fmt.Sprintf(vcpu, 5),
	}, "\n")
	ev := evidence(out)
	checkDigestShape(t, ev)
	wantAll(t, "digest", ev, "2 dumps", "ioapic irr=0x20 pin5 vec=0x25,edge,dest=0x1")
}
