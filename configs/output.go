package configs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Output files: the logger's log_path and the metrics' metrics_path are
// checked with stat when the API receives them, as Firecracker answers a
// bad one at PUT time rather than at InstanceStart. They are opened
// later (internal/hostfile.OpenOutput: append, 0600, no symbolic link, a
// FIFO only with a reader), which checks again.

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
