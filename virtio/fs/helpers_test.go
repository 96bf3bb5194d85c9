package fs

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/virtiotest"
)

// fAll is every feature the device offers.
const fAll = virtio.CommonFeatures

// dataSize is each test queue's buffer space: room for 1 MiB transfers.
const dataSize = 4 << 20

// pattern is n bytes whose values depend on their offset.
func pattern(n int) []byte { return virtiotest.Pattern(n, 0) }

// guest plays the Linux virtio-fs driver: it builds FUSE requests as
// chains (headers and arguments readable, out header and answer writable,
// data in page-sized buffers) and reads the answers.
type guest struct {
	tb     testing.TB
	dev    *Device
	root   string
	drv    [2]*qt.Driver
	submit func(q int) // make the device serve queue q's new chains
	unique uint64
}

// newGuest makes a device over cfg (Root defaults to a new temp dir),
// activates it through virtiotest (engines on their goroutines) and sends
// INIT.
func newGuest(tb testing.TB, cfg Config) *guest {
	tb.Helper()
	g := newDevice(tb, cfg)
	h := virtiotest.MustActivate(tb, g.dev, fAll, virtiotest.Options{DataSize: dataSize})
	g.drv = [2]*qt.Driver{h.Drivers[0], h.Drivers[1]}
	g.submit = func(q int) { h.Kick(q) }
	g.init()
	return g
}

// newSyncGuest is newGuest without engine goroutines: each request runs
// on the caller's goroutine through Engine.Step (benchmarks, allocation
// tests, the fuzzer).
func newSyncGuest(tb testing.TB, cfg Config) *guest {
	tb.Helper()
	return newSyncGuestSized(tb, cfg, 3*dataSize)
}

// newSyncGuestSized is newSyncGuest with reqData bytes of request-queue
// buffer space.
func newSyncGuestSized(tb testing.TB, cfg Config, reqData uint64) *guest {
	tb.Helper()
	g := newDevice(tb, cfg)
	d := g.dev
	drvs, queues, irq := virtiotest.SyncQueues(tb, d, fAll, qt.Config{Size: hiprioSize, DataSize: 64 << 10},
		qt.Config{Size: QueueSize, DataSize: reqData})
	if err := d.engines.Bind(queues, irq); err != nil {
		tb.Fatal(err)
	}
	g.drv = [2]*qt.Driver{drvs[0], drvs[1]}
	g.submit = func(q int) {
		g.drv[q].Kick()
		if q == HiprioQueue {
			d.hiprio.eng.Step()
		} else {
			d.req.eng.Step()
		}
	}
	g.init()
	return g
}

func newDevice(tb testing.TB, cfg Config) *guest {
	tb.Helper()
	if cfg.Root == "" {
		cfg.Root = tb.TempDir()
	}
	if cfg.Tag == "" {
		cfg.Tag = "test"
	}
	d, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return &guest{tb: tb, dev: d, root: cfg.Root}
}

// path is name under the share's host directory.
func (g *guest) path(name string) string { return filepath.Join(g.root, name) }

// chain submits bufs as one chain on queue q and waits for the device to
// return it.
func (g *guest) chain(q int, bufs ...qt.Buf) qt.Used {
	g.tb.Helper()
	d := g.drv[q]
	if _, err := d.Add(bufs...); err != nil {
		g.tb.Fatal(err)
	}
	g.submit(q)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if u, ok := d.Used(); ok {
			return u
		}
		if time.Now().After(deadline) {
			g.tb.Fatal("timed out waiting for the device")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// request encodes fuse_in_header (len covering args) and the arguments.
func request(op uint32, nodeid, unique uint64, args ...[]byte) []byte {
	n := inHeaderLen
	for _, a := range args {
		n += len(a)
	}
	b := make([]byte, inHeaderLen, n)
	put32(b, 0, uint32(n))
	put32(b, 4, op)
	put64(b, 8, unique)
	put64(b, 16, nodeid)
	for _, a := range args {
		b = append(b, a...)
	}
	return b
}

// pages splits n writable bytes into page-sized buffers.
func pages(n uint32) []qt.Buf {
	var bufs []qt.Buf
	for n > 0 {
		k := min(n, 4096)
		bufs = append(bufs, qt.W(k))
		n -= k
	}
	return bufs
}

// call sends op with args and an answer space of outLen bytes; it
// returns the errno (positive) and the answer, checking the out header.
func (g *guest) call(op uint32, nodeid uint64, outLen uint32, args ...[]byte) (int, []byte) {
	g.tb.Helper()
	g.unique++
	bufs := []qt.Buf{qt.R(request(op, nodeid, g.unique, args...)), qt.W(outHeaderLen)}
	bufs = append(bufs, pages(outLen)...)
	return g.answer(g.chain(RequestQueue, bufs...), g.unique)
}

// answer checks a used request chain's out header and splits it.
func (g *guest) answer(u qt.Used, unique uint64) (int, []byte) {
	g.tb.Helper()
	w := g.drv[RequestQueue].Written(u)
	if len(w) < outHeaderLen {
		g.tb.Fatalf("used length %d: no out header", u.Len)
	}
	if n := le32(w, 0); n != u.Len {
		g.tb.Fatalf("out header len %d, used length %d", n, u.Len)
	}
	if got := le64(w, 8); got != unique {
		g.tb.Fatalf("unique %d, want %d", got, unique)
	}
	return -int(int32(le32(w, 4))), w[outHeaderLen:]
}

// must fails the test on an errno.
func (g *guest) must(e int, b []byte) []byte {
	g.tb.Helper()
	if e != 0 {
		g.tb.Fatalf("errno %d", e)
	}
	return b
}

func cname(s string) []byte { return append([]byte(s), 0) }

func le(vals ...any) []byte {
	var b []byte
	for _, v := range vals {
		b, _ = binary.Append(b, binary.LittleEndian, v)
	}
	return b
}

func (g *guest) init() {
	g.tb.Helper()
	in := le(uint32(7), uint32(38), uint32(128<<10), uint32(0xffffffff), make([]byte, 48))
	out := g.must(g.call(opInit, 0, initOutLen, in))
	if len(out) != initOutLen || le32(out, 4) != protoMinor {
		g.tb.Fatalf("INIT answer %x", out)
	}
}

// attr is the part of fuse_attr tests look at.
type attr struct {
	ino, size uint64
	mode      uint32
	nlink     uint32
}

func parseAttr(b []byte) attr {
	return attr{ino: le64(b, 0), size: le64(b, 8), mode: le32(b, 60), nlink: le32(b, 64)}
}

// lookup returns the nodeid of name below parent (0: negative entry).
func (g *guest) lookup(parent uint64, name string) (uint64, attr, int) {
	e, b := g.call(opLookup, parent, entryOutLen, cname(name))
	if e != 0 {
		return 0, attr{}, e
	}
	if len(b) != entryOutLen {
		g.tb.Fatalf("LOOKUP answer of %d bytes", len(b))
	}
	return le64(b, 0), parseAttr(b[40:]), 0
}

func (g *guest) mustLookup(parent uint64, name string) uint64 {
	g.tb.Helper()
	id, _, e := g.lookup(parent, name)
	if e != 0 || id == 0 {
		g.tb.Fatalf("LOOKUP %q: errno %d, nodeid %d", name, e, id)
	}
	return id
}

func (g *guest) getattr(id uint64) (attr, int) {
	e, b := g.call(opGetattr, id, attrOutLen, le(uint32(0), uint32(0), uint64(0)))
	if e != 0 {
		return attr{}, e
	}
	return parseAttr(b[16:]), 0
}

// open opens a file (or with dir, a directory) and returns its fh.
func (g *guest) open(id uint64, flags uint32, dir bool) (uint64, int) {
	op := uint32(opOpen)
	if dir {
		op = opOpendir
	}
	e, b := g.call(op, id, openOutLen, le(flags, uint32(0)))
	if e != 0 {
		return 0, e
	}
	return le64(b, 0), 0
}

func (g *guest) create(parent uint64, name string, flags, mode uint32) (uint64, uint64, int) {
	e, b := g.call(opCreate, parent, entryOutLen+openOutLen, le(flags, mode, uint32(0), uint32(0)), cname(name))
	if e != 0 {
		return 0, 0, e
	}
	return le64(b, 0), le64(b, entryOutLen), 0
}

func (g *guest) read(fh, off uint64, size uint32) ([]byte, int) {
	e, b := g.call(opRead, 0, size, le(fh, off, size, uint32(0), uint64(0), uint32(0), uint32(0)))
	return b, e
}

// write sends data in page-sized readable buffers, as the driver does.
func (g *guest) write(fh, off uint64, data []byte) (uint32, int) {
	g.tb.Helper()
	g.unique++
	in := le(fh, off, uint32(len(data)), uint32(0), uint64(0), uint32(0), uint32(0))
	hdr := request(opWrite, 0, g.unique, in)
	put32(hdr, 0, uint32(len(hdr)+len(data)))
	bufs := []qt.Buf{qt.R(hdr)}
	for p := 0; p < len(data); p += 4096 {
		bufs = append(bufs, qt.R(data[p:min(p+4096, len(data))]))
	}
	bufs = append(bufs, qt.W(outHeaderLen), qt.W(writeOutLen))
	e, b := g.answer(g.chain(RequestQueue, bufs...), g.unique)
	if e != 0 {
		return 0, e
	}
	return le32(b, 0), 0
}

func (g *guest) release(fh uint64, dir bool) {
	op := uint32(opRelease)
	if dir {
		op = opReleasedir
	}
	g.must(g.call(op, 0, 0, le(fh, uint32(0), uint32(0), uint64(0))))
}

// forget sends FORGET on the hiprio queue.
func (g *guest) forget(id, n uint64) {
	g.tb.Helper()
	u := g.chain(HiprioQueue, qt.R(request(opForget, id, 0, le(n))))
	if u.Len != 0 {
		g.tb.Fatalf("FORGET used length %d", u.Len)
	}
}

// dirent is one READDIR(PLUS) entry.
type dirent struct {
	name   string
	off    uint64
	typ    uint32
	nodeid uint64 // PLUS only
}

// readdir reads a whole directory with calls of size bytes.
func (g *guest) readdir(fh uint64, plus bool, size uint32) []dirent {
	g.tb.Helper()
	op := uint32(opReaddir)
	if plus {
		op = opReaddirplus
	}
	var all []dirent
	off := uint64(0)
	for {
		b := g.must(g.call(op, 0, size, le(fh, off, size, uint32(0), uint64(0), uint32(0), uint32(0))))
		if len(b) == 0 {
			return all
		}
		for len(b) > 0 {
			var de dirent
			if plus {
				de.nodeid = le64(b, 0)
				b = b[entryOutLen:]
			}
			n := le32(b, 16)
			de.off, de.typ, de.name = le64(b, 8), le32(b, 20), string(b[direntLen:direntLen+n])
			b = b[direntSize(int(n)):]
			all = append(all, de)
			off = de.off
		}
	}
}

func writeFile(tb testing.TB, p string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// readFile is virtiotest.ReadFile.
var readFile = virtiotest.ReadFile
