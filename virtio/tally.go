package virtio

// Tally: a device's live counters, one atomic word per field of its
// Stats struct, written once for every device.

import "sync/atomic"

// Key names a field of S by one key, its name in logs and dumps and its
// metric path alike: Key("rx_packets", f) is Name("rx_packets",
// "rx_packets", f).
func Key[S any](key string, field func(*S) *uint64) Named[S] { return Name(key, key, field) }

// MaxCounters is the most counters a Tally holds.
const MaxCounters = 32

// eventCount is the number of Events (EventStop is the last).
const eventCount = int(EventStop) + 1

// Tally is a device's counters: one atomic word per field of its Stats
// struct S, indexed by the device's counter constants I (0, 1, ... in the
// order of its names table). Init gives it that table and the counters
// that count the engines' Events; Inc and Add are one atomic add each,
// safe from any goroutine; Stats reads a snapshot. Totals accumulate over
// the device's life (Reset keeps them).
type Tally[S any, I ~int] struct {
	live   [MaxCounters]atomic.Uint64
	names  []Named[S]
	events [eventCount]int8 // counter + 1 per Event; 0: not counted
}

// Init sets the names table (one entry per counter, in index order: the
// one place the device names its Stats fields) and which counter each of
// the engines' Events adds one to (EventMalformed, EventInterrupt,
// EventThrottled, EventBroken typically). Call it once, in the device's
// constructor. It panics if names has more than MaxCounters entries or
// an event maps outside them (a bug in the device, found by its first
// test).
func (t *Tally[S, I]) Init(names []Named[S], events map[Event]I) {
	if len(names) > MaxCounters {
		panic("virtio: Tally with more than MaxCounters counters")
	}
	t.names = names
	for e, c := range events {
		if int(e) >= eventCount || int(c) < 0 || int(c) >= len(names) {
			panic("virtio: Tally event outside the counters")
		}
		t.events[e] = int8(c) + 1
	}
}

// Inc adds one to counter i.
func (t *Tally[S, I]) Inc(i I) { t.live[i].Add(1) }

// Add adds n to counter i.
func (t *Tally[S, I]) Add(i I, n uint64) { t.live[i].Add(n) }

// Load returns counter i's total.
func (t *Tally[S, I]) Load(i I) uint64 { return t.live[i].Load() }

// Event counts e if Init mapped it to a counter: a Handler's Event calls
// it.
func (t *Tally[S, I]) Event(e Event) {
	if int(e) < eventCount {
		if c := t.events[e]; c != 0 {
			t.live[c-1].Add(1)
		}
	}
}

// Stats returns a snapshot of the counters as an S.
func (t *Tally[S, I]) Stats() S { return Snapshot(t.names, t.live[:len(t.names)]) }
