package agent

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/flintvm/flint/devices/exitdev"
)

// TestLogTap: the host keeps the agent's last complete console line
// (what logf writes, through a tty that adds \r), whatever the sizes of
// the console's writes; kernel lines and a partial line do not count, and
// a guest's overlong line or control bytes are cut and dropped.
func TestLogTap(t *testing.T) {
	var logged bytes.Buffer
	logf(&logged, "%v", &StepError{Stage: exitdev.StageMounts, Err: errors.New("virtiofs on /flint/lower: no such device")})
	want := strings.TrimSuffix(logged.String(), "\n")
	in := "[    1.0] virtio_mmio: probe\r\n" + strings.ReplaceAll(logged.String(), "\n", "\r\n") + "[ 2.0] x\r\n" + LogPrefix + "partial"
	var tap LogTap
	for i := 0; i < len(in); i += 7 {
		tap.Write([]byte(in[i:min(i+7, len(in))]))
	}
	if got := tap.Last(); got != want || !strings.HasPrefix(got, "flint-agent: agent: mounts: ") {
		t.Errorf("Last %q, want %q", got, want)
	}
	tap.Write([]byte(LogPrefix + strings.Repeat("x\x1b", 400) + "\n"))
	if got := tap.Last(); len(got) > maxLogLine+3 || !strings.HasSuffix(got, "...") || strings.ContainsRune(got, 0x1b) {
		t.Errorf("overlong line kept as %q", got)
	}
}
