package vsock

import "testing"

// TestFIFO: the queue keeps order across the wrap of its array, refuses
// a push when full (queueRST counts that as a dropped RST), and remove
// keeps the others' order.
func TestFIFO(t *testing.T) {
	var f fifo[reply]
	f.init(3)
	for round := range uint32(5) { // five laps: head wraps around the array
		for i := range uint32(3) {
			if !f.push(reply{round, i}) {
				t.Fatalf("round %d: push %d refused", round, i)
			}
		}
		if f.push(reply{round, 9}) {
			t.Fatalf("round %d: a push beyond the capacity was taken", round)
		}
		f.remove(reply{round, 1})
		for _, want := range []uint32{0, 2} {
			if got, ok := f.pop(); !ok || got != (reply{round, want}) {
				t.Fatalf("round %d: pop = %v, %v; want {%d %d}", round, got, ok, round, want)
			}
		}
		if _, ok := f.pop(); ok || f.n != 0 {
			t.Fatalf("round %d: pop of an empty queue succeeded", round)
		}
	}
	f.push(reply{7, 7})
	f.clear()
	if _, ok := f.pop(); ok {
		t.Fatal("clear left an element")
	}
}
