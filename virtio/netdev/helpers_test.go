package netdev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// fakeBackend is the in-memory Backend every test of the device uses.
type fakeBackend = virtiotest.NetBackend

func newFake() *fakeBackend { return virtiotest.NewNetBackend() }

// Feature sets used by the tests.
var (
	fCommon = virtio.FeatureVersion1.Mask()
	fIndir  = virtio.FeatureRingIndirectDesc.Mask()
	fEvent  = virtio.FeatureRingEventIdx.Mask()
	fMrg    = FeatureMrgRxbuf.Mask()
	fGSO    = FeatureGuestCsum.Mask() | FeatureGuestTSO4.Mask() | FeatureGuestTSO6.Mask() | FeatureGuestECN.Mask()
	fCsum   = FeatureGuestCsum.Mask()
	// Host-side offloads (what the guest may ask of the device when it
	// transmits).
	fHostCsum = FeatureCsum.Mask()
	fHostGSO  = fHostCsum | FeatureHostTSO4.Mask() | FeatureHostTSO6.Mask() | FeatureHostUFO.Mask() | FeatureHostECN.Mask()
)

// frame builds header + Ethernet frame of size payload bytes after the
// header: a recognisable pattern derived from seq.
func frame(seq int, size int, flags, gso byte) []byte {
	f := make([]byte, HdrLen+size)
	f[0], f[1] = flags, gso
	if gso != vnethdr.GSONone {
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
	binary.LittleEndian.PutUint16(g[vnethdr.NumBuffersOffset:], uint16(n))
	return g
}

// newDevice returns a device over a fresh fake backend with the offload
// hook recording into it.
func newDevice(tb testing.TB, opts Options) (*Device, *fakeBackend) {
	tb.Helper()
	be := newFake()
	opts.SetOffload = be.SetOffload
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

// waitUntil polls cond (virtiotest.WaitUntil).
var waitUntil = virtiotest.WaitUntil

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
					left = int(binary.LittleEndian.Uint16(w[vnethdr.NumBuffersOffset:]))
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
