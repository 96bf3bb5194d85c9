package net

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// fakeBackend is an in-memory Backend: frames injected with inject are
// read by the device; frames the device writes are collected. Deadlines
// are only "in the past" (wake now) or zero (none), which is all the
// device uses.
type fakeBackend struct {
	mu       sync.Mutex
	cond     *sync.Cond
	rx       [][]byte // frames for the guest, header included
	tx       [][]byte // frames from the guest
	reads    int      // frames the device read
	rdead    bool
	wdead    bool
	closed   bool
	txBlock  bool // Writev returns EAGAIN while set
	txBlocks int  // Writev calls refused with EAGAIN
	txErr    error
	offloads []uint64
}

func newFake() *fakeBackend {
	b := &fakeBackend{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *fakeBackend) inject(frames ...[]byte) {
	b.mu.Lock()
	for _, f := range frames {
		b.rx = append(b.rx, bytes.Clone(f))
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *fakeBackend) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.rx)
}

func (b *fakeBackend) sent() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.tx...)
}

func (b *fakeBackend) setTxBlock(on bool) {
	b.mu.Lock()
	b.txBlock = on
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *fakeBackend) close() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *fakeBackend) TryReadv(iovs [][]byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, os.ErrClosed
	}
	if len(b.rx) == 0 {
		return 0, unix.EAGAIN
	}
	f := b.rx[0]
	b.rx = b.rx[1:]
	b.reads++
	n := 0
	for _, v := range iovs {
		n += copy(v, f[n:])
	}
	return n, nil
}

func (b *fakeBackend) WaitReadable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.rx) == 0 && !b.rdead && !b.closed {
		b.cond.Wait()
	}
	switch {
	case b.closed:
		return os.ErrClosed
	case b.rdead:
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (b *fakeBackend) Writev(iovs [][]byte) (int, error) {
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
		b.txBlocks++
		return 0, unix.EAGAIN
	}
	var f []byte
	for _, v := range iovs {
		f = append(f, v...)
	}
	b.tx = append(b.tx, f)
	return len(f), nil
}

func (b *fakeBackend) WaitWritable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.txBlock && !b.wdead && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		return os.ErrClosed
	}
	if b.wdead {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func past(t time.Time) bool { return !t.IsZero() && !t.After(time.Now()) }

func (b *fakeBackend) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	b.rdead = past(t)
	b.cond.Broadcast()
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	b.wdead = past(t)
	b.cond.Broadcast()
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) setOffload(f uint64) error {
	b.mu.Lock()
	b.offloads = append(b.offloads, f)
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) offloadCalls() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint64(nil), b.offloads...)
}

// Feature sets used by the tests.
var (
	fCommon = virtio.FeatureVersion1.Mask()
	fIndir  = virtio.FeatureRingIndirectDesc.Mask()
	fEvent  = virtio.FeatureRingEventIdx.Mask()
	fMrg    = FeatureMrgRxbuf.Mask()
	fGSO    = FeatureGuestCsum.Mask() | FeatureGuestTSO4.Mask() | FeatureGuestTSO6.Mask() | FeatureGuestECN.Mask()
	fCsum   = FeatureGuestCsum.Mask()
)

// frame builds header + Ethernet frame of size payload bytes after the
// header: a recognisable pattern derived from seq.
func frame(seq int, size int, flags, gso byte) []byte {
	f := make([]byte, HdrLen+size)
	f[0], f[1] = flags, gso
	if gso != gsoNone {
		binary.LittleEndian.PutUint16(f[4:], 1448)
	}
	for i := HdrLen; i < len(f); i++ {
		f[i] = byte(seq*7 + i)
	}
	if size >= 4 {
		binary.LittleEndian.PutUint32(f[HdrLen:], uint32(seq))
	}
	return f
}

// withNumBuffers is f with num_buffers set, as the guest should see it.
func withNumBuffers(f []byte, n int) []byte {
	g := bytes.Clone(f)
	binary.LittleEndian.PutUint16(g[hdrNumBufsOff:], uint16(n))
	return g
}

// newDevice returns a device over a fresh fake backend with the offload
// hook recording into it.
func newDevice(tb testing.TB, opts Options) (*Device, *fakeBackend) {
	tb.Helper()
	be := newFake()
	opts.SetOffload = be.setOffload
	d, err := New(be, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return d, be
}

// activate negotiates acked (plus VERSION_1) and activates d.
func activate(tb testing.TB, d *Device, acked uint64, opt virtiotest.Options) *virtiotest.Harness {
	tb.Helper()
	if opt.DataSize == 0 {
		opt.DataSize = 8 << 20
	}
	return virtiotest.MustActivate(tb, d, acked|fCommon, opt)
}

// waitUntil polls cond for up to 5 s.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle gives the device goroutines time to act on something that
// should have no visible effect.
func settle() { time.Sleep(30 * time.Millisecond) }

// postRx adds n receive buffers of size bytes each (one descriptor each,
// as Linux posts mergeable buffers) and kicks.
func postRx(tb testing.TB, h *virtiotest.Harness, n int, size uint32) {
	tb.Helper()
	for range n {
		if _, err := h.Drivers[RxQueue].Add(qt.W(size)); err != nil {
			tb.Fatal(err)
		}
	}
	h.Kick(RxQueue)
}

// rxPacket is one packet the guest received: the bytes (header first)
// and the number of used elements it spanned.
type rxPacket struct {
	data []byte
	bufs int
	lens []uint32
}

// receive reads want packets from the receive queue, following
// num_buffers as a mergeable driver does (mergeable) or taking one used
// element per packet.
func receive(tb testing.TB, h *virtiotest.Harness, want int, mergeable bool) []rxPacket {
	tb.Helper()
	d := h.Drivers[RxQueue]
	var got []rxPacket
	var cur *rxPacket
	left := 0
	waitUntil(tb, fmt.Sprintf("%d packets", want), func() bool {
		for {
			u, ok := d.Used()
			if !ok {
				return len(got) == want
			}
			w := d.Written(u)
			if cur == nil && u.Len == 0 {
				continue // a chain returned unused (malformed): Linux drops it
			}
			if cur == nil {
				if len(w) < HdrLen {
					tb.Fatalf("used element %d with %d bytes: no header", u.ID, len(w))
				}
				got = append(got, rxPacket{})
				cur = &got[len(got)-1]
				left = 1
				if mergeable {
					left = int(binary.LittleEndian.Uint16(w[hdrNumBufsOff:]))
				}
			}
			cur.data = append(cur.data, w...)
			cur.bufs++
			cur.lens = append(cur.lens, u.Len)
			if left--; left <= 0 {
				cur = nil
			}
		}
	})
	if cur != nil {
		tb.Fatalf("packet %d incomplete", len(got))
	}
	return got
}

func stats(d *Device) Stats { return d.Stats() }

// finalStats stops the device and returns its counters, now complete.
// While the engines run, Stats is no consistent snapshot: an engine adds
// a batch's counts to the totals one counter at a time (deltas.publish),
// so a reader can see the batch's packets but not yet a malformed chain
// counted before them in the same batch. Waiting for one counter and then
// asserting another is therefore racy; compare counters with each other
// (or with interrupt counts) here, after Reset has waited for the
// goroutines, which publish everything on their way out.
func finalStats(h *virtiotest.Harness, d *Device) Stats {
	h.Close()
	return d.Stats()
}
