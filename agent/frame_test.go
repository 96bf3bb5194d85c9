package agent

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// TestFrameRoundTrip: what the host frames, the agent decodes unchanged,
// and the end of the host's input ends the copy.
func TestFrameRoundTrip(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("0123456789"), 2000)} {
		var out bytes.Buffer
		// OneByteReader and DataErrReader: short reads and data with EOF.
		for _, src := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.DataErrReader(bytes.NewReader(in))} {
			out.Reset()
			if err := copyFrames(&out, NewFrameReader(src)); err != nil {
				t.Fatalf("%d bytes: %v", len(in), err)
			}
			if !bytes.Equal(out.Bytes(), in) {
				t.Fatalf("%d bytes in, %d out", len(in), out.Len())
			}
		}
	}
}

func TestCopyFramesRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"no end frame":   {[]byte{1, 0, 'a'}, io.ErrUnexpectedEOF},
		"short payload":  {[]byte{3, 0, 'a'}, io.ErrUnexpectedEOF},
		"half a header":  {[]byte{1}, io.ErrUnexpectedEOF},
		"too long frame": {[]byte{0x01, 0x10}, errFrame},
	} {
		if err := copyFrames(io.Discard, bytes.NewReader(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestStdinEOFReachesCommand: the command reads the framed input to its
// end and exits, so the host's EOF became the command's.
func TestStdinEOFReachesCommand(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	var framed bytes.Buffer
	if _, err := io.Copy(&framed, NewFrameReader(strings.NewReader("line one\nline two\n"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, framed.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stages []exitdev.Stage
	s := &Spec{Argv: []string{"sh", "-c", "wc -l; cat"}, Env: []string{"PATH=/usr/bin:/bin"}, Stdin: in, Stdout: out, Stderr: out}
	if r := decoded(t, RunCommand(s, func(st exitdev.Stage) { stages = append(stages, st) })); r.Kind != exitdev.KindExited || r.Code != 0 {
		t.Fatalf("status %s", r)
	}
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "2" {
		t.Errorf("stdout %q, want the line count 2 (and nothing left for cat)", b)
	}
	if len(stages) != 1 || stages[0] != exitdev.StageWait {
		t.Errorf("progress %v, want [wait]", stages)
	}
}

// FuzzFrames: no input makes the decoder panic or write more than it read.
func FuzzFrames(f *testing.F) {
	f.Add([]byte{1, 0, 'a', 0, 0})
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{2, 0, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		err := copyFrames(&out, bytes.NewReader(b))
		if out.Len() > len(b) {
			t.Fatalf("wrote %d bytes from %d", out.Len(), len(b))
		}
		if err == nil {
			var again bytes.Buffer
			if _, err := io.Copy(&again, NewFrameReader(bytes.NewReader(out.Bytes()))); err != nil {
				t.Fatal(err)
			}
			var round bytes.Buffer
			if err := copyFrames(&round, &again); err != nil || !bytes.Equal(round.Bytes(), out.Bytes()) {
				t.Fatalf("re-framed payload does not round-trip: %v", err)
			}
		}
	})
}

// openPTY returns a pseudo-terminal's master and its slave's path: a tty
// like the guest's /dev/hvcN.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	return m, "/dev/pts/" + strconv.Itoa(int(n))
}

// TestStreamsOnTTY: on a tty (as the guest's hvc ports are) the output
// arrives byte for byte: raw mode, no "\n" to "\r\n", and all of it before
// RunCommand returns.
func TestStreamsOnTTY(t *testing.T) {
	m, slave := openPTY(t)
	s := &Spec{Argv: []string{"sh", "-c", `printf 'raw\r\nline\n'; echo err >&2`}, Env: []string{"PATH=/usr/bin:/bin"}, Stdout: slave, Stderr: slave}
	got := make(chan []byte, 1)
	go func() {
		var b []byte
		buf := make([]byte, 256)
		for {
			n, err := m.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil || bytes.Contains(b, []byte("err\n")) {
				got <- b
				return
			}
		}
	}()
	if r := decoded(t, RunCommand(s, func(exitdev.Stage) {})); r.Kind != exitdev.KindExited || r.Code != 0 {
		t.Fatalf("status %s", r)
	}
	select {
	case b := <-got:
		if !bytes.Contains(b, []byte("raw\r\nline\n")) || bytes.Contains(b, []byte("line\r\n")) {
			t.Fatalf("the tty changed the bytes: %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no output on the tty")
	}
}

// TestStdinReadyByteOnTTY: on a tty (as the guest's /dev/hvc2) the agent
// says it is ready before the host sends anything, and input sent after
// that reaches a command that reads it late.
func TestStdinReadyByteOnTTY(t *testing.T) {
	m, slave := openPTY(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Spec{Argv: []string{"sh", "-c", "sleep 0.3; read x; echo got=$x"}, Env: []string{"PATH=/usr/bin:/bin"},
		Stdin: slave, Stdout: out, Stderr: out}
	done := make(chan uint32, 1)
	go func() { done <- RunCommand(s, func(exitdev.Stage) {}) }()
	ready := make([]byte, 1)
	if _, err := io.ReadFull(m, ready); err != nil || ready[0] != ReadyByte {
		t.Fatalf("first byte from the agent %q (%v), want the ready byte %#x", ready, err, ReadyByte)
	}
	if _, err := io.Copy(m, NewFrameReader(strings.NewReader("late line\n"))); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-done:
		if r := decoded(t, w); r.Kind != exitdev.KindExited || r.Code != 0 {
			t.Fatalf("status %s", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command never got its input")
	}
	if b, _ := os.ReadFile(out); string(b) != "got=late line\n" {
		t.Errorf("stdout %q, want %q", b, "got=late line\n")
	}
}

// chunkReader returns data in reads of the sizes in sizes (cycled; 0 is
// an empty read with no error), and EOF with the last bytes when
// eofWithData.
type chunkReader struct {
	data, sizes []byte
	i           int
	eofWithData bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[c.i%len(c.sizes)]))
		c.i++
		if c.i > 64 && n == 0 {
			n = 1 // no endless run of empty reads
		}
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

// FuzzFrameRoundTrip: whatever the host's stdin yields, in whatever read
// sizes (empty reads, data with EOF), the agent decodes exactly those
// bytes, also when the framed stream reaches it in other pieces.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("hello\n"), []byte{1, 0, 3}, false, []byte{1})
	f.Add(bytes.Repeat([]byte{0, 0xff}, 5000), []byte{255, 0}, true, []byte{2, 7})
	f.Add([]byte{}, []byte{}, true, []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte, eofWithData bool, guestSizes []byte) {
		var framed bytes.Buffer
		if _, err := io.Copy(&framed, NewFrameReader(&chunkReader{data: data, sizes: sizes, eofWithData: eofWithData})); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := copyFrames(&out, &chunkReader{data: framed.Bytes(), sizes: guestSizes}); err != nil {
			t.Fatalf("decoding: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("decoded %d bytes, want %d", out.Len(), len(data))
		}
	})
}
