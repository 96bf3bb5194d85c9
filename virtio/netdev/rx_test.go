package netdev

import (
	"bytes"
	"fmt"
	"testing"

	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"

	"github.com/flintvm/flint/internal/vnethdr"
)

// checkPackets compares received packets with the frames injected and
// checks num_buffers is minimal for uniform buffers of bufSize bytes.
func checkPackets(t *testing.T, got []rxPacket, frames [][]byte, bufSize int, mergeable bool) {
	t.Helper()
	if len(got) != len(frames) {
		t.Fatalf("received %d packets, want %d", len(got), len(frames))
	}
	for i, p := range got {
		want := 1
		if mergeable && bufSize > 0 {
			want = (len(frames[i]) + bufSize - 1) / bufSize
		}
		if bufSize > 0 && p.bufs != want {
			t.Errorf("packet %d (%d bytes): %d buffers, want %d", i, len(frames[i]), p.bufs, want)
		}
		if !bytes.Equal(p.data, withNumBuffers(frames[i], p.bufs)) {
			t.Fatalf("packet %d: %d bytes differ from the %d-byte frame sent", i, len(p.data), len(frames[i]))
		}
	}
}

func TestRxMergeable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		acked uint64
		buf   uint32
		sizes []int // Ethernet frame sizes
	}{
		{"1526/no-gso", 0, 1526, []int{60, 1000, 1514, 1514 + 4}},
		{"4k/no-gso", fIndir | fEvent, 4096, []int{60, 1514}},
		{"1526/gso", fGSO, 1526, []int{60, 1514, 9000, 65550}},
		{"4k/gso", fGSO | fIndir, 4096, []int{64, 4084, 4085, 65550, 32000}},
		{"1000/gso", fGSO | fEvent, 1000, []int{60, 988, 989, 65550}},
		{"3000/gso", fGSO, 3000, []int{1514, 2988, 2989, 65550}},
		{"1536-frag/gso", fGSO | fIndir | fEvent, 1536, []int{60, 1514, 65550, 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, be := newDevice(t, Options{})
			h := activate(t, d, tc.acked|fMrg, virtiotest.Options{})
			postRx(t, h, 200, tc.buf)
			var frames [][]byte
			for i, sz := range tc.sizes {
				gso := byte(vnethdr.GSONone)
				if sz > 1514+4 {
					gso = vnethdr.GSOTCPv4
				}
				frames = append(frames, frame(i, sz, 0, gso))
			}
			be.Inject(frames...)
			got := receive(t, h, len(frames), true)
			checkPackets(t, got, frames, int(tc.buf), true)
			for _, p := range got {
				for j, l := range p.lens {
					if j < len(p.lens)-1 && l != tc.buf {
						t.Fatalf("non-final buffer used %d of %d bytes", l, tc.buf)
					}
				}
			}
			// Every buffer not used was given back: once stopped, the
			// device has consumed exactly the buffers it returned.
			used := 0
			for _, p := range got {
				used += p.bufs
			}
			d.Reset()
			if na := h.Queues[RxQueue].NextAvail(); int(na) != used {
				t.Fatalf("next avail %d after using %d buffers: unused buffers kept", na, used)
			}
			if s := stats(d); s.RxPackets != uint64(len(frames)) || s.RxBuffers != uint64(used) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestRxMergeableMixedSizes posts page-frag-like buffers of varying sizes,
// as newer Linux kernels do, and checks frames are spread over them in
// ring order, using as few as the packet needs.
func TestRxMergeableMixedSizes(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fMrg|fGSO|fIndir, virtiotest.Options{})
	sizes := []uint32{1536, 2048, 1600, 4096, 3008, 1536, 12, 700}
	var posted []uint32
	for i := range 120 {
		s := sizes[i%len(sizes)]
		posted = append(posted, s)
		if _, err := h.Drivers[RxQueue].Add(qt.W(s)); err != nil {
			t.Fatal(err)
		}
	}
	h.Kick(RxQueue)
	frames := [][]byte{frame(0, 60, 0, 0), frame(1, 65550, 0, vnethdr.GSOTCPv4), frame(2, 1514, 0, 0), frame(3, 20000, 0, vnethdr.GSOTCPv6)}
	be.Inject(frames...)
	got := receive(t, h, len(frames), true)
	checkPackets(t, got, frames, 0, true)
	next := 0
	for i, p := range got {
		// Minimal in ring order: the last buffer is needed (the rest
		// does not fit in the ones before it).
		room := 0
		for _, s := range posted[next : next+p.bufs-1] {
			room += int(s)
		}
		if room >= len(frames[i]) {
			t.Fatalf("packet %d used %d buffers; %d bytes in the first %d already fit", i, p.bufs, room, p.bufs-1)
		}
		next += p.bufs
	}
}

// TestRxBigMode: GUEST_TSO without MRG_RXBUF; the driver posts ~64 KiB
// chains of a header descriptor plus pages (indirect when it can), one
// packet per chain.
func TestRxBigMode(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		t.Run(fmt.Sprintf("indirect=%v", indirect), func(t *testing.T) {
			d, be := newDevice(t, Options{})
			acked := fGSO
			if indirect {
				acked |= fIndir
			}
			h := activate(t, d, acked, virtiotest.Options{DataSize: 16 << 20})
			rxd := h.Drivers[RxQueue]
			bufs := []qt.Buf{qt.W(HdrLen), qt.W(4096 - HdrLen)}
			for range 16 {
				bufs = append(bufs, qt.W(4096))
			}
			for range 8 {
				var err error
				if indirect {
					_, err = rxd.AddIndirect(bufs...)
				} else {
					_, err = rxd.Add(bufs...)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			h.Kick(RxQueue)
			frames := [][]byte{frame(0, 65550, 0, vnethdr.GSOTCPv4), frame(1, 60, 0, 0), frame(2, 40000, 0, vnethdr.GSOTCPv6|vnethdr.GSOECN)}
			be.Inject(frames...)
			got := receive(t, h, len(frames), false)
			checkPackets(t, got, frames, 0, false)
			for i, p := range got {
				if p.bufs != 1 || p.lens[0] != uint32(len(frames[i])) {
					t.Fatalf("packet %d: %d buffers, len %v", i, p.bufs, p.lens)
				}
			}
		})
	}
}

// TestRxSmallMode: neither MRG_RXBUF nor GUEST_TSO; one ~1.5 KiB chain
// per packet, including a chain whose header is split over descriptors.
func TestRxSmallMode(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fIndir, virtiotest.Options{})
	rxd := h.Drivers[RxQueue]
	for range 4 {
		rxd.Add(qt.W(1530))
	}
	rxd.Add(qt.W(5), qt.W(6), qt.W(1519))          // header split in three
	rxd.AddIndirect(qt.W(11), qt.W(1), qt.W(1518)) // num_buffers straddles
	h.Kick(RxQueue)
	var frames [][]byte
	for i := range 6 {
		frames = append(frames, frame(i, 1514-i*100, 0, 0))
	}
	be.Inject(frames...)
	got := receive(t, h, len(frames), false)
	checkPackets(t, got, frames, 0, false)
}

// TestRxTooBigForChain: frames larger than the chain are dropped and
// counted, never delivered truncated; the chain serves the next frame.
func TestRxTooBigForChain(t *testing.T) {
	for _, mrg := range []bool{false, true} {
		t.Run(fmt.Sprintf("mergeable=%v", mrg), func(t *testing.T) {
			d, be := newDevice(t, Options{})
			acked := uint64(0)
			if mrg {
				acked = fMrg
			}
			h := activate(t, d, acked, virtiotest.Options{})
			size := uint32(1000) // small mode: smaller than a full frame
			if mrg {
				size = 1530
			}
			postRx(t, h, 8, size)
			big := 3000 // no GSO: larger than any legal frame
			frames := [][]byte{frame(0, big, 0, 0), frame(1, 100, 0, 0), frame(2, big, 0, 0), frame(3, 200, 0, 0)}
			be.Inject(frames...)
			got := receive(t, h, 2, mrg)
			checkPackets(t, got, [][]byte{frames[1], frames[3]}, 0, mrg)
			waitUntil(t, "drop count", func() bool { return stats(d).RxDropOversize == 2 })
			if got[0].bufs != 1 || got[1].bufs != 1 {
				t.Fatal("small packets used more than one buffer")
			}
		})
	}
}

// TestRxHeaderChecks: offloads the driver did not negotiate never reach
// it; flags it did not negotiate are cleared.
func TestRxHeaderChecks(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fMrg, virtiotest.Options{}) // no GUEST_CSUM, no GSO
	postRx(t, h, 16, 1536)
	frames := [][]byte{
		frame(0, 100, vnethdr.FNeedsCsum, 0),      // dropped
		frame(1, 100, vnethdr.FDataValid, 0),      // flags cleared
		frame(2, 100, 0, vnethdr.GSOTCPv4),        // dropped
		frame(3, 100, 0, vnethdr.GSOECN),          // dropped
		frame(4, 100, 0, 0x7f),                    // unknown type: dropped
		frame(5, 100, 0, 0),                       // fine
		frame(6, 100, 0x80|vnethdr.FDataValid, 0), // cleared
	}
	be.Inject(frames...)
	got := receive(t, h, 3, true)
	for i, want := range []int{1, 5, 6} {
		w := withNumBuffers(frames[want], 1)
		w[0] = 0
		if !bytes.Equal(got[i].data, w) {
			t.Fatalf("packet %d: got header % x want % x", i, got[i].data[:HdrLen], w[:HdrLen])
		}
	}
	waitUntil(t, "header drops", func() bool { return stats(d).RxDropHeader == 4 })

	// With GUEST_CSUM and GSO the same headers pass untouched.
	h.Close()
	h = activate(t, d, fMrg|fGSO, virtiotest.Options{})
	postRx(t, h, 64, 1536) // room for a 64 KiB frame
	ok := [][]byte{frame(0, 100, vnethdr.FNeedsCsum, 0), frame(1, 100, vnethdr.FDataValid, 0), frame(2, 3000, vnethdr.FNeedsCsum, vnethdr.GSOTCPv4|vnethdr.GSOECN)}
	be.Inject(ok...)
	checkPackets(t, receive(t, h, 3, true), ok, 1536, true)
}

// TestRxBackPressure: without room the device does not read the backend;
// frames wait there and arrive in order once the guest adds buffers.
func TestRxBackPressure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		acked  uint64
		first  int // buffers posted before the frames
		buf    uint32
		expect int // frames deliverable with only the first buffers
	}{
		{"mergeable/none", fMrg | fEvent, 0, 1536, 0},
		{"small/none", fIndir, 0, 1530, 0},
		{"small/two", 0, 2, 1530, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, be := newDevice(t, Options{})
			h := activate(t, d, tc.acked, virtiotest.Options{})
			mrg := tc.acked&fMrg != 0
			if tc.first > 0 {
				postRx(t, h, tc.first, tc.buf)
			}
			var frames [][]byte
			for i := range 6 {
				frames = append(frames, frame(i, 60+i, 0, 0))
			}
			be.Inject(frames...)
			var got []rxPacket
			if tc.expect > 0 {
				got = receive(t, h, tc.expect, mrg)
			}
			waitUntil(t, "the device to wait for buffers", func() bool { return stats(d).RxWaits > 0 })
			settle()
			if q := be.Queued(); q != len(frames)-tc.expect {
				t.Fatalf("backend holds %d frames, want %d: the device read without room", q, len(frames)-tc.expect)
			}
			if s := stats(d); s.RxDropOversize+s.RxDropShort+s.RxDropHeader != 0 {
				t.Fatalf("drops: %+v", s)
			}
			postRx(t, h, 64, tc.buf)
			got = append(got, receive(t, h, len(frames)-tc.expect, mrg)...)
			checkPackets(t, got, frames, 0, mrg)
		})
	}
}

// TestRxSmallRingNoStall: a ring entirely posted but too small for a
// maximum GSO frame must still deliver what fits (the guest refills what
// it received, as Linux does).
func TestRxSmallRingNoStall(t *testing.T) {
	d, be := newDevice(t, Options{QueueSize: 16})
	h := activate(t, d, fMrg|fGSO, virtiotest.Options{})
	postRx(t, h, 16, 1536) // 24 KiB < 65562
	frames := [][]byte{frame(0, 60, 0, 0), frame(1, 9000, 0, vnethdr.GSOTCPv4), frame(2, 20000, 0, vnethdr.GSOTCPv4)}
	var got []rxPacket
	for _, f := range frames {
		be.Inject(f)
		p := receive(t, h, 1, true)
		got = append(got, p...)
		postRx(t, h, p[0].bufs, 1536)
	}
	checkPackets(t, got, frames, 1536, true)
}

// TestRxBadChains: receive chains that cannot hold a header are returned
// with length 0 and counted; the device keeps going.
func TestRxBadChains(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fMrg, virtiotest.Options{})
	rxd := h.Drivers[RxQueue]
	rxd.Add(qt.W(8))
	rxd.Add(qt.R([]byte("device-readable only")))
	rxd.Add(qt.W(1536))
	h.Kick(RxQueue)
	be.Inject(frame(0, 200, 0, 0))
	var lens []uint32
	waitUntil(t, "3 used", func() bool {
		for _, u := range rxd.AllUsed() {
			lens = append(lens, u.Len)
		}
		return len(lens) == 3
	})
	if lens[0] != 0 || lens[1] != 0 || lens[2] != HdrLen+200 {
		t.Fatalf("used lengths %v", lens)
	}
	if s := finalStats(h, d); s.RxBadChains != 2 || s.RxPackets != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRxBackendClosed: a failing backend stops the receive side (counted)
// without spinning; Reset still works.
func TestRxBackendClosed(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fMrg, virtiotest.Options{})
	postRx(t, h, 4, 1536)
	be.Close()
	waitUntil(t, "backend error", func() bool { return stats(d).RxBackendErrors == 1 })
	h.Close()
}

// TestRxMTU: with FeatureMTU negotiated, non-GSO frames above the MTU are
// dropped even when the buffers could hold them; GSO frames are not.
func TestRxMTU(t *testing.T) {
	d, be := newDevice(t, Options{MTU: 1000})
	h := activate(t, d, fMrg|fGSO|FeatureMTU.Mask(), virtiotest.Options{})
	postRx(t, h, 64, 4096)
	frames := [][]byte{frame(0, 1018, 0, 0), frame(1, 1019, 0, 0), frame(2, 3000, 0, vnethdr.GSOTCPv4)}
	be.Inject(frames...)
	got := receive(t, h, 2, true)
	checkPackets(t, got, [][]byte{frames[0], frames[2]}, 4096, true)
	waitUntil(t, "mtu drop", func() bool { return stats(d).RxDropOversize == 1 })
}

// TestRxResetGivesBackHeld: buffers the device holds while it waits for
// more (a frame read into them did not fit: it waits for the rest) go
// back to the ring at Reset.
func TestRxResetGivesBackHeld(t *testing.T) {
	d, be := newDevice(t, Options{})
	h := activate(t, d, fMrg|fGSO, virtiotest.Options{})
	postRx(t, h, 3, 1536)
	be.Inject(frame(0, 6000, 0, 0))
	waitUntil(t, "the device to wait for buffers", func() bool { return stats(d).RxWaits > 0 })
	d.Reset()
	if na := h.Queues[RxQueue].NextAvail(); na != 0 {
		t.Fatalf("next avail %d: held buffers not given back", na)
	}
}
