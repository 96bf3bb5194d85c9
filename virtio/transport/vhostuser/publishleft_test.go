package vhostuser

import (
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/queue"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestStopPublishesLeftCompletions: a split ring whose device completed
// a chain (Push) but stopped before publishing it, as an engine does
// when its queue breaks, gives the driver that chain when the ring
// stops (GET_VRING_BASE): used.idx moves on and the driver is notified,
// instead of the buffer being lost to the driver for good (a restart
// resumes at the next avail index, past it, and reads used.idx from
// memory).
func TestStopPublishesLeftCompletions(t *testing.T) {
	dev, s, rings, run := enableSession(t)
	run(vut.SetVringCall, 0, le64(0), int(rings[0].CallW.Fd()))
	run(vut.SetVringKick, 0, le64(0), int(rings[0].Kick.Fd()))
	run(vut.SetVringEnable, 0, enableMsg(0, 1))
	if !dev.active {
		t.Fatal("the device does not run on ring 0")
	}
	if _, err := rings[0].Add(vut.Buf{Addr: 0x80000, Len: 64}); err != nil {
		t.Fatal(err)
	}
	rings[0].Publish()
	q := dev.queues[0].Ring
	var c queue.Chain
	if ok, err := q.Pop(&c); !ok || err != nil {
		t.Fatalf("pop: %v %v", ok, err)
	}
	q.Push(c.Head, 0) // completed, never published
	if base := getBase(t, s, 0); base != 1 {
		t.Fatalf("GET_VRING_BASE 0: %d, want 1", base)
	}
	if got := rings[0].UsedIdx(); got != 1 {
		t.Fatalf("used.idx %d after the stop, want 1 (the completed chain)", got)
	}
	if !rings[0].WaitSignal(time.Second) {
		t.Fatal("the driver was not notified of the completion")
	}
}
