package vhostuser_test

import (
	"testing"

	"golang.org/x/sys/unix"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestTruncatedMemory (issue 13 finding 2): a frontend that truncates its
// memory file after SET_MEM_TABLE and then kicks makes the backend's
// next ring access fault (SIGBUS). The backend must not die: the session
// ends with the reason logged and the next frontend is served.
func TestTruncatedMemory(t *testing.T) {
	h := newHarness(t)
	f := h.dial()
	must := func(err error) { t.Helper(); noErr(t, err) }
	must(f.Do(vut.SetOwner, nil))
	must(f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck))
	f.ReplyAck = true // each request below is handled before the next
	must(f.SetU64(vut.SetFeatures, guestFeatures))
	m, err := vut.NewMemory(4<<20, 0x100000, 0x7f0000000000)
	must(err)
	t.Cleanup(m.Close)
	must(f.SetMemTable(m.Region()))
	var rings []*vut.Ring
	for i := range 2 {
		r, err := vut.NewRing(m, ringSize, true, false)
		must(err)
		t.Cleanup(r.Close)
		must(f.SetVringFD(vut.SetVringCall, uint32(i), int(r.CallW.Fd())))
		must(f.SetState(vut.SetVringNum, uint32(i), ringSize))
		must(f.SetState(vut.SetVringBase, uint32(i), 0))
		d, u, a := r.UserAddrs()
		must(f.Do(vut.SetVringAddr, vut.VringAddr(uint32(i), 0, d, u, a, ^uint64(0))))
		rings = append(rings, r)
	}
	must(unix.Ftruncate(m.FD, 0)) // every page the backend mapped is gone
	for i, r := range rings {
		f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())) // the last one starts the device
	}
	expectClosed(t, f)
	h.log.waitLog(t, "the frontend's memory faulted")
	f.Close()

	g := h.connectUML(0) // the backend lives on and serves the next one
	g.postRx(1)
	g.send(7)
	h.be.inject(frame(8))
	if got := g.recv(); got[12+14] != 8 {
		t.Fatalf("received %x", got)
	}
}

// noErr fails t on err.
func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
