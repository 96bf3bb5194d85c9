package vhostuser_test

import (
	"testing"

	"golang.org/x/sys/unix"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestTruncatedMemoryRunning (issue 13 finding 2): a frontend that
// truncates its memory file while the device runs, then kicks: the
// device's engine faults reading the ring, marks the queue broken
// (NEEDS_RESET: the rings stop, the err fds are written) and the backend
// lives on to serve the next frontend.
func TestTruncatedMemoryRunning(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.postRx(1)
	g.send(1)
	if _, err := g.tx.Add(vut.Buf{Addr: g.buf(), Len: 64}); err != nil {
		t.Fatal(err)
	}
	g.tx.Publish()
	if err := unix.Ftruncate(g.m.FD, 0); err != nil {
		t.Fatal(err)
	}
	g.tx.Notify()
	h.log.waitLog(t, "NEEDS_RESET")
	g.f.Close()
	h.waitIdle()
	g2 := h.connectUML(0)
	g2.postRx(1)
	g2.send(2)
}
