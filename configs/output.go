package configs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Output files: the logger's log_path and the metrics' metrics_path are
// checked with stat when the API receives them, then opened
// (internal/hostfile.OpenOutput: append, 0600, no symbolic link, a FIFO
// only with a reader), as Firecracker opens them at PUT time; OpenError
// words a failed open. The logger's handler is Handler.

// CheckPath checks log_path (when set); path is the logger's JSON path.
func (l *Logger) CheckPath(path string) error {
	if l.LogPath == "" {
		return nil
	}
	return checkOutputFile(joinPath(path, "log_path"), l.LogPath)
}

// CheckPath checks metrics_path; path is the metrics' JSON path.
func (m *Metrics) CheckPath(path string) error {
	return checkOutputFile(joinPath(path, "metrics_path"), m.MetricsPath)
}

// checkOutputFile reports, as a FieldError for key, a name that cannot
// become an output file: an existing directory or other non-file,
// non-FIFO, or a missing one whose directory does not exist.
func checkOutputFile(key, name string) error {
	fail := func(format string, a ...any) error {
		return &FieldError{Path: key, Msg: key + ": " + Shown(name) + ": " + fmt.Sprintf(format, a...)}
	}
	fi, err := os.Lstat(name)
	switch {
	case err == nil && (fi.Mode().IsRegular() || fi.Mode().Type() == os.ModeNamedPipe):
		return nil
	case err == nil && fi.Mode().Type() == os.ModeSymlink:
		return fail("is a symbolic link: flint does not write through one")
	case err == nil:
		return fail("is a %s, not a file or FIFO", kindOf(fi))
	}
	var errno syscall.Errno
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &errno) {
		return fail("%v", withoutPath(err))
	}
	dir := filepath.Dir(name)
	if di, derr := os.Stat(dir); derr != nil || !di.IsDir() {
		return fail("%s: its directory %s does not exist", osErrorText(errno), Shown(dir))
	}
	return nil // created when opened
}

func kindOf(fi os.FileInfo) string {
	if fi.IsDir() {
		return "directory"
	}
	return fi.Mode().Type().String()
}

// OpenError describes err, from opening the output file name given at
// key (its JSON path), as "<key>: <name>: <problem>" on one line, an
// errno in Firecracker's words ("Permission denied (os error 13)").
func OpenError(key, name string, err error) error {
	problem := strings.TrimPrefix(err.Error(), name+": ")
	var errno syscall.Errno
	if errors.As(err, &errno) {
		problem = osErrorText(errno)
	}
	return &FieldError{Path: key, Msg: key + ": " + Shown(name) + ": " + problem}
}

// SlogLevel is l's level for log/slog: none is Info (Firecracker's
// default), Warning (or Warn) is Warn, Trace is Debug, Off is above every
// level. The level is one Decode accepted (any case).
func (l *Logger) SlogLevel() slog.Level {
	switch strings.ToLower(l.Level) {
	case "error":
		return slog.LevelError
	case "warning", "warn":
		return slog.LevelWarn
	case "", "info":
		return slog.LevelInfo
	case "debug", "trace":
		return slog.LevelDebug
	}
	return slog.LevelError + 100 // Off
}

// Handler is a text handler writing to w at level what l describes:
// the level attribute only with show_level, the source only with
// show_log_origin.
func (l *Logger) Handler(w io.Writer, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, AddSource: l.ShowLogOrigin}
	if !l.ShowLevel {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.NewTextHandler(w, opts)
}
