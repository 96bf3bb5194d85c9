package vhostuser_test

import (
	"net"
	"testing"
	"time"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// floodLines is more requests (or connections) than the rate limit's
// first 32 lines plus its powers of two up to here (64, 128).
const floodLines = 200

// TestMemTableFloodLogBounded: a frontend that sends one valid
// SET_MEM_TABLE after another (while the device runs, so each one also
// restarts it) fills the log with no more than the rate limit's lines:
// the memory table's line goes through it like every other line a
// frontend can repeat.
func TestMemTableFloodLogBounded(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	for range floodLines {
		if err := g.f.Do(vut.SetMemTable, vut.MemTable(1, g.m.Region()), g.m.FD); err != nil {
			t.Fatal(err)
		}
	}
	g.postRx(1)
	g.send(1) // still served
	if n := h.log.count("vhost-user memory table"); n > 40 {
		t.Fatalf("%d SET_MEM_TABLE requests logged %d lines", floodLines+1, n)
	}
}

// TestRefusedFrontendsLogBounded: a local process that connects again
// and again while a frontend is served is refused each time, and its
// connections log no more than the rate limit's lines.
func TestRefusedFrontendsLogBounded(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	for range floodLines {
		c, err := net.Dial("unix", h.path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		c.Read(b[:]) // refused: closed by the backend
		c.Close()
	}
	g.send(1) // the frontend being served is not disturbed
	if n := h.log.count("refused a second frontend"); n == 0 || n > 40 {
		t.Fatalf("%d refused connections logged %d lines", floodLines, n)
	}
}
