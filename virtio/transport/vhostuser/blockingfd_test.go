package vhostuser_test

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestCallSocketMadeBlocking: a frontend passes a unix socket as a
// ring's call fd (UML does) but keeps a descriptor of the same open file,
// so it can clear the O_NONBLOCK the backend set, and it stops reading
// the socket until it is full. The device's next notification must not
// block: a raw write(2) would hold the engine's thread in the kernel,
// where neither the device's reset (the session could never end) nor
// the runtime's next garbage collection (the whole backend would freeze)
// can stop it. Automatic garbage collection is off while the notification
// is owed, so that without the fix this test sees the session hang
// instead of freezing with it.
func TestCallSocketMadeBlocking(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	h := newHarness(t)
	g := h.connectUML(0)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	if err := g.f.SetVringFD(vut.SetVringCall, 0, sp[1]); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 4096)
	for {
		if _, err := unix.SendmsgN(sp[1], junk, nil, nil, unix.MSG_DONTWAIT); err != nil {
			break // full
		}
	}
	if _, err := unix.FcntlInt(uintptr(sp[1]), unix.F_SETFL, 0); err != nil { // blocking again, for the backend too
		t.Fatal(err)
	}
	g.postRx(1)
	g.rx.EnableInterrupts()
	h.be.inject(frame(1))
	deadline := time.Now().Add(5 * time.Second)
	for g.rx.UsedIdx() == 0 { // the frame is in; its notification follows
		if time.Now().After(deadline) {
			t.Fatal("no frame received")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	g.f.Close()
	deadline = time.Now().Add(5 * time.Second)
	for h.srv.Connected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	hung := h.srv.Connected()
	for h.srv.Connected() { // unblock a stuck notification so the test can end
		unix.Recvfrom(sp[0], junk, unix.MSG_DONTWAIT)
		time.Sleep(time.Millisecond)
	}
	if hung {
		t.Fatal("the session did not end: the device's notification blocked on the full socket")
	}
	runtime.GC()
}

// TestKickMadeBlocking: a frontend clears the O_NONBLOCK of its kick
// eventfds (the open file the backend shares) after SET_VRING_KICK and
// before the device starts. The device's engines must still park on
// them without reading: GET_VRING_BASE, which waits for the device to
// stop, must answer at once instead of hanging in the engines' blocking
// read until the frontend kicks again (5 s in the review).
func TestKickMadeBlocking(t *testing.T) {
	q := newMQ(t)
	rings := make([]*vut.Ring, 5)
	for i := range rings {
		rings[i] = q.startDisabled(i)
		if _, err := unix.FcntlInt(rings[i].Kick.Fd(), unix.F_SETFL, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range rings {
		q.must(q.f.SetState(vut.SetVringEnable, uint32(i), 1))
	}
	q.pairsSet(rings[4], 2)           // the device runs
	time.Sleep(50 * time.Millisecond) // its engines wait for kicks
	done := make(chan error, 1)
	go func() { _, err := q.f.GetVringBase(0); done <- err }()
	select {
	case err := <-done:
		q.must(err)
	case <-time.After(2 * time.Second):
		for _, r := range rings { // free the engines' reads so the test can end
			unix.Write(int(r.Kick.Fd()), []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}
		<-done
		t.Fatal("GET_VRING_BASE hung: the device's engines read their kick eventfds made blocking")
	}
}
