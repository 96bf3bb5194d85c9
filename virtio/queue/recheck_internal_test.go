package queue

import "testing"

// TestMarkSinceWraps: the published-entry count is 48 bits and wraps;
// the distance between two marks is taken modulo 2^48, so a span across
// the wrap is its true length, not a huge number.
func TestMarkSinceWraps(t *testing.T) {
	from := Mark((1<<48-2)<<16 | 7) // two entries before the count wraps
	var k marks
	k.pub = from
	k.published(5, 12)
	if n := k.pub.since(from); n != 5 {
		t.Fatalf("since = %d across the wrap, want 5", n)
	}
	if p := k.pub.pos(); p != 12 {
		t.Fatalf("position %d, want 12", p)
	}
}
