package console

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
)

func TestIdentityAndConfig(t *testing.T) {
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Type() != virtio.DeviceConsole || d.Type() != 3 {
		t.Errorf("type %d, want 3", d.Type())
	}
	if f := d.Features(); f&(1<<24-1) != 0 || !virtio.Has(f, virtio.FeatureVersion1) {
		t.Errorf("features %#x: want VERSION_1 and no console bit (SIZE, MULTIPORT, EMERG_WRITE)", f)
	}
	if n := len(d.QueueMaxSizes()); n != 2 {
		t.Errorf("%d queues, want 2 (no control queue without MULTIPORT)", n)
	}
	if d.ConfigSize() != ConfigSize || ConfigSize < 12 {
		t.Errorf("config size %d", d.ConfigSize())
	}
	d.WriteConfig(8, []byte{1, 2, 3, 4})
	p := bytes.Repeat([]byte{0xff}, 16)
	d.ReadConfig(0, p)
	if !bytes.Equal(p, make([]byte, 16)) {
		t.Errorf("config reads %x, want zeros", p)
	}
	if err := d.AckFeatures(1 << 1); err == nil {
		t.Error("MULTIPORT acked though not offered")
	}
	for _, o := range []Options{{QueueSize: 3}, {QueueSize: 1<<15*2 - 1}, {InputBuffer: -1}, {InputBuffer: 2 << 20}} {
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), "virtio-console") {
			t.Errorf("New(%+v): %v, want an error", o, err)
		}
	}
}

func TestCountersNamed(t *testing.T) {
	var s Stats
	if err := virtio.CheckCounters(&s, s.Counters()); err != nil {
		t.Fatal(err)
	}
}

// TestTransmitInOrder: a large write split across many chains (of up to
// three buffers, descriptors recycled) reaches the writer whole and in
// order.
func TestTransmitInOrder(t *testing.T) {
	out := &sink{}
	r := newRig(t, Options{Out: out, QueueSize: 64})
	data := pattern(1 << 20)
	r.send(data, 3000)
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("writer got %d bytes, not the %d sent in order", out.Len(), len(data))
	}
	st := r.dev.Stats()
	if want := uint64((len(data) + 2999) / 3000); st.OutChains != want || st.OutBytes != uint64(len(data)) {
		t.Errorf("stats %+v, want %d chains of %d bytes", st, want, len(data))
	}
}

// TestReceiveInOrder: input larger than the input buffer reaches the
// guest in order across many chains; after EOF the guest's buffers stay
// unused.
func TestReceiveInOrder(t *testing.T) {
	data := pattern(200_000)
	r := newRig(t, Options{In: bytes.NewReader(data), InputBuffer: 1000})
	got := r.recv(len(data), 700)
	if !bytes.Equal(got, data) {
		t.Fatalf("guest got %d bytes, not the %d given in order", len(got), len(data))
	}
	time.Sleep(20 * time.Millisecond)
	if n := r.rx.PendingUsed(); n != 0 {
		t.Fatalf("%d receive chains used after EOF", n)
	}
	if st := r.dev.Stats(); st.InBytes != uint64(len(data)) || st.ReadErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestNoInput: without a reader the guest never gets input, and output
// still flows.
func TestNoInput(t *testing.T) {
	out := &sink{}
	r := newRig(t, Options{Out: out})
	r.post(4, 64)
	r.send([]byte("hello"), 64)
	time.Sleep(20 * time.Millisecond)
	if n := r.rx.PendingUsed(); n != 0 || out.Len() != 5 {
		t.Fatalf("%d receive chains used, %d bytes out", n, out.Len())
	}
}

// TestReadError: a reader error ends input and is counted.
func TestReadError(t *testing.T) {
	in := io.MultiReader(strings.NewReader("abc"), iotestErr{})
	r := newRig(t, Options{In: in})
	if got := r.recv(3, 64); string(got) != "abc" {
		t.Fatalf("got %q", got)
	}
	waitUntil(t, "the read error", func() bool { return r.dev.Stats().ReadErrors == 1 })
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestSlowWriter: a writer that takes its time gets everything in order;
// the guest's chains complete as it goes.
func TestSlowWriter(t *testing.T) {
	out := &sink{delay: 200 * time.Microsecond}
	r := newRig(t, Options{Out: out, QueueSize: 16})
	data := pattern(100_000)
	r.send(data, 1000)
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("slow writer got the bytes out of order or short")
	}
}

// TestWriteErrorDropsChain: a failed Write drops the rest of its chain,
// is counted, and the next chains are written.
func TestWriteErrorDropsChain(t *testing.T) {
	out := &sink{failAt: 2}
	r := newRig(t, Options{Out: out})
	r.send([]byte("aaabbbccc"), 9) // one chain: "aaa" "bbb" "ccc", the second Write fails
	r.send([]byte("ddd"), 9)
	if got := string(out.Bytes()); got != "aaaddd" {
		t.Fatalf("writer got %q, want %q", got, "aaaddd")
	}
	st := r.dev.Stats()
	if st.WriteErrors != 1 || st.DroppedBytes != 6 || st.OutBytes != 6 || st.OutChains != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestResetMidStream: the driver resets between two halves of the
// input and of the output; nothing is lost or repeated.
func TestResetMidStream(t *testing.T) {
	pr, pw := io.Pipe()
	out := &sink{}
	r := newRig(t, Options{In: pr, Out: out, InputBuffer: 512})
	in := pattern(10_000)
	go func() { pw.Write(in[:3000]); time.Sleep(50 * time.Millisecond); pw.Write(in[3000:]); pw.Close() }()
	// Ten chains, all used before the reset: a chain filled but never
	// read by the driver would lose its bytes (the driver's choice).
	r.post(10, 100)
	var first []byte
	waitUntil(t, "ten receive chains", func() bool {
		for _, u := range r.rx.AllUsed() {
			first = append(first, r.rx.Written(u)...)
		}
		return r.rx.InFlight() == 0
	})
	r.send([]byte("before reset;"), 5)
	r.reactivate()
	r.send([]byte("after reset"), 5)
	rest := r.recv(len(in)-len(first), 100)
	if got := append(first, rest...); !bytes.Equal(got, in) {
		t.Fatalf("input across the reset: %d bytes, not the %d given in order", len(got), len(in))
	}
	if got := string(out.Bytes()); got != "before reset;after reset" {
		t.Fatalf("output across the reset: %q", got)
	}
}

// TestResetCutsBlockedWrite: a Write blocked on a full pipe nobody reads
// does not hold Reset: the write is cut short and its bytes dropped.
func TestResetCutsBlockedWrite(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	w := &enteringWriter{File: pw, entered: make(chan struct{}, 1)}
	r := newRig(t, Options{Out: w})
	for range 8 {
		if _, err := r.tx.Add(qt.R(make([]byte, 128<<10))); err != nil {
			t.Fatal(err)
		}
	}
	r.h.Kick(TransmitQueue)
	<-w.entered // 128 KiB overflow the 64 KiB pipe: this Write blocks
	done := make(chan struct{})
	go func() { r.dev.Reset(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Reset blocked behind the writer")
	}
	if st := r.dev.Stats(); st.WriteErrors == 0 || st.DroppedBytes == 0 {
		t.Errorf("stats %+v: want the cut write counted", st)
	}
}

// enteringWriter is a pipe (with SetWriteDeadline) that reports each
// Write it enters.
type enteringWriter struct {
	*os.File
	entered chan struct{}
}

func (w *enteringWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	return w.File.Write(p)
}

// TestBadChains: wrong-direction chains complete with used length 0 and
// are counted; chains outside guest memory are completed by the queue;
// both queues go on.
func TestBadChains(t *testing.T) {
	out := &sink{}
	r := newRig(t, Options{In: strings.NewReader("in"), Out: out})
	if _, err := r.tx.Add(qt.R([]byte("x")), qt.W(8)); err != nil { // writable on transmitq
		t.Fatal(err)
	}
	if _, err := r.tx.Add(qt.Buf{Addr: 1 << 40, Len: 8}); err != nil { // outside guest memory
		t.Fatal(err)
	}
	if _, err := r.rx.Add(qt.R([]byte("y"))); err != nil { // readable on receiveq
		t.Fatal(err)
	}
	r.h.Kick(ReceiveQueue)
	r.send([]byte("ok"), 8)
	if got := r.recv(2, 8); string(got) != "in" {
		t.Fatalf("input after a bad chain: %q", got)
	}
	if got := string(out.Bytes()); got != "ok" {
		t.Fatalf("output: %q, want only the good chain", got)
	}
	st := r.dev.Stats()
	if st.BadChains != 2 || st.Malformed != 1 || st.Broken != 0 || r.h.IRQ.NeedsResetRequested() {
		t.Errorf("stats %+v", st)
	}
}

// TestBrokenRing: a driver that breaks the transmitq's ring makes the
// device ask for a reset; the receiveq still works until it comes, and a
// reset brings the port back.
func TestBrokenRing(t *testing.T) {
	out := &sink{}
	pr, pw := io.Pipe()
	defer pw.Close()
	r := newRig(t, Options{In: pr, Out: out})
	r.tx.SetAvailIdx(r.tx.AvailIdx() + 1000) // more entries than the ring has
	r.h.ForceKick(TransmitQueue)
	waitUntil(t, "NEEDS_RESET", r.h.IRQ.NeedsResetRequested)
	go pw.Write([]byte("still"))
	if got := r.recv(5, 16); string(got) != "still" {
		t.Fatalf("receiveq after the transmitq broke: %q", got)
	}
	if st := r.dev.Stats(); st.Broken != 1 {
		t.Errorf("stats %+v", st)
	}
	r.reactivate()
	r.send([]byte("back"), 8)
	if got := string(out.Bytes()); got != "back" {
		t.Fatalf("output after the reset: %q", got)
	}
}

func TestActivateErrors(t *testing.T) {
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Activate(nil, nil, nil); err == nil {
		t.Error("activated without queues")
	}
	d.Close()
	if err := d.Activate(nil, make([]virtio.Queue, 2), nil); err == nil {
		t.Error("activated after Close")
	}
}

// TestInputAfterGuestWrite: with InputAfterGuestWrite the posted receive
// buffers stay empty until the guest writes to the port (command mode's
// agent says so for stdin, because Linux drops earlier input), then the
// input arrives whole; the guest's write is output like any other.
func TestInputAfterGuestWrite(t *testing.T) {
	data := []byte("stdin for the command\n")
	out := &sink{}
	r := newRig(t, Options{In: bytes.NewReader(data), Out: out, InputAfterGuestWrite: true})
	r.post(4, 64)
	time.Sleep(50 * time.Millisecond)
	if n := r.rx.PendingUsed(); n != 0 {
		t.Fatalf("%d receive chains used before the guest wrote", n)
	}
	r.send([]byte{0x06}, 64)
	if got := r.recv(len(data), 64); !bytes.Equal(got, data) {
		t.Fatalf("guest got %q, want %q", got, data)
	}
	if out.Len() != 1 {
		t.Errorf("%d bytes out, want the guest's 1", out.Len())
	}
}

// maxWriter records the largest Write it was given.
type maxWriter struct {
	sink
	most int
}

func (w *maxWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.most = max(w.most, len(p))
	w.mu.Unlock()
	return w.sink.Write(p)
}

// TestWriteSizeBounded: a guest buffer of 1 MiB reaches the writer in
// Writes of at most 64 KiB, in order. One Write per buffer handed the
// writer as much guest memory as the guest liked (a whole RAM): command
// mode's spool, bounded only while it holds something, copied all of it.
func TestWriteSizeBounded(t *testing.T) {
	out := &maxWriter{}
	r := newRig(t, Options{Out: out})
	data := pattern(1 << 20)
	if _, err := r.tx.Add(qt.R(data[:100]), qt.R(data[100:])); err != nil {
		t.Fatal(err)
	}
	r.h.Kick(TransmitQueue)
	waitUntil(t, "the chain used", func() bool { return r.tx.PendingUsed() == 1 })
	if !bytes.Equal(out.Bytes(), data) || out.most > writeMax {
		t.Fatalf("writer got %d bytes (in order: %v), largest Write %d, want at most %d",
			out.Len(), bytes.Equal(out.Bytes(), data), out.most, writeMax)
	}
	if st := r.dev.Stats(); st.OutBytes != 1<<20 || st.OutChains != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestResetDropsRestOfChain: a chain of 1022 descriptors naming the same
// 2 MiB of guest memory (2 GiB of output) into a writer that takes 1 ms
// per Write and has no deadline: the reset drops what is left of it
// instead of waiting the 30 s the writer would take.
func TestResetDropsRestOfChain(t *testing.T) {
	w := &slowCounter{}
	r := newRig(t, Options{Out: w})
	const seg = 2 << 20
	a := r.tx.Alloc(seg)
	bufs := make([]qt.Buf, 1022)
	for i := range bufs {
		bufs[i] = qt.Buf{Addr: a, Len: seg}
	}
	if _, err := r.tx.AddIndirect(bufs...); err != nil {
		t.Fatal(err)
	}
	r.h.Kick(TransmitQueue)
	waitUntil(t, "output", func() bool { return w.n.Load() > 0 })
	start := time.Now()
	r.h.Close()
	took := time.Since(start)
	st := r.dev.Stats()
	if took > 2*time.Second || st.DroppedBytes == 0 || st.OutBytes+st.DroppedBytes != 1022*seg || st.WriteErrors != 0 {
		t.Fatalf("Reset took %v; stats %+v (want the rest dropped, no write error)", took, st)
	}
}

// slowCounter counts what it is given, 1 ms per Write, and keeps none of
// it.
type slowCounter struct{ n atomic.Int64 }

func (w *slowCounter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	w.n.Add(int64(len(p)))
	return len(p), nil
}
