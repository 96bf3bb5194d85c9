package virtio

import "testing"

// TestEngineTransitionsWrap: the count wraps at 2^24 without touching the
// indices packed below it.
func TestEngineTransitionsWrap(t *testing.T) {
	var e EngineStatus
	e.n = transitionsMask - 1
	e.Set(ActivityWaitKick, nil)
	if s := e.Load(); s.Transitions != transitionsMask || s.Activity != ActivityWaitKick || s.NextAvail != 0 || s.NextUsed != 0 {
		t.Fatalf("at 2^24-1: %+v", s)
	}
	e.Set(ActivityRunning, nil)
	if s := e.Load(); s.Transitions != 0 || s.Activity != ActivityRunning {
		t.Fatalf("wrapped: %+v", s)
	}
}
