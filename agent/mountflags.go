package agent

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountFlagNames are the mount(2) flags a Mount's options may name; any other
// option goes to the filesystem as data (e.g. "lowerdir=/a", "size=64m").
var mountFlagNames = map[string]uintptr{
	"ro":          unix.MS_RDONLY,
	"nosuid":      unix.MS_NOSUID,
	"nodev":       unix.MS_NODEV,
	"noexec":      unix.MS_NOEXEC,
	"noatime":     unix.MS_NOATIME,
	"relatime":    unix.MS_RELATIME,
	"bind":        unix.MS_BIND,
	"rbind":       unix.MS_BIND | unix.MS_REC,
	"remount":     unix.MS_REMOUNT,
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"sync":        unix.MS_SYNCHRONOUS,
	"dirsync":     unix.MS_DIRSYNC,
	"strictatime": unix.MS_STRICTATIME,
}

// MountFlags splits a Mount's options into mount(2) flags and the data
// string (the other options, comma-separated). An empty option or one with
// a comma or NUL in it is an error.
func MountFlags(opts []string) (uintptr, string, error) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if o == "" || strings.ContainsAny(o, ",\x00") {
			return 0, "", fmt.Errorf("mount option %q: empty or contains a comma or NUL", o)
		}
		if f, ok := mountFlagNames[o]; ok {
			flags |= f
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ","), nil
}
