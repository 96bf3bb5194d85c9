package blk

import (
	"testing"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// TestEngineState checks what the request engine reports for dumps:
// inactive before activation, waiting for a kick when idle with the
// indices of the requests done, stopped after a reset.
func TestEngineState(t *testing.T) {
	d, err := Open(image(t, testSectors), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if s := d.EngineStates(); len(s) != 1 || s[0].Name != "requests" || s[0].Activity != virtio.ActivityInactive {
		t.Fatalf("before activation: %+v", s)
	}
	r := &rig{tb: t, dev: d}
	r.activate(0)
	waitIdle := func(n uint16) {
		t.Helper()
		waitUntil(t, "the engine waiting for a kick", func() bool {
			s := d.EngineStates()[0]
			return s.Activity == virtio.ActivityWaitKick && s.NextAvail == n && s.NextUsed == n
		})
	}
	waitIdle(0)
	for i := range 3 {
		r.submit(false, qt.R(hdr(TypeIn, uint64(i))), qt.W(SectorSize+1))
	}
	waitIdle(3)
	r.h.Close()
	if s := d.EngineStates()[0]; s.Activity != virtio.ActivityStopped || s.NextAvail != 3 {
		t.Fatalf("after reset: %+v", s)
	}
}

// TestCountersNamed fails when a Stats field has no name in Counters
// (logs, dumps and metrics would miss it) or two names share a field.
func TestCountersNamed(t *testing.T) {
	s := new(Stats)
	if err := virtio.CheckCounters(s, s.Counters()); err != nil {
		t.Fatal(err)
	}
}
