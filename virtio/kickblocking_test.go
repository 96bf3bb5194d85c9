package virtio

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKickReaderEventfdMadeBlocking: a vhost-user frontend shares the
// kick eventfd's open file and clears the O_NONBLOCK the transport set
// before the device starts. The file is still the netpoller's (it was
// non-blocking when os.NewFile made it), so a wait with a ring check
// must still park without reading and end at the reset's deadline, and a
// kick must still wake it. Without the fix bind saw a blocking file and
// the wait blocked in read(2), deaf to the deadline, until the next kick.
func TestKickReaderEventfdMadeBlocking(t *testing.T) {
	r, w := kickEventfd(t)
	if _, err := unix.FcntlInt(uintptr(w), unix.F_SETFL, 0); err != nil {
		t.Fatal(err)
	}
	var k kickReader
	k.bind(r)
	var work atomic.Bool
	k.ready = work.Load
	endsAtDeadline(t, &k, r, func() { kickOnce(t, w) }) // free: the blocked read
	done := make(chan error, 1)
	r.SetReadDeadline(time.Time{})
	go func() { done <- k.wait() }()
	time.Sleep(20 * time.Millisecond)
	work.Store(true)
	kickOnce(t, w)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a kick did not wake a wait on an eventfd made blocking")
	}
	var buf [8]byte
	if _, err := unix.Read(w, buf[:]); err != nil {
		t.Errorf("the kick was read: %v", err)
	}
	// Without a ring check the kick is read, with os.File.Read: a raw
	// read(2) would hold the thread.
	k.ready = nil
	kickOnce(t, w)
	if err := k.wait(); err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(w, true)
	if _, err := unix.Read(w, buf[:]); err != unix.EAGAIN {
		t.Errorf("the kick was not read without a ring check: %v", err)
	}
}

// TestKickReaderEventfdBornBlocking: an eventfd that was blocking when
// os.NewFile made it is not the netpoller's (RawConn.Read could not park
// on it): it is read with os.File.Read, as before, ring check or not.
func TestKickReaderEventfdBornBlocking(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "kick-eventfd-blocking")
	defer f.Close()
	var k kickReader
	k.bind(f)
	if k.rc != nil {
		t.Fatal("bind took a file without deadlines for the raw path")
	}
	k.ready = func() bool { return false }
	kickOnce(t, fd)
	if err := k.wait(); err != nil {
		t.Fatal(err)
	}
}
