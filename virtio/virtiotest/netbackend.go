package virtiotest

// The one fake virtio-net backend for tests of the device and of the
// transports that carry it.

import (
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// maxQueued is how many frames a NetBackend queues for the guest before
// it drops new ones, as a NIC would.
const maxQueued = 1024

// NetBackend is an in-memory virtio-net backend (it satisfies
// virtio/netdev's Backend; frames carry the 12-byte header). Frames given
// to Inject are read by the device in order; frames the device writes
// are recorded (Sent) or, with SetEcho, looped back to the receive side.
// Deadlines are only "in the past" (wake now) or zero (none), which is
// all a device uses. Receive buffers are reused, so once they are warm
// and nothing is recorded it allocates nothing per frame (benchmarks
// through it measure the device and transport). Safe for concurrent use.
type NetBackend struct {
	mu      sync.Mutex
	cond    sync.Cond
	slots   [][]byte // receive queue: a ring of reusable buffers
	head, n int
	tx      [][]byte // recorded frames from the guest
	txCount int
	reads   int
	blocks  int
	record  bool
	echo    bool
	txBlock bool  // Writev answers EAGAIN while set
	txErr   error // Writev refuses every frame with it while set
	rdead   bool
	wdead   bool
	closed  bool
	offload []uint64
}

// NewNetBackend returns an empty backend that records what the device
// sends.
func NewNetBackend() *NetBackend {
	b := &NetBackend{record: true}
	b.cond.L = &b.mu
	return b
}

func (b *NetBackend) pushLocked(iovs ...[]byte) {
	if b.n == maxQueued {
		return // full: drop
	}
	if b.n == len(b.slots) {
		grown := make([][]byte, max(2*len(b.slots), 16))
		for i := range b.n {
			grown[i] = b.slots[(b.head+i)%len(b.slots)]
		}
		b.slots, b.head = grown, 0
	}
	i := (b.head + b.n) % len(b.slots)
	f := b.slots[i][:0]
	for _, v := range iovs {
		f = append(f, v...)
	}
	b.slots[i] = f
	b.n++
	b.cond.Broadcast()
}

// Inject queues frames (header included) for the device to read.
func (b *NetBackend) Inject(frames ...[]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range frames {
		b.pushLocked(f)
	}
}

// Queued is the number of injected frames the device has not read.
func (b *NetBackend) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Purge drops every injected frame the device has not read, as Linux
// drops what waits on a TAP queue it detaches, and returns how many.
func (b *NetBackend) Purge() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.n
	b.n = 0
	return n
}

// Reads is the number of frames the device read.
func (b *NetBackend) Reads() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reads
}

// Sent returns the recorded frames the device wrote, header included.
func (b *NetBackend) Sent() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.tx...)
}

// SentCount is the number of frames the backend accepted (recorded,
// echoed or neither).
func (b *NetBackend) SentCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.txCount
}

// Blocks is the number of writes refused with EAGAIN (SetTxBlock).
func (b *NetBackend) Blocks() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.blocks
}

// SetEcho loops every frame the device writes back to the receive side,
// instead of recording it.
func (b *NetBackend) SetEcho(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.echo, b.record = on, !on
}

// SetTxBlock makes writes fail with EAGAIN (and WaitWritable wait) while
// on is set, like a full TAP.
func (b *NetBackend) SetTxBlock(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.txBlock = on
	b.cond.Broadcast()
}

// SetTxErr makes every write fail with err (nil: succeed again).
func (b *NetBackend) SetTxErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.txErr = err
}

// Close makes every call fail with os.ErrClosed, as a closed TAP does.
func (b *NetBackend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.cond.Broadcast()
}

// SetOffload records features, as virtio/netdev's Options.SetOffload.
func (b *NetBackend) SetOffload(features uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offload = append(b.offload, features)
	return nil
}

// OffloadCalls returns what SetOffload was called with, in order.
func (b *NetBackend) OffloadCalls() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint64(nil), b.offload...)
}

// WaitSent waits until the device wrote n frames in all.
func (b *NetBackend) WaitSent(t testing.TB, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); b.SentCount() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("backend got %d frames, want %d", b.SentCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TryReadv moves the next injected frame into iovs (truncated to them).
func (b *NetBackend) TryReadv(iovs [][]byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, os.ErrClosed
	}
	if b.n == 0 {
		return 0, unix.EAGAIN
	}
	f := b.slots[b.head]
	b.head = (b.head + 1) % len(b.slots)
	b.n--
	b.reads++
	k := 0
	for _, v := range iovs {
		k += copy(v, f[k:])
	}
	return k, nil
}

// WaitReadable waits for an injected frame, the read deadline or Close.
func (b *NetBackend) WaitReadable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n == 0 && !b.rdead && !b.closed {
		b.cond.Wait()
	}
	switch {
	case b.closed:
		return os.ErrClosed
	case b.n == 0:
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Writev takes one frame: recorded, echoed, or refused as SetTxBlock and
// SetTxErr say.
func (b *NetBackend) Writev(iovs [][]byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return 0, os.ErrClosed
	case b.wdead:
		return 0, os.ErrDeadlineExceeded
	case b.txErr != nil:
		return 0, b.txErr
	case b.txBlock:
		b.blocks++
		return 0, unix.EAGAIN
	}
	n := 0
	for _, v := range iovs {
		n += len(v)
	}
	b.txCount++
	switch {
	case b.echo:
		b.pushLocked(iovs...)
	case b.record:
		f := make([]byte, 0, n)
		for _, v := range iovs {
			f = append(f, v...)
		}
		b.tx = append(b.tx, f)
	}
	b.cond.Broadcast()
	return n, nil
}

// WaitWritable waits while writes are blocked, until the write deadline
// or Close.
func (b *NetBackend) WaitWritable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.txBlock && !b.wdead && !b.closed {
		b.cond.Wait()
	}
	switch {
	case b.closed:
		return os.ErrClosed
	case b.wdead:
		return os.ErrDeadlineExceeded
	}
	return nil
}

func past(t time.Time) bool { return !t.IsZero() && !t.After(time.Now()) }

// SetReadDeadline wakes WaitReadable when t is in the past.
func (b *NetBackend) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rdead = past(t)
	b.cond.Broadcast()
	return nil
}

// SetWriteDeadline wakes Writev and WaitWritable when t is in the past.
func (b *NetBackend) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wdead = past(t)
	b.cond.Broadcast()
	return nil
}
