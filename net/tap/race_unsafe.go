//go:build race

package tap

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Under the race detector, tell it about the memory the kernel reads
// (writev) and writes (readv) through the iovecs, as the standard library
// and x/sys/unix do for their own read and write calls. Addresses outside
// the Go heap (guest memory) are ignored by the runtime.

func raceReadIovecs(iov []unix.Iovec) {
	for _, v := range iov {
		runtime.RaceReadRange(unsafe.Pointer(v.Base), int(v.Len))
	}
}

func raceWriteIovecs(iov []unix.Iovec, n int) {
	for _, v := range iov {
		if n <= 0 {
			return
		}
		m := min(int(v.Len), n)
		runtime.RaceWriteRange(unsafe.Pointer(v.Base), m)
		n -= m
	}
}
