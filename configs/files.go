package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/flintvm/flint/internal/hostfile"
)

// Input files: a config names the kernel, the initrd and every drive's
// image. CheckFiles and its parts look at them with stat (which never
// blocks, even on a FIFO) so that a missing or wrong file is reported,
// naming its JSON path, before any VM resource exists; the API does the
// same at PUT time, as Firecracker does. The files are opened later by
// the code that reads them, which checks again.

// CheckFiles checks every input file c names: the boot source's kernel and
// initrd (regular files) and each drive's path_on_host (a regular file or
// a block device).
func (c *VMConfig) CheckFiles() error {
	if c.BootSource != nil {
		if err := c.BootSource.CheckFiles("boot-source"); err != nil {
			return err
		}
	}
	for i := range c.Drives {
		if err := c.Drives[i].CheckFile(fmt.Sprintf("drives[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// CheckFiles checks the kernel and, when set, the initrd; path is the boot
// source's JSON path ("boot-source").
func (b *BootSource) CheckFiles(path string) error {
	if err := checkInputFile(joinPath(path, "kernel_image_path"), b.KernelImagePath, "The kernel file cannot be opened: ", false); err != nil {
		return err
	}
	if b.InitrdPath == "" {
		return nil
	}
	return checkInputFile(joinPath(path, "initrd_path"), b.InitrdPath, "The initrd file cannot be opened: ", false)
}

// CheckFile checks the drive's image; path is the drive's JSON path
// ("drives[0]", or "drives" for an API body).
func (d *Drive) CheckFile(path string) error {
	return checkInputFile(joinPath(path, "path_on_host"), d.PathOnHost, "", true)
}

// checkInputFile reports, as a FieldError for key, a file name that does
// not exist or is not a regular file (or, with blockOK, a block device).
// The message is "<key>: <name>: <problem>" on one line; for a file that
// cannot be found the problem is what (Firecracker's words for that file,
// or nothing) and the error in Firecracker's words ("No such file or
// directory (os error 2)"), which its API clients and tests match on.
func checkInputFile(key, name, what string, blockOK bool) error {
	fail := func(format string, a ...any) error {
		return &FieldError{Path: key, Msg: key + ": " + fmt.Sprintf(format, a...)}
	}
	if name == "" {
		return fail("empty path")
	}
	fi, err := os.Stat(name)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fail("%s: %s%s", Shown(name), what, osErrorText(errno))
		}
		return fail("%s: %s%v", Shown(name), what, withoutPath(err))
	}
	mode := fi.Mode()
	if mode.IsRegular() || blockOK && mode.Type() == fs.ModeDevice {
		return nil
	}
	kind := mode.Type().String()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		kind = hostfile.Kind(st.Mode)
	}
	want := "a regular file"
	if blockOK {
		want = "a regular file or block device"
	}
	return fail("%s is %s, not %s", Shown(name), kind, want)
}

// Shown is a file name (or an id, or a request path) as messages write
// it: as it is, or quoted (Go syntax) when it has a control character, so
// that the message stays on one line.
func Shown(name string) string {
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return strconv.Quote(name)
	}
	return name
}

// withoutPath is err without the file name an *fs.PathError repeats (the
// message names the file already, through Shown).
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// osErrorText writes errno the way Firecracker (Rust's io::Error) does:
// "No such file or directory (os error 2)".
func osErrorText(errno syscall.Errno) string {
	t := errno.Error()
	if t != "" && t[0] >= 'a' && t[0] <= 'z' {
		t = string(t[0]-'a'+'A') + t[1:]
	}
	return fmt.Sprintf("%s (os error %d)", t, int(errno))
}
