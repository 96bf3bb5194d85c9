package vsock

import (
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/queue"
)

// The data-path benchmarks call the tx and rx handlers directly with a
// chain of one 4 KiB payload per packet (ns/op, B/op and allocs/op are
// per packet), on one open connection whose unix side discards what it
// is given: the numbers are the device's work per packet, without the
// engine and the host's socket.

// discardConn is a net.Conn that takes every write and blocks reads
// until closed.
type discardConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func newDiscard() *discardConn { return &discardConn{closed: make(chan struct{})} }

func (c *discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *discardConn) Read(p []byte) (int, error) {
	<-c.closed
	return 0, net.ErrClosed
}
func (c *discardConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

const benchPayload = 4096

// benchDevice is an active device (no engines) with one open connection.
func benchDevice(tb testing.TB) (*Device, *conn) {
	d, err := New(Options{GuestCID: testCID})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	d.mu.Lock()
	d.active = true
	c := d.newConn(80, 1000, stateOpen, newDiscard())
	d.openBuffers(c)
	c.peerAlloc = 1 << 30
	d.mu.Unlock()
	return d, c
}

// txSetup returns a step that sends one RW packet through the tx
// handler once the writer has made room for it.
func txSetup(tb testing.TB) func() {
	d, c := benchDevice(tb)
	d.host.Add(1)
	go d.writer(c)
	pkt := append(goodHeader(OpRW, benchPayload), make([]byte, benchPayload)...)
	var ch queue.Chain
	ch.Readable = append(ch.Readable, pkt[:HeaderLen], pkt[HeaderLen:])
	ch.ReadLen = uint32(len(pkt))
	return func() {
		for {
			d.mu.Lock()
			free := c.toHost.free()
			d.mu.Unlock()
			if free >= benchPayload {
				break
			}
			runtime.Gosched()
		}
		d.tx.Chain(&ch)
	}
}

// rxSetup returns a step that buffers 4 KiB as the reader would and
// has the rx handler send it.
func rxSetup(tb testing.TB) func() {
	d, c := benchDevice(tb)
	buf := make([]byte, HeaderLen+benchPayload)
	var ch queue.Chain
	ch.Writable = append(ch.Writable, buf)
	ch.WriteLen = uint32(len(buf))
	return func() {
		d.mu.Lock()
		k := copy(c.toGuest.space(), buf[:benchPayload])
		c.toGuest.produced(k)
		c.peerFwd = c.txCnt
		d.markReady(c)
		d.mu.Unlock()
		if r := d.rx.Chain(&ch); r.Used == 0 {
			tb.Fatal("nothing sent")
		}
	}
}

func BenchmarkTxRW(b *testing.B) {
	step := txSetup(b)
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		step()
	}
}

func BenchmarkRxRW(b *testing.B) {
	step := rxSetup(b)
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		step()
	}
}

// TestNoAllocPerPacket: after warm-up, a data packet each way allocates
// nothing (the writer goroutine's work included).
func TestNoAllocPerPacket(t *testing.T) {
	for name, setup := range map[string]func(testing.TB) func(){"tx": txSetup, "rx": rxSetup} {
		step := setup(t)
		for range 100 {
			step()
		}
		time.Sleep(10 * time.Millisecond)
		if n := testing.AllocsPerRun(1000, step); n != 0 {
			t.Errorf("%s: %.2f allocations per packet, want 0", name, n)
		}
	}
}
