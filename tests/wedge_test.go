package e2e

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The nested host (L1) can wedge while flint runs a guest in it: both L1 CPUs stay in
// the kernel ("watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [flint:109]" every
// ~28 s, RCU stalls), flint's vCPU thread cannot be killed, and the job's per-boot
// timeout never fires. hostWatch reads L1's console as it streams, notices such a
// wedge and says where L1 is stuck, so runNested can end the session at once instead
// of waiting for the session timeout, and run the boots that never finished once
// more in a fresh L1.

// nestedL1Append is added to L1's kernel command line for every test session
// (nested-host.sh passes the same by default): softlockup_all_cpu_backtrace=1 makes
// a soft lockup report carry every CPU's backtrace (the other CPU is usually the one
// holding things up); loglevel=5 prints those backtraces, which the kernel logs at
// the default level that `quiet` hides (it costs ~9 more lines of L1 boot
// messages); console_msg_format=syslog starts each L1 kernel line with "<level>",
// which tells L1's messages from the guest's (L2 is the same kernel, and its
// console is on the same stream): a soft lockup inside the guest is a guest
// failure, never a wedged host.
const nestedL1Append = "softlockup_all_cpu_backtrace=1 loglevel=5 console_msg_format=syslog"

const (
	// defaultWedgeGrace is how long after the first soft lockup report the
	// session is left running, so the backtraces and the RCU stall report reach
	// the log. A boot that ends in that time cancels the verdict.
	defaultWedgeGrace = 20 * time.Second
	// bootDeadlineSlack is added to a boot's own timeout (and the 10 s kill grace
	// of `timeout -k 10` in the job) before a boot that has not ended means L1
	// itself is stuck (without a heartbeat), or flint (with one).
	bootDeadlineSlack = 40 * time.Second
	// defaultL1Silence is how long L1's heartbeat (nested-host.sh --beat, one
	// line a second) may stay silent before L1 counts as lost. Measured: beats
	// arrive every 1.0-2.2 s, also with a busy one-CPU L1 on a machine with a
	// load average of 5; lost L1s went silent for good (QEMU's vCPU threads idle).
	defaultL1Silence = 30 * time.Second
	// dumpWait is how long the harness leaves a session running after it asked
	// L1 for flint's state (nested-host.sh --control), so the dump reaches the log.
	dumpWait = 15 * time.Second
)

var (
	// An L1 kernel message: "<4>[  123.456789] text" (console_msg_format=syslog).
	// Not anchored: a kernel line can land in the middle of a guest console line.
	l1KmsgRE     = regexp.MustCompile(`<[0-7]>\[\s*\d+\.\d+\] ?(.*)$`)
	softLockupRE = regexp.MustCompile(`soft lockup - CPU#(\d+) stuck for (\d+)s! \[(.*)\]`)
	rcuStallRE   = regexp.MustCompile(`rcu: INFO: \S+ (detected stalls|self-detected stall)`)
	// "CPU: 1 PID: 29 Comm: kworker/1:1 Not tainted ..." starts a register dump.
	regsCPURE = regexp.MustCompile(`^CPU: (\d+) PID: \d+ Comm: (\S+)`)
	// "RIP: 0010:smp_call_function_many_cond+0x12a/0x380": kernel-mode RIP.
	kernelRIPRE = regexp.MustCompile(`^RIP: 0010:(\S+)`)
)

// l1CPU is where one L1 CPU was seen stuck.
type l1CPU struct {
	task string // "comm:pid" from the soft lockup line, or comm from the register dump
	rip  string // kernel function+offset, "" if no register dump was seen
	secs int    // longest "stuck for Ns"
}

// hostWatch follows L1's console output line by line (it is an io.Writer) and
// decides when the nested host is wedged. Its clock is injectable for tests.
type hostWatch struct {
	mu       sync.Mutex
	now      func() time.Time
	grace    time.Duration            // see defaultWedgeGrace
	timeouts map[string]time.Duration // boot name -> its timeout
	buf      []byte

	cur      string    // boot running now ("" between boots)
	deadline time.Time // when cur must have ended

	lockupAt  time.Time // first soft lockup since the last boot ended (zero: none)
	cpus      map[int]*l1CPU
	dumpCPU   int // CPU of the register dump being read, -1 outside one
	rcuStalls int
	reason    string // set once the host is judged wedged

	// L1's heartbeat (beatWriter), and how long it may pause.
	l1Beat
	silence time.Duration // see defaultL1Silence
	// quiet is how long the running boot's console may stay silent while L1
	// beats (boot.quiet; 0: not watched); lastOut is when it last printed.
	quiet   map[string]time.Duration
	lastOut time.Time
	// hang is set with reason when L1 is alive and the boot is not: a
	// suspected flint hang, to dump and fail, never to rerun. hangBoot is
	// the boot it was seen in: the dump's wait may let that boot end and
	// the next one start before the session is stopped.
	hang     bool
	hangBoot string
	// guestDone: cur's guest printed its script's exit status, so a
	// silence after it is the VMM not exiting, not a stalled guest.
	guestDone bool
}

func newHostWatch(boots []boot, now func() time.Time) *hostWatch {
	w := &hostWatch{now: now, grace: defaultWedgeGrace, timeouts: map[string]time.Duration{},
		cpus: map[int]*l1CPU{}, dumpCPU: -1, silence: defaultL1Silence, quiet: map[string]time.Duration{}}
	for _, b := range boots {
		w.timeouts[b.name] = b.timeout
		w.quiet[b.name] = b.quiet
	}
	return w
}

// lines calls fn for each complete line appended to *buf by p.
func lines(buf *[]byte, p []byte, fn func(string)) {
	*buf = append(*buf, p...)
	for {
		i := bytes.IndexByte(*buf, '\n')
		if i < 0 {
			return
		}
		fn(strings.TrimRight(string((*buf)[:i]), "\r"))
		*buf = (*buf)[i+1:]
	}
}

// l1Beat follows L1's heartbeat stream (nested-host.sh --beat): "L1-BEAT n=N
// up=S ..." every second, and after some beats a block of "L1-PS ..." lines
// (every process's state). Its owner serialises access.
type l1Beat struct {
	beatBuf   []byte
	beats     int
	beatAt    time.Time // when the last beat came
	lastBeat  string
	ps, psNew []string // the newest complete L1-PS block, and the one being read
}

// write takes a chunk of the stream that arrived at now.
func (b *l1Beat) write(p []byte, now time.Time) {
	lines(&b.beatBuf, p, func(line string) {
		switch {
		case strings.HasPrefix(line, "L1-BEAT "):
			b.beats++
			b.beatAt, b.lastBeat = now, line
			if len(b.psNew) > 0 {
				b.ps, b.psNew = b.psNew, nil
			}
		case strings.HasPrefix(line, "L1-PS "):
			b.psNew = append(b.psNew, line)
		}
	})
}

// describe is the last beat for logs: "L1-BEAT n=5 up=12.3 (2s ago)".
func (b *l1Beat) describe(now time.Time) string {
	if b.beats == 0 {
		return "no heartbeat from L1"
	}
	return fmt.Sprintf("%s (%v ago)", b.lastBeat, now.Sub(b.beatAt).Round(time.Second))
}

// beatWriter returns the io.Writer that L1's heartbeat stream goes to.
func (w *hostWatch) beatWriter() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.write(p, w.now())
		return len(p), nil
	})
}

// alive reports whether L1 has beaten within the silence limit. Caller
// holds mu.
func (w *hostWatch) alive(now time.Time) bool {
	return w.beats > 0 && now.Sub(w.beatAt) < w.silence
}

// processes returns the newest L1-PS block (what every L1 process, and each
// flint thread, was doing at the last dump L1 sent).
func (w *hostWatch) processes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ps...)
}

// heartbeat describes the last beat, for logs.
func (w *hostWatch) heartbeat() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.describe(w.now())
}

func (w *hostWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines(&w.buf, p, w.line)
	return len(p), nil
}

func (w *hostWatch) line(line string) {
	w.lastOut = w.now()
	if m := jobStartRE.FindStringSubmatch(line); m != nil {
		w.cur, w.guestDone = m[1], false
		w.deadline = w.now().Add(w.timeouts[m[1]] + 10*time.Second + bootDeadlineSlack)
		return
	}
	if w.cur != "" && strings.Contains(line, guestExitMarker) {
		w.guestDone = true
	}
	if m := jobEndRE.FindStringSubmatch(line); m != nil {
		// A boot ended: L1 is making progress, whatever it reported before.
		w.cur = ""
		w.lockupAt = time.Time{}
		return
	}
	if w.cur != "" && w.reason == "" && vcpuStuck(line) {
		// A kicked vCPU thread that never comes out of KVM_RUN (for a
		// dump, or at the stop) is stuck in L1's kernel: the emulator
		// lost that vCPU (its SVM emulation, as in rerunLostStates), and
		// the thread cannot be killed, so the L1 is spent for later
		// boots too (seen 2026-12-06: the boots
		// after such a one ran to their timeouts printing nothing). A
		// lost host: the unfinished boots run again in a fresh one.
		w.reason = fmt.Sprintf("L1 lost boot %s's vCPU: flint's kicked vCPU thread never left KVM_RUN (%q)", w.cur, strings.TrimSpace(line))
		return
	}
	km := l1KmsgRE.FindStringSubmatch(line)
	if km == nil {
		return // guest console output or the job's own lines
	}
	k := km[1]
	if m := softLockupRE.FindStringSubmatch(k); m != nil {
		cpu, _ := strconv.Atoi(m[1])
		secs, _ := strconv.Atoi(m[2])
		c := w.cpu(cpu)
		c.task = m[3]
		if secs > c.secs {
			c.secs = secs
		}
		if w.lockupAt.IsZero() {
			w.lockupAt = w.now()
		}
		return
	}
	if rcuStallRE.MatchString(k) {
		w.rcuStalls++
		return
	}
	if m := regsCPURE.FindStringSubmatch(k); m != nil {
		w.dumpCPU, _ = strconv.Atoi(m[1])
		c := w.cpu(w.dumpCPU)
		if c.task == "" {
			c.task = m[2]
		}
		return
	}
	if m := kernelRIPRE.FindStringSubmatch(k); m != nil && w.dumpCPU >= 0 {
		if c := w.cpu(w.dumpCPU); c.rip == "" {
			c.rip = m[1]
		}
		w.dumpCPU = -1
	}
}

func (w *hostWatch) cpu(n int) *l1CPU {
	c := w.cpus[n]
	if c == nil {
		c = &l1CPU{}
		w.cpus[n] = c
	}
	return c
}

// check returns why the nested host's session must end, or "" while it looks
// healthy. Call it periodically while the session runs; once it returns a
// reason it keeps doing so. Hung tells which kind the reason is.
//
// With a heartbeat (nested-host.sh --beat) the two kinds of silence are told
// apart: L1 itself silent (no beat for the silence limit), or its kernel
// reporting soft lockups, is a lost host (the emulator's fault: rerun what did
// not finish); L1 beating while the running boot overran its timeout, or kept
// its console silent longer than its quiet limit, is a suspected flint hang
// (dump flint's state and fail the boot, never rerun it). Without a
// heartbeat an overrun boot counts as a lost host, as L1 cannot be asked.
func (w *hostWatch) check() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reason != "" {
		return w.reason
	}
	now := w.now()
	alive := w.alive(now)
	switch {
	case w.beats > 0 && !alive:
		w.reason = fmt.Sprintf("L1 silent: no heartbeat for %v (last: %s)", now.Sub(w.beatAt).Round(time.Second), w.lastBeat)
		if w.cur != "" {
			w.reason += "; during boot " + w.cur
		}
	case !w.lockupAt.IsZero() && now.Sub(w.lockupAt) >= w.grace:
		w.reason = "L1 soft lockup in " + w.whereLocked()
	case w.cur != "" && now.After(w.deadline) && alive:
		w.hang, w.hangBoot = true, w.cur
		w.reason = fmt.Sprintf("suspected flint hang: boot %s still running %v after its %v timeout while L1 stays alive (%s)%s",
			w.cur, (10*time.Second + bootDeadlineSlack).Round(time.Second), w.timeouts[w.cur], w.lastBeat, w.afterGuestExit())
	case w.cur != "" && now.After(w.deadline):
		w.reason = fmt.Sprintf("boot %s still running %v after its %v timeout (L1 could not stop flint)",
			w.cur, (10*time.Second + bootDeadlineSlack).Round(time.Second), w.timeouts[w.cur])
		if len(w.cpus) > 0 {
			w.reason += "; L1 soft lockup in " + w.whereLocked()
		}
	case w.cur != "" && w.quiet[w.cur] > 0 && now.Sub(w.lastOut) >= w.quiet[w.cur] && alive:
		w.hang, w.hangBoot = true, w.cur
		w.reason = fmt.Sprintf("suspected flint hang: boot %s printed nothing for %v while L1 stays alive (%s)%s",
			w.cur, now.Sub(w.lastOut).Round(time.Second), w.lastBeat, w.afterGuestExit())
	}
	return w.reason
}

// guestExitMarker is what a --script guest prints when its script is done
// (mkinitramfs-guest.sh), before it reboots.
const guestExitMarker = "FLINT-SCRIPT-EXIT="

// afterGuestExit qualifies a hang seen after the guest's script was done:
// the guest finished its work and rebooted, and the VMM did not exit (a
// different failure from a guest stalled in its transfers).
func (w *hostWatch) afterGuestExit() string {
	if !w.guestDone {
		return ""
	}
	return "; the guest had finished (" + guestExitMarker + " printed): the VMM did not exit"
}

// hungIn names the boot a suspected hang was seen in ("" if none).
func (w *hostWatch) hungIn() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hangBoot
}

// hung reports whether check's reason is a suspected flint hang (L1 alive)
// rather than a lost host.
func (w *hostWatch) hung() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hang
}

// finish judges a session that has ended: a soft lockup reported during a boot
// that never ended is a wedge even if the session ended before the grace period passed
// (QEMU was killed, or L1 panicked).
func (w *hostWatch) finish() string {
	if r := w.check(); r != "" {
		return r
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.lockupAt.IsZero() && w.cur != "" {
		w.reason = "L1 soft lockup in " + w.whereLocked()
	}
	return w.reason
}

// whereLocked describes the stuck CPUs: "CPU#0 flint:109 at kvm_...+0x1/0x2 (26s); ...".
func (w *hostWatch) whereLocked() string {
	ids := make([]int, 0, len(w.cpus))
	for id := range w.cpus {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var parts []string
	for _, id := range ids {
		c := w.cpus[id]
		s := fmt.Sprintf("CPU#%d %s", id, c.task)
		if c.rip != "" {
			s += " at " + c.rip
		}
		if c.secs > 0 {
			s += fmt.Sprintf(" (stuck %ds)", c.secs)
		}
		parts = append(parts, s)
	}
	s := strings.Join(parts, ", ")
	if w.rcuStalls > 0 {
		s += fmt.Sprintf("; %d RCU stall report(s)", w.rcuStalls)
	}
	return s
}
