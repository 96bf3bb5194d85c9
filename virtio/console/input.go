package console

// The input side: a reader goroutine fills one bounded buffer from the
// io.Reader and the receive engine drains it into guest buffers.

import (
	"errors"
	"io"
	"sync"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// input is the bounded hand-off between the reader goroutine and the
// receive engine. The reader fills buf only while it is empty (off ==
// n); the engine reads buf[off:n] only under mu. So each byte of buf has
// one owner at a time and the mutex orders the hand-over.
type input struct {
	r     io.Reader
	stats *tally
	guard *virtio.Guard // contains a panic on the reader goroutine

	mu      sync.Mutex
	drained sync.Cond // the engine emptied buf, or the device closed
	buf     []byte
	off, n  int  // pending input is buf[off:n]
	ended   bool // EOF or a read error: nothing more will come
	closed  bool
	started bool

	// ready holds a token after the reader filled buf or input ended; the
	// receive engine waits on it (a stale token only costs a re-check).
	ready chan struct{}
}

func (in *input) init(r io.Reader, size int, stats *tally, guard *virtio.Guard) {
	in.r, in.stats, in.guard = r, stats, guard
	in.drained.L = &in.mu
	in.buf = make([]byte, size)
	in.ready = make(chan struct{}, 1)
	in.ended = r == nil
}

// start runs the reader goroutine once, at the first activation (so a
// device that is never activated reads nothing).
func (in *input) start() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started || in.ended || in.closed {
		return
	}
	in.started = true
	go in.loop()
}

// loop reads into buf whenever it is empty, until EOF, an error or Close.
// A panic (in the Reader, say) ends it as input that ended, and the
// device's service: the guard reports it.
func (in *input) loop() {
	defer in.guard.Recover("console input")
	defer in.end()
	for {
		n, err := in.r.Read(in.buf)
		if in.handOver(n, err) {
			return
		}
	}
}

// handOver gives the guest what one Read returned and waits until it is
// taken; it reports whether the input ended. Its lock is released by a
// defer, so a panic leaves the mutex free for the receive engine.
func (in *input) handOver(n int, err error) bool {
	n = max(0, min(n, len(in.buf))) // a Reader that lies about n
	in.mu.Lock()
	defer in.mu.Unlock()
	in.off, in.n = 0, n
	if err != nil {
		in.ended = true
		if !errors.Is(err, io.EOF) {
			in.stats.Inc(cReadErrors)
		}
	}
	for in.off < in.n && !in.closed {
		in.wake()
		in.drained.Wait()
	}
	return in.ended || in.closed
}

// end marks the input ended (after EOF or Close, again; after a panic,
// for the first time) and wakes the receive engine.
func (in *input) end() {
	in.mu.Lock()
	in.ended = true
	in.mu.Unlock()
	in.wake()
}

func (in *input) wake() {
	select {
	case in.ready <- struct{}{}:
	default:
	}
}

// pending reports whether buffered bytes wait for the guest.
func (in *input) pending() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.off < in.n
}

// deliver copies buffered bytes into segs (a chain's writable buffers)
// and returns how many it copied.
func (in *input) deliver(segs [][]byte) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	k := queue.CopySegs(in.buf[in.off:in.n], segs, 0, true)
	if in.off += k; in.off == in.n {
		in.drained.Signal()
	}
	return k
}

// close makes the reader goroutine end once its Read returns.
func (in *input) close() {
	in.mu.Lock()
	in.closed = true
	in.drained.Broadcast()
	in.mu.Unlock()
}
