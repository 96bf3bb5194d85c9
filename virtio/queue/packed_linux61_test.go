package queue_test

// The Linux 6.1 packed-ring model's runs (packed_linux61_model_test.go
// has the model): RX and TX at random interleavings, and checks that the
// model finds lost wake-ups where they exist.

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// l61Seeds is how many interleavings each size gets (go test -run
// Linux61 -l61.seeds=2000 for a long search).
var l61Seeds = flag.Int("l61.seeds", 10, "interleavings per ring size in TestPackedLinux61*")

// l61Bias is the chance a step goes to the driver when both sides can
// step: seeds alternate between even schedules and ones where one side
// runs in long bursts while the other stands still (where races with a
// window of several steps show).
func l61Bias(seed uint64) float64 { return [...]float64{0.5, 0.95, 0.05, 0.8, 0.2}[seed%5] }

// pick chooses the next step: the driver's with probability bias when
// both sides have one, then one of that side's at random.
func pick(rng *rand.Rand, bias float64, dev, drv []func() string) func() string {
	side := dev
	if len(dev) == 0 || (len(drv) > 0 && rng.Float64() < bias) {
		side = drv
	}
	return side[rng.IntN(len(side))]
}

// l61Sim is a run's scheduler: the random choice of the next step and
// the trace of the last ones.
type l61Sim struct {
	t     *testing.T
	rng   *rand.Rand
	bias  float64
	steps int
	trace []string
}

func newL61Sim(t *testing.T, num uint16, seed uint64) *l61Sim {
	return &l61Sim{t: t, rng: rand.New(rand.NewPCG(seed, uint64(num))), bias: l61Bias(seed)}
}

// step runs one of the steps the two sides offer; false when there is
// none (the run's end).
func (s *l61Sim) step(dev, drv []func() string) bool {
	if len(dev)+len(drv) == 0 {
		return false
	}
	if s.steps++; s.steps > 10_000_000 {
		s.t.Fatal("no end")
	}
	if len(s.trace) == 40 {
		s.trace = s.trace[1:]
	}
	s.trace = append(s.trace, pick(s.rng, s.bias, dev, drv)())
	return true
}

func (s *l61Sim) String() string { return "last steps: " + strings.Join(s.trace, ", ") }

var l61Sizes = []uint16{1, 2, 3, 4, 5, 8, 17, 64, 100, 256}

// TestPackedLinux61RX runs the RX queue of a small-mode virtio_net: the
// device holds one buffer, delivers a frame into it when the TAP has one,
// publishes every 64 frames and when the TAP runs dry (then gives the
// held buffer back with Undo and parks), and waits for a kick when the
// ring is empty. Every frame must reach the driver.
func TestPackedLinux61RX(t *testing.T) {
	l61Runs(t, 1, func(t *testing.T, num uint16, seed uint64) error { return l61RX(t, num, seed, 3000, false) })
}

// l61Runs runs run for every size of at least minSize and l61Seeds seeds.
func l61Runs(t *testing.T, minSize uint16, run func(t *testing.T, num uint16, seed uint64) error) {
	for _, num := range l61Sizes {
		if num < minSize {
			continue
		}
		for seed := range uint64(*l61Seeds) {
			t.Run(fmt.Sprintf("size=%d/seed=%d", num, seed), func(t *testing.T) {
				if err := run(t, num, seed); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// l61Finds fails t unless run stalls for one of the first n seeds.
func l61Finds(t *testing.T, n uint64, run func(seed uint64) error, what string) {
	for seed := range n {
		if err := run(seed); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return
		}
	}
	t.Fatalf("no interleaving stalled %s: the model lost its power to find lost wake-ups", what)
}

// TestPackedLinux61RXModelFindsLostKick checks the RX model's power: a
// device that enables notifications but does not re-check the ring
// before it waits loses the kick of a refill that raced with it.
func TestPackedLinux61RXModelFindsLostKick(t *testing.T) {
	l61Finds(t, 400, func(seed uint64) error { return l61RX(t, 64, seed, 3000, true) }, "a device that skips the re-check")
}

// l61RX runs frames through the RX model and returns an error describing
// the stall if not all reached the driver; noRecheck makes the device
// faulty (see l61Dev).
func l61RX(t *testing.T, num uint16, seed uint64, frames int, noRecheck bool) error {
	r, q, _ := newL61(t, num)
	sim := newL61Sim(t, num, seed)
	d := &l61Dev{q: q, held: -1, disable: true, noRecheck: noRecheck}
	var nap napi
	pollPhase, got := 0, 0
	tapQueued, injected, received := 0, 0, 0
	refill := func() { // try_fill_recv
		for r.addDirect(1, true) {
		}
		if r.kickPrepare() {
			d.notify()
		}
	}
	refill() // virtnet_open
	for {
		var dev, drv []func() string // the device (and its backend), the driver (and its stack)
		if injected < frames {
			dev = append(dev, func() string {
				injected++
				tapQueued++
				if d.st == devParkTap {
					d.st = devRun // the wake; errParked: pop again, no new Step
				}
				return "tap frame"
			})
		}
		dev = d.running(dev, func() string {
			if d.held < 0 {
				c := d.pop(t)
				if c == nil {
					return "dev empty"
				}
				d.held = int(c.Head)
				return "dev pop"
			}
			if tapQueued == 0 { // ReadvOrPark's idle: flush, give back, park
				d.flush()
				d.then(func() string {
					if q.Undo(1) != 1 {
						t.Fatal("undo")
					}
					d.held = -1
					d.st = devParkTap
					if tapQueued > 0 { // a frame during idle raised an edge
						d.st = devRun
					}
					return "dev give back, park"
				})
				return "dev idle"
			}
			tapQueued--
			q.Push(uint16(d.held), 60)
			d.held = -1
			if d.done++; d.done >= 64 {
				d.flush()
			}
			return "dev deliver"
		})
		if d.irq {
			drv = append(drv, func() string {
				d.irq = false
				if r.interrupt() {
					nap.schedule(r)
				}
				return "irq"
			})
		}
		if nap.sched || pollPhase != 0 {
			drv = append(drv, func() string { // virtnet_poll, one driver step at a time
				switch pollPhase {
				case 0, 1: // virtnet_receive: one get_buf per step
					if pollPhase == 0 {
						pollPhase, got = 1, 0
					}
					if got < 64 {
						if _, ok := r.getBuf(t); ok {
							got++
							received++
							return "napi get"
						}
					}
					pollPhase = 2
					if r.numFree > min(64, int(r.num))/2 {
						return "napi refill start"
					}
					pollPhase = 4
					return "napi no refill"
				case 2: // try_fill_recv: one add per step
					if r.addDirect(1, true) {
						return "napi add"
					}
					pollPhase = 3
					return "napi ring full"
				case 3:
					pollPhase = 4
					if r.kickPrepare() {
						d.notify()
						return "napi kick"
					}
					return "napi no kick"
				}
				pollPhase = 0
				if got < 64 {
					nap.complete(r)
					return "napi complete"
				}
				return "napi budget spent"
			})
		}
		if nap.checking {
			drv = append(drv, func() string { nap.check(r); return "napi check" })
		}
		if !sim.step(dev, drv) {
			break
		}
	}
	if received != frames || tapQueued != 0 {
		return fmt.Errorf("stalled: %d of %d frames received, %d queued at the TAP\n%v\n%v\n%v",
			received, frames, tapQueued, d, r, sim)
	}
	return nil
}

// TestPackedLinux61TX runs the TX queue with napi_tx: start_xmit batches
// with xmit_more, stops the queue when fewer than 2+MAX_SKB_FRAGS
// descriptors are free and counts on the TX interrupt (or, while packets
// flow the other way, the RX NAPI's clean) to wake it. The device
// completes every chain at once, publishes every 64 and when the ring is
// empty. Every packet must reach the device.
func TestPackedLinux61TX(t *testing.T) {
	// Below 2+MAX_SKB_FRAGS+1 descriptors the queue would stop with
	// every descriptor free.
	l61Runs(t, l61MaxTab+1, func(t *testing.T, num uint16, seed uint64) error { return l61TX(t, num, seed, 3000, true) })
}

// TestPackedLinux61TXModelFindsKnownHang checks that the model can find a
// lost wake-up at all: without the 6.1.9 fix, start_xmit stops the queue
// with callbacks disabled after an xmit_more batch, and Linux 6.1.0's TX
// hangs (upstream d71ebe8114b4: "could be observed when using pktgen with
// burst enabled"). The model must see that hang in some interleaving.
func TestPackedLinux61TXModelFindsKnownHang(t *testing.T) {
	l61Finds(t, 40, func(seed uint64) error { return l61TX(t, 256, seed, 3000, false) }, "the unfixed 6.1.0 start_xmit")
}

// l61TX runs packets through the TX model and returns an error describing
// the stall if not all reached the device. fixed applies the 6.1.9
// start_xmit fix.
func l61TX(t *testing.T, num uint16, seed uint64, packets int, fixed bool) error {
	r, q, _ := newL61(t, num)
	sim := newL61Sim(t, num, seed)
	d := &l61Dev{q: q, held: -1, disable: true}
	var nap napi
	queued, injected, sent, stopped, kickDue := 0, 0, 0, false, false
	freeOld := func() {
		for {
			if _, ok := r.getBuf(t); !ok {
				return
			}
		}
	}
	for {
		var dev, drv []func() string // the device (and its backend), the driver (and its stack)
		if injected < packets {
			drv = append(drv, func() string { injected++; queued++; return "stack packet" })
			drv = append(drv, func() string { // virtnet_poll_cleantx from the RX NAPI
				for {
					r.disableCb()
					freeOld()
					if r.enableCbDelayed() {
						break
					}
				}
				if r.numFree >= l61MaxTab {
					stopped = false
				}
				return "rx napi clean"
			})
		}
		if kickDue {
			drv = append(drv, func() string { // start_xmit's end, a step of its own
				kickDue = false
				if r.kickPrepare() {
					d.notify()
					return "xmit kick"
				}
				return "xmit no kick"
			})
		} else if queued > 0 && !stopped {
			drv = append(drv, func() string { // start_xmit
				kick := queued == 1 || sim.rng.IntN(4) == 0 // !netdev_xmit_more()
				for {
					r.disableCb()
					freeOld()
					if !kick || r.enableCbDelayed() {
						break
					}
				}
				segs := 1 + sim.rng.IntN(l61MaxTab)
				ok := false
				if segs > 1 {
					ok = r.addIndirect(segs)
				} else {
					ok = r.addDirect(1, false)
				}
				if !ok {
					t.Fatalf("add failed with the queue running: %v", r)
				}
				queued--
				if r.numFree < l61MaxTab {
					// With 6.1.9's "virtio-net: correctly enable callback
					// during start_xmit" (in Debian's 6.1): callbacks on,
					// NAPI if buffers were used meanwhile.
					stopped = true
					if fixed && !r.enableCbDelayed() {
						nap.schedule(r)
					}
				}
				kickDue = kick || stopped
				return "xmit"
			})
		}
		dev = d.running(dev, func() string {
			c := d.pop(t)
			if c == nil {
				return "dev empty"
			}
			q.Push(c.Head, 0)
			sent++
			if d.done++; d.done >= 64 {
				d.flush()
			}
			return "dev send"
		})
		if d.irq {
			drv = append(drv, func() string { // vring_interrupt, skb_xmit_done
				d.irq = false
				if r.interrupt() {
					r.disableCb()
					nap.schedule(r)
				}
				return "irq"
			})
		}
		if nap.sched {
			drv = append(drv, func() string { // virtnet_poll_tx
				r.disableCb()
				freeOld()
				if r.numFree >= l61MaxTab {
					stopped = false
				}
				nap.complete(r)
				return "tx napi"
			})
		}
		if nap.checking {
			drv = append(drv, func() string { nap.check(r); return "tx napi check" })
		}
		if !sim.step(dev, drv) {
			break
		}
	}
	if sent != packets {
		return fmt.Errorf("stalled: %d of %d packets sent, %d queued in the stack, queue stopped %v\n%v\n%v\n%v",
			sent, packets, queued, stopped, d, r, sim)
	}
	return nil
}
