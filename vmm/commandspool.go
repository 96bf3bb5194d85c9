package vmm

// Command mode's output spool: the guest's console write spins until the
// host completes it.

import (
	"io"
	"sync"
)

// SpoolBytes is how much of one command stream Flint holds while its
// stdout or stderr is slow to take it. Linux's virtio_console completes a
// tty write by spinning, interrupts off, until the device returns the
// buffer; a device that wrote straight to a pipe whose reader paused
// (flint run -- dmesg | less) froze a guest CPU, and after 20 s the
// guest's soft-lockup and RCU-stall detectors failed the run (121).
const SpoolBytes = 16 << 20

// spool is an io.Writer that queues up to max bytes for w, written in
// order by its own goroutine; beyond max, Write waits (back-pressure).
// w's first error fails every later Write. Close waits until the queue
// reached w; afterwards Write writes to w directly.
type spool struct {
	w   io.Writer
	max int

	mu      sync.Mutex
	cond    sync.Cond // the queue or the state changed
	q       []byte
	held    int // len(q) and the bytes being written to w
	err     error
	closed  bool // Close was called
	drained bool // the goroutine is done
}

func newSpool(w io.Writer, max int) *spool {
	s := &spool{w: w, max: max}
	s.cond.L = &s.mu
	go s.run()
	return s
}

// Write implements io.Writer.
func (s *spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.held > 0 && s.held+len(p) > s.max && s.err == nil && !s.drained {
		s.cond.Wait()
	}
	switch {
	case s.err != nil:
		return 0, s.err
	case s.drained:
		return s.w.Write(p)
	}
	s.q = append(s.q, p...)
	s.held += len(p)
	s.cond.Broadcast()
	return len(p), nil
}

func (s *spool) run() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for len(s.q) == 0 && !s.closed {
			s.cond.Wait()
		}
		if len(s.q) == 0 || s.err != nil {
			break
		}
		chunk := s.q
		s.q = nil
		s.mu.Unlock()
		_, err := s.w.Write(chunk)
		s.mu.Lock()
		s.held -= len(chunk)
		if err != nil {
			s.err = err
		}
		s.cond.Broadcast()
	}
	s.q, s.held, s.drained = nil, 0, true
	s.cond.Broadcast()
}

// Close waits until what was queued has been written (or w failed).
//
// It waits without a deadline, and that is meant: w is Flint's own stdout
// or stderr (or the --console file), so the wait ends when the user's
// reader takes the bytes, as for any program writing to a pipe, and
// dropping them would lose the end of the command's output in silence.
// The queue holds at most max bytes plus one Write (at most 64 KiB from
// virtio/console); the vCPUs have stopped when RunCommand flushes, so the
// guest can add no more than the transmit chain its console device was
// still copying (the device is reset only afterwards, in closeCommand).
// --timeout bounds the run, not this wait.
func (s *spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cond.Broadcast()
	for !s.drained {
		s.cond.Wait()
	}
	return s.err
}
