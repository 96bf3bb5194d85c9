package verdict

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Splat is one kernel report found on the console.
type Splat struct {
	Kind Kind `json:"kind"`
	// Title is the line that identified the splat, without its prefixes
	// ("WARNING: CPU: 0 PID: 1 at ...").
	Title string `json:"title"`
	// Line is the console line it was on, counting from 1.
	Line int `json:"line"`
	// Uptime is the kernel's timestamp on that line ("12.345678"), empty
	// if the console has none.
	Uptime string `json:"uptime,omitempty"`
	// Excerpt holds the splat's first lines as the console showed them
	// (escape sequences and level prefixes removed), from its preamble
	// ("cut here", "=====") to its end marker or the excerpt limit.
	Excerpt []string `json:"excerpt"`
	// Truncated says the splat went on past the excerpt.
	Truncated bool `json:"truncated,omitempty"`
}

// Limits bound the scanner's memory (zero fields take the defaults) and
// say what the console looks like.
type Limits struct {
	// Splats is how many splats are kept with excerpts (default 32);
	// later ones are only counted, except the first of each kind, which
	// is kept too (so at most Splats plus the number of kinds).
	Splats int
	// ExcerptLines is how many lines each excerpt keeps (default 40).
	ExcerptLines int
	// LineBytes is how much of one console line is kept (default 512);
	// the rest of a longer line is dropped.
	LineBytes int
	// Unstamped says the kernel stamps none of its lines: its command
	// line turns printk.time off (PrintkTime). Then every line counts,
	// and one that starts with what looks like a timestamp (a program
	// printing "[1.0] ...") does not switch the scanner to reading only
	// stamped lines, which would ignore the kernel's own from there on;
	// a stamped line still counts (the guest may turn stamps on). Without
	// it the scanner tells from the console whether the kernel stamps its
	// lines.
	Unstamped bool
}

func (l Limits) withDefaults() Limits {
	if l.Splats <= 0 {
		l.Splats = 32
	}
	if l.ExcerptLines <= 0 {
		l.ExcerptLines = 40
	}
	if l.LineBytes <= 0 {
		l.LineBytes = 512
	}
	return l
}

// Scanner finds splats in a stream of kernel console bytes. Write it the
// bytes as they come, in pieces of any size; lines may be split across
// writes. It is safe for concurrent use and its memory is bounded by its
// Limits whatever it is fed.
//
// Once the console has shown a printk timestamp ("[    1.234567] "), lines
// without one are not the kernel's (init or a program writing to
// /dev/console) and are ignored: a program that prints "WARNING:" does not
// fail the run. A line with a timestamp further on is the kernel's record
// continuing a program's unfinished line, read from that timestamp. A
// kernel booted with printk.time=0 has no timestamps; then every line
// counts, and the caller says so (Limits.Unstamped): a program's line that
// starts with a timestamp must not switch the scanner to stamps.
type Scanner struct {
	lim     Limits
	onSplat func(Splat)

	mu   sync.Mutex
	line []byte // the current line, at most lim.LineBytes
	// fullKeeps, once fullKnown, is keepsStart of the full line.
	fullKnown, fullKeeps bool
	lineNo               int
	stamped              bool   // a timestamped line has been seen
	preamble             string // the previous line, if it was "cut here" or "====="
	splats               []Splat
	counts               [numKinds]int
	open                 *Splat // the splat whose excerpt is being collected
	spare                Splat  // the open splat when splats is full
	openOops             bool   // the open splat has had its "Oops:" line
}

// NewScanner returns a scanner. onSplat, if not nil, is called with each
// new splat's first line as soon as it is seen (Excerpt holds the preamble
// and that line), without the scanner's lock held; the VMM uses it to stop
// a panicked guest at once.
func NewScanner(lim Limits, onSplat func(Splat)) *Scanner {
	lim = lim.withDefaults()
	return &Scanner{lim: lim, onSplat: onSplat, line: make([]byte, 0, lim.LineBytes)}
}

// Write implements io.Writer; it never fails.
func (s *Scanner) Write(p []byte) (int, error) {
	var found []Splat
	s.mu.Lock()
	for _, b := range p {
		if b == '\n' {
			if sp, ok := s.endLine(); ok {
				found = append(found, sp)
			}
			continue
		}
		if len(s.line) < s.lim.LineBytes {
			s.line = append(s.line, b)
		} else if (b == '[' || b == '<') && !s.keepsStart() {
			// A program's unfinished line filled the buffer: keep
			// what may be the kernel's record continuing it.
			s.line = append(s.line[:0], b)
			s.fullKnown = false
		}
	}
	s.mu.Unlock()
	s.report(found)
	return len(p), nil
}

// Flush ends a last line that has no newline (call it when the console
// closes).
func (s *Scanner) Flush() {
	s.mu.Lock()
	var found []Splat
	if len(s.line) > 0 {
		if sp, ok := s.endLine(); ok {
			found = append(found, sp)
		}
	}
	s.mu.Unlock()
	s.report(found)
}

func (s *Scanner) report(found []Splat) {
	if s.onSplat == nil {
		return
	}
	for _, sp := range found {
		s.onSplat(sp)
	}
}

// Splats returns copies of the splats kept, in console order.
func (s *Scanner) Splats() []Splat {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Splat, len(s.splats))
	for i, sp := range s.splats {
		sp.Excerpt = append([]string(nil), sp.Excerpt...)
		out[i] = sp
	}
	return out
}

// Count returns how many splats of kind k were seen, kept or not.
func (s *Scanner) Count(k Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k >= numKinds {
		return 0
	}
	return s.counts[k]
}

// Seen returns the set of kinds seen.
func (s *Scanner) Seen() Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	var set Set
	for k, n := range s.counts {
		if n > 0 {
			set = set.With(Kind(k))
		}
	}
	return set
}

// keepsStart reports whether the current line is the kernel's from its
// start: it starts with a timestamp or, before any was seen, a splat.
// It is worked out once per full buffer.
func (s *Scanner) keepsStart() bool {
	if !s.fullKnown {
		msg, _, stamped := stripPrefix(clean(s.line))
		s.fullKeeps, s.fullKnown = stamped || !s.stamped && startsSplat(msg), true
	}
	return s.fullKeeps
}

func startsSplat(msg string) bool {
	_, ok := classify(strings.TrimLeft(msg, " \t"))
	return ok
}

// endLine classifies the current line and resets it. It returns a splat
// that starts on this line.
func (s *Scanner) endLine() (Splat, bool) {
	s.lineNo++
	text := clean(s.line)
	s.line, s.fullKnown = s.line[:0], false
	msg, uptime, stamped := stripPrefix(text)
	if !stamped && (s.stamped || !startsSplat(msg)) {
		// Before a timestamp was seen, only a splat's: a program's
		// "[1.0]" must not switch a printk.time=0 log to stamps.
		if m, u, ok := stampMidLine(text); ok && (s.stamped || startsSplat(m)) {
			msg, uptime, stamped = m, u, true
		}
	}
	if stamped && !s.lim.Unstamped {
		s.stamped = true // never with Unstamped: every line stays the kernel's
	} else if !stamped && s.stamped {
		return Splat{}, false // not the kernel's line
	}
	msg = strings.TrimLeft(msg, " \t")
	kind, isSplat := classify(msg)
	if isSplat && s.open != nil && s.continues(kind) {
		s.openOops = true
		s.add(text)
		return Splat{}, false
	}
	if isSplat {
		return s.start(kind, msg, uptime, text), true
	}
	if s.open != nil {
		switch {
		case isCutHere(msg):
			s.close() // a new WARNING or BUG follows
		case isSeparator(msg) && !closesWithSeparator(s.open.Kind):
			s.close() // the rule that opens the next report
		default:
			s.add(text)
			if s.open != nil && (isEnd(msg) || isSeparator(msg) && len(s.open.Excerpt) > 2 && closesWithSeparator(s.open.Kind)) {
				s.close()
				s.preamble = ""
				return Splat{}, false
			}
		}
	}
	if isCutHere(msg) || isSeparator(msg) {
		s.preamble = text
	} else {
		s.preamble = ""
	}
	return Splat{}, false
}

// continues reports whether a splat line of kind k belongs to the open
// splat: the "Oops:" line that follows "BUG: unable to handle ...",
// "kernel BUG at ..." or "general protection fault".
func (s *Scanner) continues(k Kind) bool {
	return k == Oops && !s.openOops && (s.open.Kind == Oops || strings.HasPrefix(s.open.Title, "kernel BUG at "))
}

func (s *Scanner) start(k Kind, msg, uptime, text string) Splat {
	s.close()
	s.counts[k]++
	sp := Splat{Kind: k, Title: msg, Line: s.lineNo, Uptime: uptime}
	if s.preamble != "" {
		sp.Excerpt = append(sp.Excerpt, s.preamble)
	}
	s.preamble = ""
	sp.Excerpt = append(sp.Excerpt, text)
	s.openOops = strings.HasPrefix(msg, "Oops:") || strings.HasPrefix(msg, "general protection fault")
	if len(s.splats) < s.lim.Splats || s.counts[k] == 1 {
		// The first of each kind is kept even past the limit: the
		// verdict judges the kept splats, and an oops after a
		// flood of warnings that do not fail the run must fail it.
		s.splats = append(s.splats, sp)
		s.open = &s.splats[len(s.splats)-1]
	} else {
		// Not kept, but followed, so its own lines are not counted as
		// further splats.
		s.spare = sp
		s.open = &s.spare
	}
	return Splat{Kind: sp.Kind, Title: sp.Title, Line: sp.Line, Uptime: sp.Uptime, Excerpt: append([]string(nil), sp.Excerpt...)}
}

func (s *Scanner) add(text string) {
	if len(s.open.Excerpt) >= s.lim.ExcerptLines {
		s.open.Truncated = true
		s.close()
		return
	}
	s.open.Excerpt = append(s.open.Excerpt, text)
}

// close ends the open splat's excerpt, without the blank lines that
// separate it from what follows.
func (s *Scanner) close() {
	if sp := s.open; sp != nil {
		for len(sp.Excerpt) > 1 {
			msg, _, _ := stripPrefix(sp.Excerpt[len(sp.Excerpt)-1])
			if strings.TrimSpace(msg) != "" {
				break
			}
			sp.Excerpt = sp.Excerpt[:len(sp.Excerpt)-1]
		}
	}
	s.open = nil
	s.openOops = false
}

// lockdepPhrases mark lockdep's reports, whatever their first word
// ("WARNING:", "BUG:", "INFO:", or "[ INFO: ... ]" in old kernels).
var lockdepPhrases = []string{
	"possible circular locking dependency",
	"inconsistent lock state",
	"possible recursive locking",
	"suspicious RCU usage",
	"bad unlock balance",
	"possible irq lock inversion",
	"held lock freed",
	"lock held when returning to user space",
	"lock held at task exit",
	"nested lock was not taken",
	"bad contention detected",
}

// classify says which splat, if any, a kernel message line starts. msg has
// its prefixes and leading spaces removed; every marker is anchored at the
// start, so a word like "DEBUG:" or a quoted marker mid-line never matches.
func classify(msg string) (Kind, bool) {
	has := func(p string) bool { return strings.HasPrefix(msg, p) }
	switch {
	case has("Kernel panic - not syncing"):
		return Panic, true
	case has("BUG: KASAN:"):
		return KASAN, true
	case has("BUG: KFENCE:"):
		return KFENCE, true
	case has("UBSAN:"):
		return UBSAN, true
	case (has("WARNING:") || has("BUG:") || has("INFO:") || has("[ INFO:")) && containsAny(msg, lockdepPhrases):
		return Lockdep, true
	case has("INFO: task ") && strings.Contains(msg, " blocked for more than "):
		return Hung, true
	case has("watchdog: BUG: soft lockup"), has("BUG: soft lockup"), isHardLockup(msg):
		return Lockup, true
	case (has("rcu: INFO: ") || has("INFO: ")) && strings.Contains(msg, "detected stall"),
		has("rcu: INFO: ") && strings.Contains(msg, "detected expedited stalls"):
		return RCU, true
	case has("Oops:"), has("general protection fault"),
		has("BUG: unable to handle"), has("BUG: kernel NULL pointer dereference"):
		return Oops, true
	case has("BUG:"), has("kernel BUG at "):
		return Bug, true
	case has("WARNING:"):
		return Warn, true
	}
	return 0, false
}

// isHardLockup matches the hard-lockup detector's line in its forms:
// "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1" (perf-based, up
// to 6.x), "watchdog: Watchdog detected hard LOCKUP on cpu 1" and
// "watchdog: CPU2: Watchdog detected hard LOCKUP on cpu 1" (newer kernels
// name the CPU that noticed).
func isHardLockup(msg string) bool {
	msg, _ = strings.CutPrefix(msg, "NMI ")
	msg, _ = strings.CutPrefix(msg, "watchdog: ")
	if rest, ok := strings.CutPrefix(msg, "CPU"); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok && n != "" && allDigits(n) {
			msg = after
		}
	}
	return strings.HasPrefix(msg, "Watchdog detected hard LOCKUP on cpu")
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// isEnd reports a splat's end marker: "---[ end trace ... ]---" or
// "---[ end Kernel panic - not syncing: ... ]---".
func isEnd(msg string) bool { return strings.HasPrefix(msg, "---[ end ") }

func isCutHere(msg string) bool { return strings.HasPrefix(msg, "------------[ cut here ]") }

// isSeparator reports the "=====" rule KASAN, KFENCE and UBSAN put around
// their reports.
func isSeparator(msg string) bool {
	msg = strings.TrimRight(msg, " ")
	return len(msg) >= 20 && strings.Trim(msg, "=") == ""
}

func closesWithSeparator(k Kind) bool { return k == KASAN || k == KFENCE || k == UBSAN }

// clean turns a console line into printable text: ANSI escape sequences
// and carriage returns are removed; other control bytes, the C1 controls
// (U+0080 to U+009F: U+009B is CSI to xterm and VTE) and the bidi
// formatting characters become spaces; invalid UTF-8 becomes U+FFFD. So
// the line is safe in JSON and XML and on the terminal WriteSummary
// writes to.
func clean(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x1b:
			i = skipEscape(b, i)
		case c == '\r':
		case c < 0x20 || c == 0x7f:
			sb.WriteByte(' ')
		default:
			sb.WriteByte(c)
		}
	}
	s := sb.String()
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if !isASCII(s) {
		s = strings.Map(func(r rune) rune {
			if r >= 0x80 && r <= 0x9f || isBidiControl(r) {
				return ' '
			}
			return r
		}, s)
	}
	return strings.TrimRight(s, " ")
}

// Printable is clean for text from the guest that did not pass through a
// Scanner (the agent's console line in a failure's reason): safe on the
// terminal, in JSON and in XML.
func Printable(s string) string { return clean([]byte(s)) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isBidiControl reports the Unicode bidirectional formatting characters: a
// terminal that does bidi (VTE) would show the rest of a title reordered.
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

// skipEscape returns the index of the last byte of the escape sequence that
// starts at b[i] (ESC): a CSI sequence "ESC [ params final", or ESC and one
// more byte.
func skipEscape(b []byte, i int) int {
	if i+1 >= len(b) {
		return i
	}
	if b[i+1] != '[' {
		return i + 1
	}
	for j := i + 2; j < len(b); j++ {
		if b[j] >= 0x40 && b[j] <= 0x7e {
			return j
		}
	}
	return len(b) - 1
}

// stripPrefix removes a syslog level ("<4>"), the printk timestamp
// ("[   12.345678]") and a caller id ("[    T1]", "[    C0]") from a
// console line. It returns the message, the timestamp's digits and whether
// there was a timestamp. Without printk.time the caller id comes alone.
func stripPrefix(line string) (msg, uptime string, stamped bool) {
	msg = line
	if len(msg) > 2 && msg[0] == '<' {
		if j := strings.IndexByte(msg, '>'); j > 1 && j <= 4 && allDigits(msg[1:j]) {
			msg = msg[j+1:]
		}
	}
	inner, rest, ok := bracket(msg)
	if !ok {
		return msg, "", false
	}
	if isCallerID(inner) {
		// printk.time=0 with CONFIG_PRINTK_CALLER: "[     T1] BUG: ...".
		return strings.TrimPrefix(rest, " "), "", false
	}
	secs, frac, dot := strings.Cut(inner, ".")
	if !dot || !allDigits(secs) || !allDigits(frac) || secs == "" || frac == "" {
		return msg, "", false
	}
	uptime, msg = inner, rest
	if inner, rest, ok := bracket(msg); ok && isCallerID(inner) {
		msg = rest
	}
	return strings.TrimPrefix(msg, " "), uptime, true
}

func isCallerID(s string) bool {
	return len(s) > 1 && (s[0] == 'T' || s[0] == 'C') && allDigits(s[1:])
}

// stampMidLine finds a kernel record that continues a console line a
// program left without a newline ("....[    5.1] Oops: ..."): printk
// does not end the tty's line before its own. It is stripPrefix from the
// first '[' or '<' after the start that begins a timestamp.
func stampMidLine(line string) (msg, uptime string, found bool) {
	for i := 1; i < len(line); i++ {
		if line[i] != '[' && line[i] != '<' {
			continue
		}
		if msg, uptime, ok := stripPrefix(line[i:]); ok {
			return msg, uptime, true
		}
	}
	return line, "", false
}

// bracket splits "[  inner] rest" into inner (spaces trimmed) and rest.
func bracket(s string) (inner, rest string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return "", s, false
	}
	j := strings.IndexByte(s, ']')
	if j < 0 || j > 24 {
		return "", s, false
	}
	return strings.TrimSpace(s[1:j]), s[j+1:], true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
