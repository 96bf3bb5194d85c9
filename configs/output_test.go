package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

// TestOpenError: a failed open of an output file is one line naming the
// key and the file (quoted when it has a control character), an errno in
// Firecracker's words, and the file named once.
func TestOpenError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"/d/x.log", &fs.PathError{Op: "open", Path: "/d/x.log", Err: syscall.EACCES}, "logger.log_path: /d/x.log: Permission denied (os error 13)"},
		{"p", fmt.Errorf("%s: a FIFO with no reader", "p"), "logger.log_path: p: a FIFO with no reader"},
		{"a\nb", errors.New("a\nb: is a symbolic link"), `logger.log_path: "a\nb": is a symbolic link`},
	} {
		err := OpenError("logger.log_path", tc.name, tc.err)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != "logger.log_path" || err.Error() != tc.want {
			t.Errorf("OpenError(%q, %v) = %v, want %q", tc.name, tc.err, err, tc.want)
		}
	}
}

// TestLoggerHandler: the logger's level (any case; none is Info, Trace
// is Debug, Off shows nothing) and its show_level and show_log_origin
// shape what the handler writes.
func TestLoggerHandler(t *testing.T) {
	for _, tc := range []struct {
		l              Logger
		shown, hidden  slog.Level
		level, hasFile bool
	}{
		{Logger{}, slog.LevelInfo, slog.LevelDebug, false, false},
		{Logger{Level: "warning", ShowLevel: true}, slog.LevelWarn, slog.LevelInfo, true, false},
		{Logger{Level: "Warn"}, slog.LevelWarn, slog.LevelInfo, false, false},
		{Logger{Level: "TRACE", ShowLogOrigin: true}, slog.LevelDebug, slog.LevelDebug - 1, false, true},
		{Logger{Level: "Error"}, slog.LevelError, slog.LevelWarn, false, false},
		{Logger{Level: "Off"}, slog.LevelError + 100, slog.LevelError, false, false},
	} {
		var b bytes.Buffer
		log := slog.New(tc.l.Handler(&b, tc.l.SlogLevel()))
		log.Log(t.Context(), tc.hidden, "hidden")
		log.Log(t.Context(), tc.shown, "shown")
		out := b.String()
		if strings.Contains(out, "hidden") || !strings.Contains(out, "shown") ||
			strings.Contains(out, "level=") != tc.level || strings.Contains(out, "source=") != tc.hasFile {
			t.Errorf("%+v wrote %q", tc.l, out)
		}
	}
}
