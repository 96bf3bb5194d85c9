package e2e

// The evidence digest: one line, read from a boot's output, of what tells
// a flint hang from the emulator's loss of the guest (tests/doc.go), put
// first in every cut-off or hang failure. CI keeps only the end of a
// failing test's output and `make test`'s summary (each failed test's
// last few messages, cut at 200 characters), while a stalled boot's
// output ends in flint's goroutine dump (net-case.sh's stall detector
// sends SIGQUIT): the lines that decide the case (the SIGUSR1 dumps'
// vCPUs and queues, NET-HOST-STALL, the guest's last heartbeat, flint's
// threads' wait channels) are hundreds of lines above that end.

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flintvm/flint/vmm"
)

// evidencePrefix starts every digest.
const evidencePrefix = "evidence: "

// maxEvidence is the longest digest. evidenceWidth is the longest piece
// of it logged on a line of its own, at most maxEvidenceLines of them:
// make test's summary shows a failed test's last four messages, each cut
// at 200 characters, and the fourth is the failure's own.
const (
	maxEvidence      = 700
	evidenceWidth    = 188
	maxEvidenceLines = 3
)

var (
	beatRE = regexp.MustCompile(`NET-GUEST-BEAT t=([0-9.]+) rx_packets=(\d+) tx_packets=(\d+)`)
	// A guest kernel line: "[   12.345678] ..." at the start (L1's carry "<N>[").
	guestKmsgRE = regexp.MustCompile(`^\[\s*(\d+\.\d+)\] ?(.*)$`)
	// flint's log lines: "time=2026-12-06T07:17:38.762Z level=WARN msg=...";
	// not anchored (a log line can land in a guest console line).
	flintTimeRE = regexp.MustCompile(`time=(\d{4}-\d\d-\d\dT[0-9:.]+Z) level=`)
	stallRE     = regexp.MustCompile(`NET-HOST-STALL flint pid \d+ still running after (\d+)s, (\d+)s without a packet`)
	// slog's text format: key=value or key="quoted value".
	kvRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)
	// A thread in net-case.sh's stall block or in L1's process dump.
	stallThreadRE = regexp.MustCompile(`NET-HOST-STALL-OUT thread \d+ \S* wchan=(\S*) state=(\S*)`)
	stallFrameRE  = regexp.MustCompile(`NET-HOST-STALL-OUT\s+\[<\w+>\] (\S+)`)
	psThreadRE    = regexp.MustCompile(`L1-PS\s+thread \d+ (\S) wchan=(\S*)(.*)$`)
	psProcRE      = regexp.MustCompile(`L1-PS \d+ (\S+) `)
)

// dumpRec is one state dump (vmm.DumpState): per vCPU and per queue the
// fields of its line, and the net counters.
type dumpRec struct {
	at       time.Time
	vcpus    map[string]map[string]string // vcpu id -> fields
	again    map[string]map[string]string // vcpu id -> fields of a second look in the same dump
	queues   map[string]map[string]string // "dev qN" -> fields
	qorder   []string
	devs     map[string]map[string]string // dev -> its device line's fields
	counters map[string]map[string]string // tap -> net counters
	stuck    []string                     // vCPUs that did not leave KVM_RUN
	lost     []string                     // vCPUs with an impossible state or at the reset vector
	ioapic   map[string]string            // the IOAPIC line's fields
}

func newDump(at time.Time) *dumpRec {
	return &dumpRec{at: at, vcpus: map[string]map[string]string{}, again: map[string]map[string]string{}, queues: map[string]map[string]string{},
		devs: map[string]map[string]string{}, counters: map[string]map[string]string{}}
}

// thread is one flint thread: its state and where it waits.
type thread struct{ state, where string }

// digest is what evidence gathers from the output.
type digest struct {
	beats           int
	lastBeat        []string // t, rx, tx of the last beat
	frozenSince     string   // t of the first beat with the last beat's counters
	kernT           string   // the guest kernel's last timestamp
	kernNotes       []string // guest soft lockups, panics
	flintStart      time.Time
	stall           []string // NET-HOST-STALL's seconds running, seconds without a packet
	dumps           []*dumpRec
	threads         []thread
	psThreads       []thread
	lastStep        string
	stallSeen, inPS bool
}

// fields parses slog's key=value pairs from s.
func fields(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range kvRE.FindAllStringSubmatch(s, -1) {
		v := kv[2]
		if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = uq
		}
		m[kv[1]] = v
	}
	return m
}

// dumpLine files one of flint's dump lines (msg is its message).
func (d *digest) dumpLine(msg string, at time.Time, f map[string]string) {
	cur := func() *dumpRec {
		if len(d.dumps) == 0 {
			d.dumps = append(d.dumps, newDump(at))
		}
		return d.dumps[len(d.dumps)-1]
	}
	c := cur()
	switch msg {
	case "dump: virtio device":
		if len(c.vcpus) > 0 || len(c.stuck) > 0 || c.devs[f["dev"]] != nil {
			c = newDump(at)
			d.dumps = append(d.dumps, c)
		}
		c.devs[f["dev"]] = f
	case "dump: virtio queue":
		k := f["dev"] + " q" + f["q"]
		if c.queues[k] == nil {
			c.qorder = append(c.qorder, k)
		}
		c.queues[k] = f
	case "virtio-net counters":
		if f["when"] == "dump" {
			c.counters[f["tap"]] = f
		}
	case "dump: vCPU":
		switch {
		case c.vcpus[f["vcpu"]] == nil:
			c.vcpus[f["vcpu"]] = f
		case len(c.devs) > 0 && c.again[f["vcpu"]] == nil:
			// A dump looks again at a vCPU whose RIP was unmapped
			// (vmm.DumpState); the next dump starts with its devices.
			c.again[f["vcpu"]] = f
		default:
			c = newDump(at)
			d.dumps = append(d.dumps, c)
			c.vcpus[f["vcpu"]] = f
		}
	case "dump: IOAPIC": // after the devices, before the vCPUs: first in a machine with no device
		if len(c.vcpus) > 0 || len(c.stuck) > 0 || c.ioapic != nil {
			c = newDump(at)
			d.dumps = append(d.dumps, c)
		}
		c.ioapic = f
	case vmm.VCPUStuckMsg:
		c.stuck = append(c.stuck, "vcpu"+f["vcpu"])
	default:
		if strings.HasPrefix(msg, vmm.ImpossibleStateMsg) || strings.Contains(msg, "the vCPU is at its reset vector") {
			c.lost = append(c.lost, "vcpu"+f["vcpu"])
		}
	}
}

// line takes one line of the output.
func (d *digest) line(l string) {
	l = strings.TrimRight(l, "\r")
	if m := beatRE.FindStringSubmatch(l); m != nil {
		d.beats++
		if d.lastBeat == nil || m[2] != d.lastBeat[1] || m[3] != d.lastBeat[2] {
			d.frozenSince = m[1]
		}
		d.lastBeat = m[1:]
	}
	if m := guestKmsgRE.FindStringSubmatch(l); m != nil {
		d.kernT = m[1]
		if s := softLockupRE.FindStringSubmatch(m[2]); s != nil {
			d.kernNotes = append(d.kernNotes, fmt.Sprintf("guest soft lockup CPU#%s %ss [%s]", s[1], s[2], s[3]))
		} else if strings.Contains(m[2], "Kernel panic") || strings.Contains(m[2], "rcu: INFO") || strings.HasPrefix(m[2], "BUG:") {
			d.kernNotes = append(d.kernNotes, "guest "+clip(m[2], 60))
		}
	}
	if netStepRE.MatchString(l) && !strings.Contains(l, "NET-GUEST-BEAT") {
		d.lastStep = l
		if i := flintTimeRE.FindStringIndex(l); i != nil {
			d.lastStep = l[:i[0]] // a log line that landed in it
		}
	}
	if m := stallRE.FindStringSubmatch(l); m != nil {
		d.stall = m[1:]
	}
	if m := stallThreadRE.FindStringSubmatch(l); m != nil {
		if !d.stallSeen {
			d.stallSeen, d.threads = true, nil
		}
		d.threads = append(d.threads, thread{state: m[2], where: m[1]})
	} else if m := stallFrameRE.FindStringSubmatch(l); m != nil && len(d.threads) > 0 {
		t := &d.threads[len(d.threads)-1]
		if fn := frameFunc(m[1]); (t.where == "0" || t.where == "") && strings.Contains(fn, "kvm") {
			t.where = fn
		}
	}
	if m := psProcRE.FindStringSubmatch(l); m != nil {
		if d.inPS = m[1] == "flint"; d.inPS {
			d.psThreads = nil
		}
	} else if m := psThreadRE.FindStringSubmatch(l); m != nil && d.inPS {
		t := thread{state: m[1], where: m[2]}
		if t.where == "0" || t.where == "" {
			for _, fr := range strings.Fields(m[3]) {
				if fn := frameFunc(fr); strings.Contains(fn, "kvm") {
					t.where = fn
					break
				}
			}
		}
		d.psThreads = append(d.psThreads, t)
	}
	i := strings.Index(l, `msg=`)
	if i < 0 {
		return
	}
	var at time.Time
	if m := flintTimeRE.FindStringSubmatch(l); m != nil {
		at, _ = time.Parse(time.RFC3339Nano, m[1])
		if d.flintStart.IsZero() {
			d.flintStart = at
		}
	}
	f := fields(l[i:])
	if msg := f["msg"]; strings.HasPrefix(msg, "dump: ") || strings.HasPrefix(msg, vmm.ImpossibleStateMsg) || msg == "virtio-net counters" {
		d.dumpLine(msg, at, f)
	}
}

// frameFunc is a kernel stack frame's function: "kvm_vcpu_block" for
// "kvm_vcpu_block+0x52/0xc0".
func frameFunc(fr string) string {
	fn, _, _ := strings.Cut(fr, "+")
	return fn
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// evidence reads a boot's output and returns one line (at most
// maxEvidence characters) of what decides hang against loss: the guest's
// last heartbeat and how long before the first dump it came, guest kernel
// lockups, net-case.sh's stall report, the state dumps (with two or more,
// what changed between the last two: each vCPU's RIP, interrupt flag, MP
// state and exit counts, each queue's indices and engine, the net
// counters; the vCPUs that did not leave KVM_RUN or whose state was lost),
// and where flint's threads wait. A boot without a dump says so.
func evidence(out string) string {
	var d digest
	for _, l := range strings.Split(out, "\n") {
		d.line(l)
	}
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	add(d.guestPart())
	add(strings.Join(d.kernNotes[max(0, len(d.kernNotes)-1):], ""))
	if d.stall != nil {
		add(fmt.Sprintf("NET-HOST-STALL at %ss, %ss without a packet", d.stall[0], d.stall[1]))
	}
	add(d.dumpPart())
	threads := d.threads
	if threads == nil {
		threads = d.psThreads
	}
	add(threadsPart(threads))
	s := evidencePrefix + strings.Join(parts, "; ")
	if len(s) > maxEvidence {
		s = s[:maxEvidence-3] + "..."
	}
	return s
}

// guestPart is the guest's progress: its last heartbeat (and since when
// its counters stood still), its kernel's last timestamp, its last step.
func (d *digest) guestPart() string {
	var p []string
	if d.lastBeat != nil {
		s := fmt.Sprintf("guest last beat t=%ss rx=%s tx=%s", d.lastBeat[0], d.lastBeat[1], d.lastBeat[2])
		if d.frozenSince != d.lastBeat[0] {
			s += " (same since t=" + d.frozenSince + "s)"
		}
		if len(d.dumps) > 0 && !d.flintStart.IsZero() && !d.dumps[0].at.IsZero() {
			up := d.dumps[0].at.Sub(d.flintStart).Seconds()
			if t, err := strconv.ParseFloat(d.lastBeat[0], 64); err == nil && up > t {
				s += fmt.Sprintf(" ~%.0fs before dump1 (flint up %.0fs)", up-t, up)
			}
		}
		p = append(p, s)
	} else {
		p = append(p, "no guest heartbeat")
	}
	if t, err := strconv.ParseFloat(d.kernT, 64); err == nil {
		p = append(p, fmt.Sprintf("guest kernel last [%.1fs]", t))
	}
	if d.lastStep != "" {
		p = append(p, "last step "+clip(strings.TrimSpace(d.lastStep[strings.Index(d.lastStep, "NET-"):]), 40))
	}
	return strings.Join(p, ", ")
}

var mpStates = map[string]string{"0": "runnable", "1": "uninitialized", "2": "init-received", "3": "halted", "4": "sipi-received"}

// dumpPart describes the dumps: the last one, or what changed from the
// one before it.
func (d *digest) dumpPart() string {
	if len(d.dumps) == 0 {
		return "no state dump in the output (flint never dumped, or its log was cut)"
	}
	cur := d.dumps[len(d.dumps)-1]
	var prev *dumpRec
	head := "1 dump"
	if n := len(d.dumps); n > 1 {
		prev = d.dumps[n-2]
		head = fmt.Sprintf("%d dumps, dump%d->dump%d", n, n-1, n)
		if !prev.at.IsZero() && !cur.at.IsZero() {
			head += fmt.Sprintf(" %.0fs apart", cur.at.Sub(prev.at).Seconds())
		}
	}
	var p []string
	ids := make([]string, 0, len(cur.vcpus))
	for id := range cur.vcpus {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		v := vcpuDelta(id, cur.vcpus[id], prevOf(prev, func(r *dumpRec) map[string]string { return r.vcpus[id] }))
		if a := cur.again[id]; a != nil {
			v += " (2nd look " + a["rip"] + ")"
		}
		p = append(p, v)
	}
	if len(p) == 0 {
		p = append(p, "no vCPU lines")
	}
	s := head + ": " + strings.Join(p, ", ")
	if len(cur.stuck) > 0 {
		s += fmt.Sprintf("; %d vCPU(s) did not leave KVM_RUN (%s)", len(cur.stuck), strings.Join(cur.stuck, " "))
	}
	if len(cur.lost) > 0 {
		s += "; " + strings.Join(cur.lost, " ") + " state lost (impossible or reset)"
	}
	if a := ioapicPart(cur.ioapic); a != "" {
		s += "; " + a
	}
	if q := queuesPart(cur, prev); q != "" {
		s += "; " + q
	}
	return s
}

// ioapicPart names the IOAPIC pins with an interrupt in flight: latched
// (irr) or waiting for an EOI (remote_irr).
func ioapicPart(f map[string]string) string {
	if f == nil {
		return ""
	}
	irr, _ := strconv.ParseUint(strings.TrimPrefix(f["irr"], "0x"), 16, 32)
	var p []string
	for pin := range 24 {
		e, ok := f["pin"+strconv.Itoa(pin)]
		if ok && (irr&(1<<pin) != 0 || strings.Contains(e, "remote_irr")) {
			p = append(p, fmt.Sprintf("pin%d %s", pin, e))
		}
	}
	if len(p) == 0 {
		return ""
	}
	return "ioapic irr=" + f["irr"] + " " + strings.Join(p, " ")
}

func prevOf(prev *dumpRec, get func(*dumpRec) map[string]string) map[string]string {
	if prev == nil {
		return nil
	}
	return get(prev)
}

// vcpuDelta is one vCPU: "vcpu0 rip 0x... (same) cs=0x10 if=on runnable
// exits io+0 mmio+0 intr+1" (with no earlier dump, the counts).
func vcpuDelta(id string, f, old map[string]string) string {
	ifl := "off"
	if f["interrupts_enabled"] == "true" {
		ifl = "on"
	}
	mp := mpStates[f["mp_state"]]
	if mp == "" {
		mp = "mp=" + f["mp_state"]
	}
	s := "vcpu" + id + " " + f["rip"]
	if old != nil {
		if old["rip"] == f["rip"] {
			s += " same"
		} else {
			s += " (was " + old["rip"] + ")"
		}
	}
	if f["cs"] != "0x10" { // the kernel's code segment; other ones are worth a look
		s += " cs=" + f["cs"]
	}
	s += " if=" + ifl + " " + mp
	// An interrupt requested at the LAPIC, in service, or being injected.
	for _, k := range []string{"lapic_irr", "lapic_isr"} {
		if v := f[k]; v != "" && v != "-" {
			s += " " + strings.TrimPrefix(k, "lapic_") + "=" + v
		}
	}
	if f["intr_injected"] == "true" {
		s += " injecting=" + f["intr_nr"]
	}
	for _, k := range []string{"io", "mmio", "intr"} {
		n, _ := strconv.ParseUint(f[k+"_exits"], 10, 64)
		if old == nil {
			s += fmt.Sprintf(" %s=%d", k, n)
			continue
		}
		o, _ := strconv.ParseUint(old[k+"_exits"], 10, 64)
		s += fmt.Sprintf(" %s+%d", k, int64(n-o))
	}
	return s
}

// queuesPart describes the net devices' queues that were used, and any
// other queue that owes a notification (a split queue waiting for a kick with buffers
// pending, a packed one with kick_owed or irq_owed), and the net
// counters' change.
func queuesPart(cur, prev *dumpRec) string {
	var p []string
	for _, k := range cur.qorder {
		f := cur.queues[k]
		dev := f["dev"]
		isNet := cur.devs[dev]["type"] == "net" || strings.HasPrefix(dev, "net")
		owes := f["kick_owed"] == "true" || f["irq_owed"] == "true" ||
			(f["engine"] == "waiting-kick" && f["avail_pending"] != "" && f["avail_pending"] != "0")
		unused := f["packed"] != "true" && f["avail_idx"] == "0" && f["used_idx"] == "0" && f["last_avail"] == "0"
		if !isNet && !owes || unused {
			continue
		}
		if f["ready"] != "true" {
			p = append(p, fmt.Sprintf("%s %s not ready", dev, f["name"]))
			continue
		}
		s := fmt.Sprintf("%s %s %s", dev, f["name"], f["engine"])
		if f["packed"] == "true" {
			s += " at " + f["last_avail"] + " used " + f["next_used"]
			for _, o := range []string{"kick_owed", "irq_owed"} {
				if f[o] != "" {
					s += " " + o + "=" + f[o]
				}
			}
		} else {
			s += fmt.Sprintf(" a/u %s/%s", f["avail_idx"], f["used_idx"])
			if f["avail_pending"] != "" && f["avail_pending"] != "0" {
				s += " pend " + f["avail_pending"]
			}
		}
		if f["vector_pending"] == "true" || f["vector_masked"] == "true" {
			s += fmt.Sprintf(" vector masked=%s pending=%s", f["vector_masked"], f["vector_pending"])
		}
		if old := prevOf(prev, func(r *dumpRec) map[string]string { return r.queues[k] }); old != nil {
			if old["last_avail"] == f["last_avail"] && old["next_used"] == f["next_used"] && old["avail_idx"] == f["avail_idx"] {
				s += " same"
			} else {
				s += " moved"
			}
		}
		p = append(p, s)
	}
	taps := make([]string, 0, len(cur.counters))
	for tap := range cur.counters {
		taps = append(taps, tap)
	}
	sort.Strings(taps)
	for _, tap := range taps {
		c := cur.counters[tap]
		old := prevOf(prev, func(r *dumpRec) map[string]string { return r.counters[tap] })
		if old == nil {
			p = append(p, fmt.Sprintf("%s rx=%s tx=%s", tap, c["rx_packets"], c["tx_packets"]))
			continue
		}
		rx, _ := strconv.ParseInt(c["rx_packets"], 10, 64)
		orx, _ := strconv.ParseInt(old["rx_packets"], 10, 64)
		tx, _ := strconv.ParseInt(c["tx_packets"], 10, 64)
		otx, _ := strconv.ParseInt(old["tx_packets"], 10, 64)
		p = append(p, fmt.Sprintf("%s rx+%d tx+%d", tap, rx-orx, tx-otx))
	}
	return strings.Join(p, ", ")
}

// threadsPart counts flint's threads by where they wait (with their state
// unless sleeping; a thread without a wait channel by its first KVM
// frame): "flint threads: 5 futex_wait_queue, 1 do_epoll_wait, 1 R
// kvm_arch_vcpu_ioctl_run".
func threadsPart(ts []thread) string {
	if len(ts) == 0 {
		return ""
	}
	count := map[string]int{}
	var keys []string
	for _, t := range ts {
		k := t.where
		if k == "0" {
			k = ""
		}
		if t.state != "S" || k == "" {
			k = strings.TrimSpace(t.state + " " + k)
		}
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	sort.SliceStable(keys, func(i, j int) bool { return count[keys[i]] > count[keys[j]] })
	p := make([]string, len(keys))
	for i, k := range keys {
		p[i] = fmt.Sprintf("%d %s", count[k], k)
	}
	return "flint threads: " + strings.Join(p, ", ")
}

// evidenceLines splits a digest into at most maxEvidenceLines lines of
// at most evidenceWidth characters after their "ev N/M: " label, cut at
// "; " or ", ", so that each survives make test's summary whole; what
// does not fit ends in "...".
func evidenceLines(ev string) []string {
	var out []string
	rest := strings.TrimPrefix(ev, evidencePrefix)
	for rest != "" {
		if len(out) == maxEvidenceLines-1 && len(rest) > evidenceWidth {
			rest = rest[:evidenceWidth-3] + "..."
		}
		if len(rest) <= evidenceWidth {
			out = append(out, rest)
			break
		}
		cut := max(strings.LastIndex(rest[:evidenceWidth], "; "), strings.LastIndex(rest[:evidenceWidth], ", "))
		if cut < evidenceWidth/3 {
			cut = evidenceWidth
		}
		out = append(out, rest[:cut])
		rest = strings.TrimLeft(rest[cut:], ";, ")
	}
	for i := range out {
		out[i] = fmt.Sprintf("ev %d/%d: %s", i+1, len(out), out[i])
	}
	return out
}

// goroutineDumpRE finds the start of a Go goroutine dump (SIGQUIT with
// GOTRACEBACK=all): "SIGQUIT: quit" or the first goroutine's header.
var goroutineDumpRE = regexp.MustCompile(`(^|: )(SIGQUIT: quit|goroutine \d+ (gp=\S+ m=\S+ (mp=\S+ )?)?\[)`)

// outputTail is the end of a boot's output for a failure message: the
// last 80 lines, or when a goroutine dump is in them, the 40 lines before
// the dump (where the state dumps and stall lines are), a line saying how
// many were left out, and the last 20 lines.
func outputTail(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	start := -1
	for i, l := range lines {
		if goroutineDumpRE.MatchString(l) {
			start = i
			break
		}
	}
	if start < 0 || len(lines) <= 80 {
		return tail(out, 80)
	}
	before := lines[max(0, start-40):start]
	last := max(start, len(lines)-20)
	s := strings.Join(before, "\n") + "\n"
	if skipped := last - start; skipped > 0 {
		s += fmt.Sprintf("[... %d lines of flint's goroutine dump left out ...]\n", skipped)
	}
	return s + strings.Join(lines[last:], "\n")
}

// failer is the part of *testing.T that cutOff and logFailedOutput use
// (their tests record).
type failer interface {
	Helper()
	Log(args ...any)
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// cutOff fails the test for a boot the nested host cut off or that hung
// (what says which and why): the message's first line is what and the
// evidence digest; before it the digest is logged in summary-sized lines
// (make test's summary shows each failed test's last messages, each cut
// at 200 characters); after it comes the output's tail without the
// goroutine dump's bulk.
func cutOff(t failer, what string, r *result) {
	t.Helper()
	ev := evidence(r.evidenceText())
	for _, l := range evidenceLines(ev) {
		t.Log(l)
	}
	t.Fatalf("%s; %s; its output so far:\n%s", what, ev, outputTail(r.output))
}

// evidenceText is the output evidence reads: the boot's, and L1's last
// process dump when the harness kept one for a hung boot.
func (r *result) evidenceText() string {
	if len(r.l1ps) == 0 {
		return r.output
	}
	return r.output + "\n" + strings.Join(r.l1ps, "\n")
}

// logFailedOutput logs a failed case's output for the summary: its tail
// (without the goroutine dump's bulk) headed by the first error, then,
// when flint dumped its state, net-case.sh reported a stall or the boot
// hung, the
// evidence digest in summary-sized lines, last, so that make test's
// summary (each failed test's last messages) carries it.
func logFailedOutput(t failer, first string, r *result) {
	t.Helper()
	t.Logf("%s; the output's end:\n%s", first, outputTail(r.output))
	if strings.Contains(r.output, `msg="dump: `) || strings.Contains(r.output, "NET-HOST-STALL") || r.hung {
		for _, l := range evidenceLines(evidence(r.evidenceText())) {
			t.Log(l)
		}
	}
}
