package vhostuser_test

import (
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// TestBrokenPackedBase: a packed TX ring the driver breaks (a buffer id
// past the ring's size) right behind a good frame, both made available
// under one kick, so the engine sends the frame and completes it but
// breaks before it publishes. Stopping the ring (GET_VRING_BASE) must
// give the driver that completion, and the base's used half must be the
// used position the driver then reads at: a ring restarted at a used
// position the driver never saw writes its used descriptors where the
// driver does not look. The avail half is the broken buffer's, which
// the device never consumed.
func TestBrokenPackedBase(t *testing.T) {
	g := connectPacked(t)
	g.traffic(1, 0x10)
	time.Sleep(50 * time.Millisecond) // the TX engine parks for a kick
	tx := g.d[1]
	id, err := tx.Add(qt.Buf{Data: frame(0x20)})
	g.must(err)
	tx.Kick() // flags stored, no notification yet
	tx.AddRaw(qt.PDesc{Addr: tx.Alloc(64), Len: 64, ID: 100})
	g.notify(1)
	g.sent++
	g.be.waitTx(t, g.sent)
	deadline := time.Now().Add(5 * time.Second)
	for a := g.dev.EngineStates()[1].Activity; a != virtio.ActivityBroken && a != virtio.ActivityStopped; a = g.dev.EngineStates()[1].Activity {
		if time.Now().After(deadline) {
			t.Fatalf("TX engine %v, want broken (or stopped by the fault)", a)
		}
		time.Sleep(time.Millisecond)
	}
	base, err := g.f.GetVringBase(1)
	g.must(err)
	var got []qt.Used
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && len(got) == 0; time.Sleep(time.Millisecond) {
		got = tx.AllUsed()
	}
	if len(got) != 1 || got[0].ID != uint32(id) {
		t.Errorf("the driver read used descriptors %+v after the stop, want buffer %d's", got, id)
	}
	if used := uint16(base >> 16); used != tx.UsedPos() {
		t.Errorf("GET_VRING_BASE %#x: used position %s, the driver's is %s", base, queue.PackedPos(used), queue.PackedPos(tx.UsedPos()))
	}
	if avail, want := uint16(base), uint16(pos(2)); avail != want {
		t.Errorf("GET_VRING_BASE %#x: avail position %s, want %s", base, queue.PackedPos(avail), queue.PackedPos(want))
	}
}
