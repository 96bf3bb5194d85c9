package netdev

import (
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// TestMQResume: a resumed activation (virtio.Resumer) uses the pairs
// the driver's last VQ_PAIRS_SET chose, as many as were started at most,
// and keeps the choice for a later resume with more started; a fresh
// activation goes back to pair 1, and a resume after it stays there.
// Only the pairs used are attached.
func TestMQResume(t *testing.T) {
	d, bes := newMQ(t, 3)
	var _ virtio.Resumer = d
	cfgs := make([]qt.Config, len(d.QueueMaxSizes()))
	for i := range cfgs {
		cfgs[i] = qt.Config{Size: 8, DataSize: 4096}
	}
	_, queues, _ := virtiotest.SyncQueues(t, d, fMQ|fCommon, cfgs...)
	start := func(started int, resume bool, want int) {
		t.Helper()
		if err := d.configure(queues, started, resume); err != nil {
			t.Fatal(err)
		}
		if d.ActivePairs() != want {
			t.Fatalf("%d pairs started, resume %v: %d pairs in use, want %d", started, resume, d.ActivePairs(), want)
		}
		for k, b := range bes {
			if b.attached() != (k < want) {
				t.Fatalf("%d pairs started, resume %v: pair %d attached %v", started, resume, k+1, b.attached())
			}
		}
	}
	start(3, false, 1)
	if wait, err := d.mq.set(3); wait != 0 || err != nil {
		t.Fatalf("VQ_PAIRS_SET 3: wait %v, %v", wait, err)
	}
	start(3, true, 3)
	start(2, true, 2) // capped at the pairs started
	start(3, true, 3) // the driver's choice is kept
	start(3, false, 1)
	start(3, true, 1)
}
