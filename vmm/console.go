package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
)

// ConsoleSpec says where the guest's serial console goes: "stdio" (output
// to stdout, input from stdin), "stderr" (output to stderr, no input),
// "none", or "file:PATH" (output appended to PATH, no input).
type ConsoleSpec string

// ParseConsole checks a --console value.
func ParseConsole(s string) (ConsoleSpec, error) {
	if configs.ValidConsole(s) {
		return ConsoleSpec(s), nil
	}
	return "", fmt.Errorf("console %q: want stdio, stderr, none or file:PATH", s)
}

// console is an opened ConsoleSpec.
type console struct {
	out     io.Writer
	in      *os.File    // nil when the console takes no input
	file    *OutputFile // a file: console's
	restore func()      // undoes raw mode; nil when the terminal was not touched
}

// DefaultConsoleLimit is Config.ConsoleLimit's default: what a guest may
// write into a file: console before the rest of its output is dropped, so
// that it cannot fill the host's disk.
const DefaultConsoleLimit = 64 << 20

// openConsole opens spec. A file: console is opened by
// hostfile.OpenOutput (append, mode 0600, no symbolic link, a FIFO only
// with a reader, never blocking) and capped at limit bytes (0:
// DefaultConsoleLimit, negative: none); log hears once when the cap is
// hit.
func openConsole(spec ConsoleSpec, limit int64, log *slog.Logger, stdin, stdout *os.File) (*console, error) {
	switch {
	case spec == "" || spec == "stdio":
		c := &console{out: stdout, in: stdin}
		if restore, err := makeRaw(stdin); err == nil {
			c.restore = restore
		}
		return c, nil
	case spec == "stderr":
		return &console{out: os.Stderr}, nil
	case spec == "none":
		return &console{out: io.Discard}, nil
	case strings.HasPrefix(string(spec), "file:"):
		path := strings.TrimPrefix(string(spec), "file:")
		f, err := OpenOutput(path)
		if err != nil {
			return nil, fmt.Errorf("console file: %w", err)
		}
		if limit == 0 {
			limit = DefaultConsoleLimit
		}
		out := hostfile.Cap(f, limit, func() {
			if log != nil {
				log.Warn("console file reached its size limit; the rest of the guest's console output is dropped",
					"path", path, "limit_bytes", limit)
			}
		})
		return &console{out: out, file: f}, nil
	}
	return nil, fmt.Errorf("console %q: want stdio, stderr, none or file:PATH", spec)
}

// restoreTerminal undoes raw mode, once.
func (c *console) restoreTerminal() {
	if c.restore != nil {
		c.restore()
		c.restore = nil
	}
}

func (c *console) Close() error {
	c.restoreTerminal()
	if c.file != nil {
		return c.file.Close()
	}
	return nil
}

// OutputFile is a file Flint writes the guest's or its own output to (a
// file: console, the metrics file, a log file), opened with
// internal/hostfile's rules (append, mode 0600, no symbolic link, a FIFO
// only with a reader), that knows whether this open created it. Close
// removes a file the open created when nothing was written to it and Keep
// was not called, so a launch that fails before the guest starts leaves
// no empty file behind; a file that was there before (a FIFO, a log
// appended to) is never removed.
type OutputFile struct {
	*os.File
	created bool
	kept    atomic.Bool
}

// OpenOutput opens path for output: it creates the file when there is
// none (and then remembers it did), else opens what is there as
// hostfile.OpenOutput does, with its errors.
func OpenOutput(path string) (*OutputFile, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // Close finds the file whatever the directory then
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return &OutputFile{File: os.NewFile(uintptr(fd), path), created: true}, nil
	}
	f, err := hostfile.OpenOutput(path)
	if err != nil {
		return nil, err
	}
	return &OutputFile{File: f}, nil
}

// Keep says the file stays whatever happens: the guest is starting (Run
// calls it for the VM's files and Config.Outputs).
func (o *OutputFile) Keep() { o.kept.Store(true) }

// Close closes the file, first removing it when OpenOutput created it,
// Keep was not called and it is still empty, provided the path still
// names it.
func (o *OutputFile) Close() error {
	if o.created && !o.kept.Load() {
		RemoveIfEmpty(o.File)
	}
	return o.File.Close()
}

// RemoveIfEmpty removes the file f has open when nothing is in it and
// its name still names it (not a file that replaced it since).
func RemoveIfEmpty(f *os.File) {
	var st, at unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) == nil && st.Size == 0 &&
		unix.Lstat(f.Name(), &at) == nil && at.Dev == st.Dev && at.Ino == st.Ino {
		os.Remove(f.Name())
	}
}

// makeRaw puts a terminal into raw mode (no echo, no line editing, no
// signals from ^C: the guest gets every byte) and returns how to undo it. It
// fails for anything that is not a terminal.
func makeRaw(f *os.File) (func(), error) {
	if f == nil {
		return nil, errors.New("no terminal")
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// escapeFilter implements the console escape: Ctrl-A x quits, Ctrl-A Ctrl-A
// sends one Ctrl-A, Ctrl-A followed by anything else sends both bytes.
type escapeFilter struct {
	pending bool
}

const ctrlA = 0x01

// filter rewrites p in place to the bytes the guest should get and reports
// whether the user asked to quit (bytes after the quit sequence are dropped).
func (e *escapeFilter) filter(p []byte) (out []byte, quit bool) {
	out = p[:0]
	for _, b := range p {
		if e.pending {
			e.pending = false
			switch b {
			case 'x', 'X':
				return out, true
			case ctrlA:
				out = append(out, ctrlA)
			default:
				out = append(out, ctrlA, b)
			}
			continue
		}
		if b == ctrlA {
			e.pending = true
			continue
		}
		out = append(out, b)
	}
	return out, false
}

// markerWriter passes writes through to w and calls found once the bytes
// written so far contain marker (which may be split across writes).
type markerWriter struct {
	w      io.Writer
	marker []byte
	tail   []byte
	found  func()
	done   bool
}

func (m *markerWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if !m.done && len(m.marker) > 0 {
		m.tail = append(m.tail, p...)
		if bytes.Contains(m.tail, m.marker) {
			m.done = true
			m.tail = nil
			m.found()
		} else if keep := len(m.marker) - 1; len(m.tail) > keep {
			m.tail = append(m.tail[:0], m.tail[len(m.tail)-keep:]...)
		}
	}
	return n, err
}
