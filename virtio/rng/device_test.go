package rng

import (
	"bytes"
	"testing"
	"time"

	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// fill is a Read that writes 0xa5 everywhere.
func fill(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xa5
	}
	return len(p), nil
}

func activate(t *testing.T, opts Options) (*Device, *virtiotest.Harness, *qt.Driver) {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := virtiotest.MustActivate(t, d, Features, virtiotest.Options{DataSize: 1 << 20})
	return d, h, h.Drivers[0]
}

// used waits for n used chains.
func used(t *testing.T, drv *qt.Driver, n int) []qt.Used {
	t.Helper()
	var us []qt.Used
	deadline := time.Now().Add(5 * time.Second)
	for len(us) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d chains used", len(us), n)
		}
		us = append(us, drv.AllUsed()...)
		time.Sleep(100 * time.Microsecond)
	}
	return us
}

func TestIdentity(t *testing.T) {
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Type() != virtio.DeviceEntropy || d.Type() != 4 || len(d.QueueMaxSizes()) != 1 || d.ConfigSize() != 0 {
		t.Errorf("type %d, %d queues, config %d: want 4, 1, 0", d.Type(), len(d.QueueMaxSizes()), d.ConfigSize())
	}
	if _, err := New(Options{QueueSize: 5}); err == nil {
		t.Error("queue size 5 accepted")
	}
	var s Stats
	if err := virtio.CheckCounters(&s, s.Counters()); err != nil {
		t.Fatal(err)
	}
}

// TestFills: every writable byte of a chain (several buffers) is filled,
// up to MaxChainBytes; a chain with a readable buffer gets nothing.
func TestFills(t *testing.T) {
	d, h, drv := activate(t, Options{Read: fill})
	drv.Add(qt.W(16), qt.W(1), qt.W(47))
	drv.Add(qt.W(MaxChainBytes + 100))
	drv.Add(qt.R([]byte{1}), qt.W(8))
	h.Kick(0)
	us := used(t, drv, 3)
	if us[0].Len != 64 || !bytes.Equal(drv.Written(us[0]), bytes.Repeat([]byte{0xa5}, 64)) {
		t.Errorf("chain of 64 bytes: used %d, %x", us[0].Len, drv.Written(us[0]))
	}
	if us[1].Len != MaxChainBytes || us[2].Len != 0 {
		t.Errorf("used %d and %d, want %d and 0", us[1].Len, us[2].Len, MaxChainBytes)
	}
	if st := d.Stats(); st.Requests != 2 || st.Bytes != 64+MaxChainBytes || st.BadChains != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRandom: the real source gives different bytes to two requests.
func TestRandom(t *testing.T) {
	_, h, drv := activate(t, Options{})
	drv.Add(qt.W(32))
	drv.Add(qt.W(32))
	h.Kick(0)
	us := used(t, drv, 2)
	a, b := drv.Written(us[0]), drv.Written(us[1])
	if len(a) != 32 || bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 32)) {
		t.Errorf("random bytes %x and %x", a, b)
	}
}

// TestRateLimited: one request per 100 ms (ops bucket of 1): the third
// of three requests completes only after the limiter's wait.
func TestRateLimited(t *testing.T) {
	lim, err := ratelimit.New(ratelimit.Config{Ops: ratelimit.BucketConfig{Size: 1, RefillTime: 100}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, h, drv := activate(t, Options{Read: fill, Limiter: lim})
	start := time.Now()
	for range 3 {
		drv.Add(qt.W(8))
	}
	h.Kick(0)
	used(t, drv, 3)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("three requests in %v with one allowed per 100 ms", el)
	}
	if st := d.Stats(); st.Throttled == 0 || lim.Throttled() == 0 {
		t.Errorf("stats %+v: no throttling", st)
	}
}

// BenchmarkRequest: one 64-byte request (Linux's size) from crypto/rand,
// straight through the handler.
func BenchmarkRequest(b *testing.B) {
	d, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64)
	c := queue.Chain{Writable: [][]byte{buf}, WriteLen: 64}
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		if r := d.h.Chain(&c); r.Used != 64 {
			b.Fatal(r)
		}
	}
}
