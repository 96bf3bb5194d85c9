package fs

import (
	"testing"

	"github.com/flintvm/flint/virtio"
)

// TestCountersNamed fails when a Stats field has no name in Counters
// (logs, dumps and metrics would miss it) or two names share a field.
func TestCountersNamed(t *testing.T) {
	s := new(Stats)
	if err := virtio.CheckCounters(s, s.Counters()); err != nil {
		t.Fatal(err)
	}
}
