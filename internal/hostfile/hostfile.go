package hostfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Kinds is the set of file types OpenInput accepts.
type Kinds uint8

// File types for OpenInput.
const (
	Regular     Kinds = 1 << iota // a regular file
	BlockDevice                   // a block device (drives)
)

// OpenInput opens path with flag (os.O_RDONLY or os.O_RDWR) without
// blocking on it, and returns it if it is one of kinds; a FIFO, socket,
// character device or directory is an error naming what it is. The file
// returned is in blocking mode. Symbolic links are followed.
func OpenInput(path string, flag int, kinds Kinds) (*os.File, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	if flag != os.O_RDONLY && flag != os.O_RDWR {
		return nil, fmt.Errorf("%s: open flag %#x: want O_RDONLY or O_RDWR", path, flag)
	}
	fd, err := openRetry(path, flag|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	t := st.Mode & unix.S_IFMT
	if !(t == unix.S_IFREG && kinds&Regular != 0 || t == unix.S_IFBLK && kinds&BlockDevice != 0) {
		unix.Close(fd)
		want := "a regular file"
		if kinds&BlockDevice != 0 {
			want = "a regular file or block device"
		}
		return nil, fmt.Errorf("%s: %s, not %s", path, Kind(st.Mode), want)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadInput reads the regular file at path, of at most limit bytes, into
// one buffer of its size (a growing buffer would leave a peak of several
// times the file in memory). *TooLargeError reports a bigger file.
func ReadInput(path string, limit int64) ([]byte, error) {
	return ReadInputAt(path, func(r io.ReaderAt, size int64) ([]byte, error) {
		if size > limit {
			return nil, &TooLargeError{Path: path, Size: size, Limit: limit}
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(io.NewSectionReader(r, 0, size), b); err != nil {
			return nil, fmt.Errorf("%s: %w (the file shrank while being read?)", path, err)
		}
		return b, nil
	})
}

// ReadInputAt opens the regular file at path as OpenInput does and returns
// what read makes of it, given the file and its size: for a reader that
// takes only some of a large file (a kernel's loadable segments). read's
// error is returned as it is.
func ReadInputAt(path string, read func(r io.ReaderAt, size int64) ([]byte, error)) ([]byte, error) {
	f, err := OpenInput(path, os.O_RDONLY, Regular)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return read(f, st.Size())
}

// TooLargeError is ReadInput's error for a file over its limit.
type TooLargeError struct {
	Path        string
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: %d MiB is too large (limit %d MiB)", e.Path, e.Size>>20, e.Limit>>20)
}

// OpenOutput opens path for appending, creating it with mode 0600 if
// needed, without following a symbolic link at path and without
// blocking. It accepts a regular file (returned in blocking mode) and a
// FIFO that has a reader (returned non-blocking, so Go's poller waits on
// a full pipe instead of a thread); a FIFO without a reader, a link, a
// device or a socket is an error at once.
func OpenOutput(path string) (*os.File, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	fd, err := openRetry(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0o600)
	switch {
	case err == unix.ELOOP:
		return nil, fmt.Errorf("%s: is a symbolic link (output files are not opened through links)", path)
	case err == unix.ENXIO:
		return nil, fmt.Errorf("%s: a FIFO with no reader", path)
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return os.NewFile(uintptr(fd), path), nil
	case unix.S_IFREG:
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
	unix.Close(fd)
	return nil, fmt.Errorf("%s: %s, not a regular file or a FIFO with a reader", path, Kind(st.Mode))
}

func openRetry(path string, flag int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flag, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// Kind names a file type (a stat mode) for error messages.
func Kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("a file of mode %#o", mode)
}
