package agent

import (
	"strings"
	"sync"
)

// LogPrefix starts each line the agent writes on the kernel console
// (logf): a step that failed, in its own words.
const LogPrefix = "flint-agent: "

// maxLogLine bounds the line a LogTap keeps: the guest writes it.
const maxLogLine = 300

// LogTap is the host's reader of the agent's console lines: written the
// serial console's bytes, it keeps the last complete line that starts
// with LogPrefix, without control bytes (a tty's \r among them) and cut
// at maxLogLine. The exit device's status word says only the stage and
// errno; this line names the module, mount, directory or command.
type LogTap struct {
	mu   sync.Mutex
	cur  []byte
	long bool // cur was cut at maxLogLine
	last string
}

// Write implements io.Writer; it never fails.
func (t *LogTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		switch {
		case b == '\n':
			if l := string(t.cur); strings.HasPrefix(l, LogPrefix) {
				l = strings.Map(func(r rune) rune {
					if r < 0x20 || r == 0x7f {
						return -1
					}
					return r
				}, l)
				if t.long {
					l += "..."
				}
				t.last = l
			}
			t.cur, t.long = t.cur[:0], false
		case len(t.cur) < maxLogLine:
			t.cur = append(t.cur, b)
		default:
			t.long = true
		}
	}
	return len(p), nil
}

// Last is the last complete agent line, or "".
func (t *LogTap) Last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}
