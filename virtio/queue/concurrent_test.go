package queue_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

// TestConcurrentDriverAndDevice runs the mock driver and the device in
// two goroutines, with kicks and interrupts as channels, and checks that
// every buffer arrives once, in order, with its data, and that neither
// side ever sleeps while the other has work for it (a lost wake-up hangs
// the test). Run it with -race: the ring words are the only
// synchronisation between the two sides.
func TestConcurrentDriverAndDevice(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
	}{
		{"flags", qt.FeatureIndirectDesc},
		{"event-idx", allRing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const total = 20000
			d := qt.MustNew(t, qt.Config{Size: 64, Features: tc.features})
			q := d.MustQueue(t)
			kick := make(chan struct{}, 1)
			irq := make(chan struct{}, 1)
			done := make(chan error, 1)
			signal := func(ch chan struct{}) {
				select {
				case ch <- struct{}{}:
				default:
				}
			}

			go func() { // device
				var c queue.Chain
				next := uint64(0)
				for next < total {
					q.DisableNotifications()
					for {
						ok, err := q.Pop(&c)
						if err != nil {
							done <- err
							return
						}
						if !ok {
							break
						}
						var seq [8]byte
						if c.ReadAt(seq[:], 0) != 8 || binary.LittleEndian.Uint64(seq[:]) != next {
							t.Errorf("chain %d carries %x", next, seq)
						}
						c.WriteAt(seq[:], 0)
						q.Push(c.Head, 8)
						next++
					}
					if q.Publish() && q.NeedsInterrupt() {
						signal(irq)
					}
					if q.EnableNotifications() || next == total {
						continue
					}
					select {
					case <-kick:
					case <-time.After(10 * time.Second):
						t.Errorf("device starved at %d: lost kick", next)
						done <- nil
						return
					}
				}
				done <- nil
			}()

			sent, got := uint64(0), uint64(0)
			reap := func() {
				for {
					u, ok := d.Used()
					if !ok {
						return
					}
					w := d.Written(u)
					if u.Len != 8 || binary.LittleEndian.Uint64(w) != got {
						t.Fatalf("used %d: len %d data %x", got, u.Len, w)
					}
					got++
				}
			}
			d.DisableInterrupts()
			for got < total {
				reap()
				for sent < total && d.FreeDescs() >= 2 {
					var seq [8]byte
					binary.LittleEndian.PutUint64(seq[:], sent)
					var err error
					if sent%3 == 0 {
						_, err = d.AddIndirect(qt.R(seq[:]), qt.W(8))
					} else {
						_, err = d.Add(qt.R(seq[:]), qt.W(8))
					}
					if err != nil {
						t.Fatal(err)
					}
					sent++
					if sent%7 == 0 && d.Kick() {
						signal(kick)
					}
				}
				if d.Kick() {
					signal(kick)
				}
				if got == total {
					break
				}
				if d.EnableInterrupts() {
					d.DisableInterrupts()
					continue
				}
				select {
				case <-irq:
				case <-time.After(10 * time.Second):
					t.Fatalf("driver starved at %d/%d: lost interrupt", got, sent)
				}
				d.DisableInterrupts()
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if st := q.Stats(); st.Chains != total || st.Malformed != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
