package netdev

// Multiqueue (FeatureMQ): which queue pairs carry traffic.

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Steerer is implemented by a backend that can leave and rejoin the set
// of queues the host spreads incoming frames over: *tap.Queue does it
// with TUNSETQUEUE (IFF_DETACH_QUEUE, IFF_ATTACH_QUEUE). A device with
// more than one pair detaches the backends of the pairs the driver does
// not use, so that no frame waits on a queue nobody reads. A backend
// that does not implement it keeps receiving on every pair; the device
// delivers what it reads there all the same.
//
// Note for a TAP: Linux drops the frames still queued on a queue it
// detaches (tun_queue_purge). The device reads every queue whenever the
// guest has buffers, so what is lost is what arrived since the last
// read: a few frames at most, which TCP retransmits.
type Steerer interface {
	SetEnabled(enabled bool) error
}

// pairSet is the device's queue pairs' backends, which of them receive
// (attached), and how many pairs the driver uses. mu serialises the
// control queue's VQ_PAIRS_SET with Activate; active is read from any
// goroutine.
type pairSet struct {
	bes []Backend

	mu       sync.Mutex
	attached []bool // per pair: its backend gets frames (a new TAP queue is attached)
	started  int    // pairs whose engines run in this activation
	active   atomic.Int32
}

func (p *pairSet) init(bes []Backend) {
	p.bes = bes
	p.attached = make([]bool, len(bes))
	for k := range p.attached {
		p.attached[k] = true
	}
	p.active.Store(1)
}

// activate starts an activation with started pairs running and the
// driver using the first one only (virtio 1.2 §5.1.6.5.5: until
// VQ_PAIRS_SET the device uses only the first pair).
func (p *pairSet) activate(started int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = started
	p.active.Store(1)
	if err := p.steer(1); err != nil {
		return fmt.Errorf("virtio-net: %w", err)
	}
	return nil
}

// set makes the driver's first n pairs carry traffic: it attaches their
// backends and detaches the others'. n must be 1 to the pairs started.
func (p *pairSet) set(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 1 || n > p.started {
		return fmt.Errorf("%d queue pairs, want 1 to %d", n, p.started)
	}
	if err := p.steer(n); err != nil {
		return err
	}
	p.active.Store(int32(n))
	return nil
}

// steer attaches the backends of the first n pairs (attach first, so
// that frames always have a queue to go to) and then detaches the rest.
// It goes on past an error and returns the first.
func (p *pairSet) steer(n int) error {
	var errs []error
	for k := range p.bes {
		if want := k < n; want && !p.attached[k] {
			errs = append(errs, p.switchPair(k, true))
		}
	}
	for k := range p.bes {
		if want := k < n; !want && p.attached[k] {
			errs = append(errs, p.switchPair(k, false))
		}
	}
	return errors.Join(errs...)
}

func (p *pairSet) switchPair(k int, on bool) error {
	s, ok := p.bes[k].(Steerer)
	if !ok {
		p.attached[k] = on
		return nil
	}
	if err := s.SetEnabled(on); err != nil {
		return fmt.Errorf("queue pair %d: attach %v: %w", k+1, on, err)
	}
	p.attached[k] = on
	return nil
}

// ActivePairs is the number of queue pairs the driver uses: 1 after
// activation, then what its last VQ_PAIRS_SET said.
func (d *Device) ActivePairs() int { return int(d.mq.active.Load()) }

// Pairs is the number of queue pairs the device has (max_virtqueue_pairs).
func (d *Device) Pairs() int { return len(d.pairs) }
