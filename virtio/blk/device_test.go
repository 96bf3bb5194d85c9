package blk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/ratelimit"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

const testSectors = 256 // 128 KiB images

// layout splits a request into buffers in one of several shapes drivers
// use: header, data and status apart; header and data in one buffer;
// data and status in one buffer; data in odd-sized segments.
type layout struct {
	name     string
	indirect bool
	split    []int // data segment sizes (the rest goes in a last segment)
	joined   bool  // header+data (OUT) or data+status (IN) share a buffer
}

var layouts = []layout{
	{name: "separate"},
	{name: "joined", joined: true},
	{name: "multi-segment", split: []int{1, 511, 700, 100}},
	{name: "indirect", indirect: true, split: []int{512, 1000}},
}

func segments(data []byte, split []int) [][]byte {
	var out [][]byte
	for _, n := range split {
		if n >= len(data) {
			break
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return append(out, data)
}

func outBufs(l layout, sector uint64, data []byte) []qt.Buf {
	if l.joined {
		return []qt.Buf{qt.R(append(hdr(TypeOut, sector), data...)), qt.W(1)}
	}
	bufs := []qt.Buf{qt.R(hdr(TypeOut, sector))}
	for _, s := range segments(data, l.split) {
		bufs = append(bufs, qt.R(s))
	}
	return append(bufs, qt.W(1))
}

func inBufs(l layout, sector uint64, n int) []qt.Buf {
	if l.joined {
		return []qt.Buf{qt.R(hdr(TypeIn, sector)), qt.W(uint32(n + 1))}
	}
	bufs := []qt.Buf{qt.R(hdr(TypeIn, sector))}
	for _, s := range segments(make([]byte, n), l.split) {
		bufs = append(bufs, qt.W(uint32(len(s))))
	}
	return append(bufs, qt.W(1))
}

func TestReadWrite(t *testing.T) {
	for _, l := range layouts {
		for _, sc := range []struct {
			sector uint64
			n      int
		}{{0, 512}, {7, 4096}, {100, 64 << 10}, {testSectors - 1, 512}, {testSectors - 8, 4096}, {3, 0}} {
			r := newRig(t, testSectors, Options{}, fIndir|fEvent)
			want := readFile(t, r.path)
			// Read the original content.
			u := r.submit(l.indirect, inBufs(l, sc.sector, sc.n)...)
			w := r.writable(u)
			if st := w[len(w)-1]; st != StatusOK || u.Len != uint32(sc.n+1) {
				t.Fatalf("%s read %d@%d: status %d used %d", l.name, sc.n, sc.sector, st, u.Len)
			}
			off := int(sc.sector) * SectorSize
			if !bytes.Equal(w[:sc.n], want[off:off+sc.n]) {
				t.Fatalf("%s read %d@%d: wrong data", l.name, sc.n, sc.sector)
			}
			// Write new content and check the image and a read-back.
			data := bytes.Repeat([]byte{byte(sc.sector) ^ 0x5a, 0xc3, byte(sc.n)}, sc.n/3+1)[:sc.n]
			u = r.submit(l.indirect, outBufs(l, sc.sector, data)...)
			if st := r.status(u); st != StatusOK || u.Len != 1 {
				t.Fatalf("%s write %d@%d: status %d used %d", l.name, sc.n, sc.sector, st, u.Len)
			}
			copy(want[off:], data)
			if !bytes.Equal(readFile(t, r.path), want) {
				t.Fatalf("%s write %d@%d: image differs", l.name, sc.n, sc.sector)
			}
			u = r.submit(l.indirect, inBufs(l, sc.sector, sc.n)...)
			if w := r.writable(u); !bytes.Equal(w[:sc.n], data) {
				t.Fatalf("%s read-back %d@%d differs", l.name, sc.n, sc.sector)
			}
			s := r.dev.Stats()
			if s.ReadOps != 2 || s.WriteOps != 1 || s.WriteBytes != uint64(sc.n) || s.ReadBytes != 2*uint64(sc.n) || s.IOErrors != 0 {
				t.Fatalf("%s stats %+v", l.name, s)
			}
		}
	}
}

// TestRequestErrors: every refused request leaves the image untouched and
// gets the right status and used length.
func TestRequestErrors(t *testing.T) {
	big := uint64(1) << 63
	for _, tc := range []struct {
		name   string
		ro     bool
		bufs   []qt.Buf
		status int // -1: no status (used length 0)
		used   uint32
		stat   func(Stats) uint64
	}{
		{"read past the end", false, []qt.Buf{qt.R(hdr(TypeIn, testSectors)), qt.W(513)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"read across the end", false, []qt.Buf{qt.R(hdr(TypeIn, testSectors-1)), qt.W(1025)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"write with overflowing sector", false, []qt.Buf{qt.R(hdr(TypeOut, big+testSectors)), qt.R(make([]byte, 512)), qt.W(1)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"write at max sector", false, []qt.Buf{qt.R(hdr(TypeOut, ^uint64(0))), qt.R(make([]byte, 512)), qt.W(1)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"read not whole sectors", false, []qt.Buf{qt.R(hdr(TypeIn, 0)), qt.W(101)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"write not whole sectors", false, []qt.Buf{qt.R(hdr(TypeOut, 0)), qt.R(make([]byte, 513)), qt.W(1)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"truncated header", false, []qt.Buf{qt.R(hdr(TypeOut, 0)[:12]), qt.W(1)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"no header at all", false, []qt.Buf{qt.W(513)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
		{"status not writable", false, []qt.Buf{qt.R(hdr(TypeOut, 0)), qt.R(make([]byte, 512)), qt.R([]byte{0xff})}, -1, 0, func(s Stats) uint64 { return s.BadChains }},
		{"unsupported type", false, []qt.Buf{qt.R(hdr(TypeDiscard, 0)), qt.R(make([]byte, 16)), qt.W(1)}, StatusUnsupp, 1, func(s Stats) uint64 { return s.Unsupported }},
		{"write on read-only", true, []qt.Buf{qt.R(hdr(TypeOut, 0)), qt.R(make([]byte, 512)), qt.W(1)}, StatusIOErr, 1, func(s Stats) uint64 { return s.IOErrors }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, testSectors, Options{ReadOnly: tc.ro}, 0)
			before := readFile(t, r.path)
			u := r.submit(false, tc.bufs...)
			if u.Len != tc.used {
				t.Errorf("used length %d, want %d", u.Len, tc.used)
			}
			if tc.status >= 0 {
				if st := r.status(u); st != byte(tc.status) {
					t.Errorf("status %d, want %d", st, tc.status)
				}
			}
			if got := tc.stat(r.dev.Stats()); got != 1 {
				t.Errorf("counter %d, want 1 (%+v)", got, r.dev.Stats())
			}
			if !bytes.Equal(readFile(t, r.path), before) {
				t.Error("the image changed")
			}
			// The device keeps serving.
			u = r.submit(false, qt.R(hdr(TypeIn, 0)), qt.W(513))
			if r.status(u) != StatusOK {
				t.Error("the next request failed")
			}
		})
	}
}

func TestMalformedChainCompleted(t *testing.T) {
	r := newRig(t, testSectors, Options{}, 0)
	// Readable after writable: the queue rejects it, used length 0.
	u := r.submit(false, qt.R(hdr(TypeIn, 0)), qt.W(512), qt.R([]byte{1}))
	if u.Len != 0 || r.dev.Stats().Malformed != 1 {
		t.Fatalf("used %d, stats %+v", u.Len, r.dev.Stats())
	}
	// A buffer outside guest memory.
	r.submit(false, qt.R(hdr(TypeIn, 0)), qt.Buf{Addr: 4096, Len: 512, Write: true}, qt.W(1))
	if r.dev.Stats().Malformed != 2 {
		t.Fatalf("stats %+v", r.dev.Stats())
	}
}

func TestBrokenRingNeedsReset(t *testing.T) {
	r := newRig(t, testSectors, Options{}, 0)
	r.drv.SetAvailIdx(r.drv.Size() + 1)
	r.h.ForceKick(0)
	if !r.h.IRQ.Wait(5*time.Second, r.h.IRQ.NeedsResetRequested) {
		t.Fatal("no DEVICE_NEEDS_RESET")
	}
	r.h.Close() // Reset returns although the engine waits for it
	if r.dev.Stats().Broken != 1 {
		t.Fatalf("stats %+v", r.dev.Stats())
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, testSectors, Options{ReadOnly: true}, 0)
	if r.dev.Features()&FeatureRO.Mask() == 0 || !r.dev.ReadOnly() {
		t.Fatal("RO not offered")
	}
	u := r.submit(false, qt.R(hdr(TypeIn, 1)), qt.W(513))
	if r.status(u) != StatusOK || !bytes.Equal(r.writable(u)[:512], pattern(1024)[512:]) {
		t.Fatal("read on a read-only drive failed")
	}
	// The image is opened read-only: a writable open is not needed.
	if err := os.Chmod(r.path, 0o444); err != nil {
		t.Fatal(err)
	}
	if d, err := Open(r.path, Options{ReadOnly: true}); err != nil {
		t.Fatalf("read-only open of a 0444 image: %v", err)
	} else {
		d.Close()
	}
}

func TestFlush(t *testing.T) {
	for _, wb := range []bool{false, true} {
		r := newRig(t, testSectors, Options{Writeback: wb}, 0)
		if got := r.dev.Features()&FeatureFlush.Mask() != 0; got != wb {
			t.Fatalf("writeback=%v: FLUSH offered %v", wb, got)
		}
		r.submit(false, qt.R(hdr(TypeOut, 2)), qt.R(bytes.Repeat([]byte{9}, 512)), qt.W(1))
		u := r.submit(false, qt.R(hdr(TypeFlush, 0)), qt.W(1))
		if r.status(u) != StatusOK || u.Len != 1 || r.dev.Stats().Flushes != 1 {
			t.Fatalf("writeback=%v: flush status %d used %d stats %+v", wb, r.status(u), u.Len, r.dev.Stats())
		}
	}
}

func TestGetID(t *testing.T) {
	r := newRig(t, testSectors, Options{ID: "rootfs_01"}, 0)
	u := r.submit(false, qt.R(hdr(TypeGetID, 0)), qt.W(IDBytes), qt.W(1))
	w := r.writable(u)
	want := make([]byte, IDBytes)
	copy(want, "rootfs_01")
	if r.status(u) != StatusOK || u.Len != IDBytes+1 || !bytes.Equal(w[:IDBytes], want) {
		t.Fatalf("GET_ID: status %d used %d id %q", r.status(u), u.Len, w)
	}
	// A short buffer gets what fits.
	u = r.submit(false, qt.R(hdr(TypeGetID, 0)), qt.W(5))
	if w := r.writable(u); u.Len != 5 || string(w[:4]) != "root" || w[4] != StatusOK {
		t.Fatalf("short GET_ID: used %d %q", u.Len, w)
	}
	if _, err := Open(r.path, Options{ID: "012345678901234567890"}); err == nil {
		t.Fatal("a 21-byte ID was accepted")
	}
}

func TestConfigSpace(t *testing.T) {
	r := newRig(t, testSectors, Options{QueueSize: 128}, 0)
	c := make([]byte, ConfigSize+8)
	r.dev.ReadConfig(0, c)
	le := binary.LittleEndian
	if le.Uint64(c) != testSectors || le.Uint32(c[12:]) != 126 || le.Uint32(c[20:]) != 512 || le.Uint16(c[34:]) != 1 {
		t.Fatalf("config % x", c)
	}
	if !bytes.Equal(c[ConfigSize:], make([]byte, 8)) {
		t.Fatal("bytes past the config space are not zero")
	}
	p := make([]byte, 4)
	r.dev.ReadConfig(20, p)
	if le.Uint32(p) != 512 {
		t.Fatalf("blk_size at 20: % x", p)
	}
	r.dev.WriteConfig(0, []byte{1, 2, 3, 4})
	if r.dev.ReadConfig(0, p); le.Uint32(p) != testSectors {
		t.Fatal("capacity writable")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	odd := dir + "/odd.img"
	os.WriteFile(odd, make([]byte, 1000), 0o644)
	good := image(t, 8)
	for name, tc := range map[string]struct {
		path string
		opts Options
	}{
		"missing":            {dir + "/nope", Options{}},
		"not sector-aligned": {odd, Options{}},
		"directory":          {dir, Options{ReadOnly: true}},
		"bad feature":        {good, Options{Features: DefaultFeatures | FeatureDiscard.Mask()}},
		"bad queue size":     {good, Options{QueueSize: 100}},
	} {
		if d, err := Open(tc.path, tc.opts); err == nil {
			d.Close()
			t.Errorf("%s: opened", name)
		}
	}
}

// TestResetAndRenegotiate: a reset stops the device, a new negotiation
// with other ring features works, and a closed device stays closed.
func TestResetAndRenegotiate(t *testing.T) {
	r := newRig(t, testSectors, Options{}, fIndir|fEvent)
	r.submit(true, qt.R(hdr(TypeOut, 5)), qt.R(bytes.Repeat([]byte{0xee}, 512)), qt.W(1))
	r.h.Close()
	if r.dev.Negotiated() != 0 {
		t.Fatal("features survive Reset")
	}
	r.dev.Reset() // idempotent
	r.activate(0)
	u := r.submit(false, qt.R(hdr(TypeIn, 5)), qt.W(512), qt.W(1))
	if r.status(u) != StatusOK || r.writable(u)[0] != 0xee {
		t.Fatal("read after renegotiation failed")
	}
	r.h.Close()
	r.dev.Close()
	if err := r.dev.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

// TestRateLimited: with one op per 20 ms, three requests complete (none
// dropped) and the queue waited in between. An engine delayed a whole
// refill between two requests found the token there and rightly did not
// wait, so a run that counted fewer than 2 waits runs again with twice
// the refill time, up to 160 ms; fewer in each fails.
func TestRateLimited(t *testing.T) {
	var got []uint64
	for refill := uint64(20); refill <= 160; refill *= 2 {
		lim, err := ratelimit.New(ratelimit.Config{Ops: ratelimit.BucketConfig{Size: 1, RefillTime: refill}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := newRig(t, testSectors, Options{Limiter: lim}, 0)
		start := time.Now()
		for i := range 3 {
			r.drv.Add(qt.R(hdr(TypeIn, uint64(i))), qt.W(513))
		}
		r.h.Kick(0)
		for range 3 {
			if u := r.waitUsed(); r.status(u) != StatusOK {
				t.Fatal("throttled request failed")
			}
		}
		if el, want := time.Since(start), time.Duration(2*refill-5)*time.Millisecond; el < want {
			t.Fatalf("3 ops at 1 per %d ms took %v", refill, el)
		}
		s := r.dev.Stats()
		if s.ReadOps != 3 || lim.Throttled() != s.Throttled {
			t.Fatalf("stats %+v, limiter %d", s, lim.Throttled())
		}
		if s.Throttled >= 2 {
			return
		}
		got = append(got, s.Throttled)
		t.Logf("1 op per %d ms: %d waits, want 2 or more; again with twice the refill time", refill, s.Throttled)
	}
	t.Fatalf("%v waits in the runs at 1 op per 20, 40, 80 and 160 ms, want 2 or more", got)
}

// TestResetWhileThrottled: Reset does not wait for the limiter's timer,
// and the refused request stays in the ring for the next activation.
func TestResetWhileThrottled(t *testing.T) {
	lim, _ := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.BucketConfig{Size: 512, RefillTime: 3_600_000}}, nil)
	r := newRig(t, testSectors, Options{Limiter: lim}, 0)
	r.submit(false, qt.R(hdr(TypeIn, 0)), qt.W(513))
	r.drv.Add(qt.R(hdr(TypeIn, 0)), qt.W(513))
	r.h.Kick(0)
	waitUntil(t, "a throttled request", func() bool { return r.dev.Stats().Throttled > 0 })
	next := r.h.Queues[0].NextAvail()
	// Waiting for the hour's timer fails; a Reset slowed by a loaded
	// machine (-race) does not.
	reset := make(chan struct{})
	go func() { r.dev.Reset(); close(reset) }()
	select {
	case <-reset:
	case <-time.After(10 * time.Second):
		t.Fatal("Reset waited for the limiter")
	}
	if next != 1 || r.drv.PendingUsed() != 0 {
		t.Fatalf("the throttled request was consumed: next avail %d, used %d", next, r.drv.PendingUsed())
	}
}

// TestOpenRefusesFIFO: a FIFO named as a drive image is an error at once (it
// used to block in open until a writer came).
func TestOpenRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "image")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Open(fifo, Options{ReadOnly: true})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "FIFO") {
			t.Errorf("Open(FIFO): %v, want an error naming the FIFO", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open(FIFO) blocked")
	}
}
