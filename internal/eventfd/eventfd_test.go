package eventfd

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSignal(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Skip("eventfd:", err)
	}
	defer unix.Close(fd)
	for i := 0; i < 3; i++ {
		if err := Signal(fd); err != nil {
			t.Fatal(err)
		}
	}
	var b [8]byte
	if n, err := unix.Read(fd, b[:]); err != nil || n != 8 || binary.LittleEndian.Uint64(b[:]) != 3 {
		t.Fatalf("read %d %v %v", n, err, b)
	}
	// A saturated counter (EAGAIN) already reads as signalled.
	binary.LittleEndian.PutUint64(b[:], 1<<64-2)
	if _, err := unix.Write(fd, b[:]); err != nil {
		t.Fatal(err)
	}
	if err := Signal(fd); err != nil {
		t.Fatalf("saturated: %v", err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = Signal(fd) }); allocs != 0 {
		t.Fatalf("%v allocs per Signal", allocs)
	}
	if err := Signal(-1); err != unix.EBADF {
		t.Fatalf("bad fd: %v", err)
	}
}
