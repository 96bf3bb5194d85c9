package vhostuser_test

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/netdev"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

func u64(v uint64) []byte { b := make([]byte, 8); binary.LittleEndian.PutUint64(b, v); return b }

func state(i, n uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, i)
	binary.LittleEndian.PutUint32(b[4:], n)
	return b
}

func eventfd(t *testing.T) int {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// hostileCase sends something malformed on a fresh connection; the
// backend must close it with reason in the log.
type hostileCase struct {
	name   string
	reason string
	send   func(t *testing.T, f *vut.Frontend, m *vut.Memory)
}

func raw(req, flags uint32, payload []byte, fds ...int) func(*testing.T, *vut.Frontend, *vut.Memory) {
	return func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
		if err := f.Send(req, flags, payload, fds...); err != nil {
			t.Fatal(err)
		}
	}
}

// withTable sets the memory table, then runs next.
func withTable(next func(*testing.T, *vut.Frontend, *vut.Memory)) func(*testing.T, *vut.Frontend, *vut.Memory) {
	return func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
		if err := f.SetMemTable(m.Region()); err != nil {
			t.Fatal(err)
		}
		next(t, f, m)
	}
}

func TestHostileFrontends(t *testing.T) {
	h := newHarness(t)
	region := func(m *vut.Memory, gpa, size, ua, off uint64) vut.Region {
		return vut.Region{GuestAddr: gpa, Size: size, UserAddr: ua, MmapOffset: off, FD: m.FD}
	}
	cases := []hostileCase{
		{"short header", "reading a header (6 of 12 bytes)", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.SendRaw(vut.Message(vut.GetFeatures, 0, nil)[:6])
			f.Conn.CloseWrite()
		}},
		{"short payload", "reading the payload", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.SendRaw(vut.Message(vut.SetFeatures, 0, u64(1))[:16])
			f.Conn.CloseWrite()
		}},
		{"size mismatch", "payload of 4 bytes, want 8", raw(vut.SetFeatures, 0, []byte{1, 2, 3, 4})},
		{"huge size", "payload of 2147483648 bytes", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			b := vut.Message(vut.GetConfig, 0, nil)
			binary.LittleEndian.PutUint32(b[8:], 1<<31)
			f.SendRaw(b)
		}},
		{"unknown request", "unknown or unsupported request", raw(99, 0, nil)},
		{"log base", "unknown or unsupported request", raw(vut.SetLogBase, 0, u64(0))},
		{"bad version", "protocol version 2", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			b := vut.Message(vut.GetFeatures, 0, nil)
			binary.LittleEndian.PutUint32(b[4:], 2)
			f.SendRaw(b)
		}},
		{"reply flag", "has the REPLY flag", raw(vut.GetFeatures, vut.FlagReply, nil)},
		{"unknown flag", "unknown header flags", raw(vut.GetFeatures, 0x100, nil)},
		{"too many fds", "more than 8 file descriptors", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			fds := make([]int, 9)
			for i := range fds {
				fds[i] = eventfd(t)
			}
			f.Send(vut.SetVringCall, 0, u64(0), fds...)
		}},
		{"extra fd", "1 file descriptors, want 0", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.Send(vut.SetFeatures, 0, u64(1<<32), eventfd(t))
		}},
		{"missing fd", "0 file descriptors, want 1", raw(vut.SetVringKick, 0, u64(0))},
		{"kick polling", "without an fd (polling)", raw(vut.SetVringKick, 0, u64(vut.NoFD))},
		{"kick bits", "unknown bits", raw(vut.SetVringCall, 0, u64(1<<20))},
		{"kick regular file", "a regular file is not an eventfd", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetVringKick, 0, u64(0), m.FD)
		}},
		{"vring index", "ring index 5 out of range", raw(vut.SetVringNum, 0, state(5, 256))},
		{"fd ring index", "ring index 2 out of range", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.Send(vut.SetVringCall, 0, u64(2), eventfd(t))
		}},
		{"huge num", "size 1024 is not a power of two up to 256", raw(vut.SetVringNum, 0, state(0, 1024))},
		{"odd num", "size 3 is not a power of two", raw(vut.SetVringNum, 0, state(1, 3))},
		{"zero num", "size 0 is not a power of two", raw(vut.SetVringNum, 0, state(1, 0))},
		{"huge base", "does not fit a split ring index", raw(vut.SetVringBase, 0, state(0, 0x10000))},
		{"enable 2", "is not 0 or 1", raw(vut.SetVringEnable, 0, state(0, 2))},
		{"unoffered features", "were not offered", raw(vut.SetFeatures, 0, u64(1<<32|1<<62))},
		{"legacy driver", "VERSION_1", raw(vut.SetFeatures, 0, u64(1<<5))},
		{"unoffered protocol", "SET_PROTOCOL_FEATURES: 0x2 were not offered", raw(vut.SetProtocolFeatures, 0, u64(1<<1))}, // LOG_SHMFD
		{"config not negotiated", "without the CONFIG protocol feature", raw(vut.GetConfig, 0, make([]byte, 12+6))},
		{"config size", "config size 8 in a 18-byte payload", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.SetU64(vut.SetProtocolFeatures, vut.ProtocolConfig)
			p := make([]byte, 12+6)
			binary.LittleEndian.PutUint32(p[4:], 8)
			f.Send(vut.GetConfig, 0, p)
		}},
		{"backend fd not negotiated", "without the BACKEND_REQ", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.Send(vut.SetBackendReqFD, 0, nil, eventfd(t))
		}},
		{"log flag", "asks for dirty logging", raw(vut.SetVringAddr, 0, vut.VringAddr(0, 1, 0, 0, 0, 0))},
		{"mem table zero regions", "SET_MEM_TABLE: 0 regions", raw(vut.SetMemTable, 0, vut.MemTable(1))},
		{"mem table truncated", "is not a memory table", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(1, m.Region())[:20], m.FD)
		}},
		{"mem table nregions past payload", "2 regions in a 40-byte payload", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			p := vut.MemTable(1, m.Region())
			binary.LittleEndian.PutUint32(p, 2)
			f.Send(vut.SetMemTable, 0, p, m.FD, m.FD)
		}},
		{"mem table fd count", "2 file descriptors, want 1", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(1, m.Region()), m.FD, m.FD)
		}},
		{"mem table zero size", "region 0 is empty", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(1, region(m, 0, 0, 0, 0)), m.FD)
		}},
		{"mem table guest overlap", "overlap in guest addresses", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(2, region(m, 0, 1<<20, 0, 0), region(m, 0x80000, 1<<20, 1<<30, 0)), m.FD, m.FD)
		}},
		{"mem table user overlap", "overlap in user addresses", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(2, region(m, 0, 1<<20, 0, 0), region(m, 1<<30, 1<<20, 0x1000, 0)), m.FD, m.FD)
		}},
		{"mem table wraps", "wraps an address space", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(1, region(m, ^uint64(0)-4095, 8192, 0, 0)), m.FD)
		}},
		{"mem table past file", "reaches past the end", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(1, region(m, 0, m.Size(), 0, 4096)), m.FD)
		}},
		{"mem table eventfd", "not a regular file or memfd", func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.Send(vut.SetMemTable, 0, vut.MemTable(1, region(m, 0, 4096, 0, 0)), eventfd(t))
		}},
		{"ring outside table", "is outside the memory table", withTable(raw(vut.SetVringAddr, 0,
			vut.VringAddr(0, 0, 0x10_0000_0000, 0x1000, 0x2000, 0)))},
		{"ring crosses table end", "is not inside the memory table", withTable(func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.SetU64(vut.SetFeatures, guestFeatures)
			end := m.UserBase + m.Size()
			f.Send(vut.SetVringAddr, 0, vut.VringAddr(0, 0, end-2048, m.UserBase, m.UserBase+8192, 0))
			f.Send(vut.SetVringKick, 0, u64(0), eventfd(t))
		})},
		{"misaligned ring", "misaligned", withTable(func(t *testing.T, f *vut.Frontend, m *vut.Memory) {
			f.SetU64(vut.SetFeatures, guestFeatures)
			f.Send(vut.SetVringAddr, 0, vut.VringAddr(0, 0, m.UserBase+8, m.UserBase+16384, m.UserBase+8192, 0))
			f.Send(vut.SetVringKick, 0, u64(0), eventfd(t))
		})},
		{"nack then close", "payload of 0 bytes, want 8", func(t *testing.T, f *vut.Frontend, _ *vut.Memory) {
			f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck)
			f.Send(vut.SetVringNum, vut.FlagNeedReply, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := vut.NewMemory(1<<20, 0x100000, 0x7f0000000000)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			f := h.dial()
			tc.send(t, f, m)
			expectClosed(t, f)
			h.log.waitLog(t, tc.reason)
		})
	}
	// The server is still up and serves a well-behaved frontend.
	g := h.connectUML(0)
	g.postRx(1)
	g.send(1)
	h.be.inject(frame(2))
	if got := g.recv(); got[12+14] != 2 {
		t.Fatalf("received %x", got)
	}
}

// TestSetConfigOutOfRange is refused (NEED_REPLY gets a non-zero status)
// without ending the connection.
func TestSetConfigOutOfRange(t *testing.T) {
	h := newHarness(t)
	f := h.dial()
	if err := f.SetU64(vut.SetProtocolFeatures, vut.ProtocolConfig|vut.ProtocolReplyAck); err != nil {
		t.Fatal(err)
	}
	f.ReplyAck = true
	p := make([]byte, 12+4)
	binary.LittleEndian.PutUint32(p[0:], 10)
	binary.LittleEndian.PutUint32(p[4:], 4)
	if err := f.Do(vut.SetConfig, p); err == nil {
		t.Fatal("out-of-range SET_CONFIG acknowledged")
	}
	if _, err := f.GetU64(vut.GetFeatures); err != nil {
		t.Fatalf("connection dropped: %v", err)
	}
}

// TestMalformedChains: loops, buffers outside memory, nested indirect
// tables, out-of-range next indices and huge lengths are returned with
// used length 0, counted, and the device keeps serving.
func TestMalformedChains(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	good := g.buf()
	table := g.buf()
	inner := g.buf()
	g.tx.SetDesc(200, good, 64, vut.DescNext, 200)                      // loop
	g.tx.SetDesc(201, 0x10_0000_0000, 64, 0, 0)                         // outside memory
	g.tx.SetDesc(202, table, 32, vut.DescIndirect, 0)                   // nested indirect
	vut.WriteDesc(g.m.Bytes(table, 16), inner, 16, vut.DescIndirect, 0) //
	vut.WriteDesc(g.m.Bytes(table+16, 16), good, 64, 0, 0)              //
	g.tx.SetDesc(203, good, 64, vut.DescNext, 999)                      // next out of range
	g.tx.SetDesc(204, good, 0xffff_ffff, 0, 0)                          // huge length
	for head := uint16(200); head <= 204; head++ {
		g.tx.AddHead(head)
	}
	g.tx.PublishAndNotify()
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 5; {
		id, l, ok := g.tx.UsedRaw()
		if !ok {
			if time.Now().After(deadline) {
				t.Fatalf("%d of 5 malformed chains returned", n)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if id != uint32(200+n) || l != 0 {
			t.Fatalf("used %d len %d, want %d len 0", id, l, 200+n)
		}
		n++
	}
	waitStats(t, h.dev, func(st netdev.Stats) bool { return st.TxMalformed == 5 && st.TxPackets == 0 })
	g.send(9)
	h.be.waitTx(t, 1)
}

// TestAvailJump: a driver that makes more than the ring size available
// breaks the ring: the device asks for a reset, the transport stops every
// ring and writes the err fd, the connection stays up, GET_VRING_BASE
// reports where the ring stopped, and restarted rings work again.
func TestAvailJump(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	errFD := eventfd(t)
	if err := g.f.SetVringFD(vut.SetVringErr, 1, errFD); err != nil {
		t.Fatal(err)
	}
	g.send(1)
	g.tx.SetAvailIdx(g.tx.AvailIdx() + 1000)
	g.tx.Notify()
	h.log.waitLog(t, "NEEDS_RESET")
	var b [8]byte
	if n, err := readTimeout(errFD, b[:], 5*time.Second); n != 8 || err != nil {
		t.Fatalf("err fd read %d: %v", n, err)
	}
	h.log.waitLog(t, "vhost-user device stopped")
	bases := [2]uint32{}
	for i := range bases {
		var err error
		if bases[i], err = g.f.GetVringBase(uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if bases != [2]uint32{0, 1} {
		t.Fatalf("bases %v, want [0 1]", bases)
	}
	for i, r := range []*vut.Ring{g.rx, g.tx} {
		r.Resume(uint16(bases[i]))
		if err := g.f.SetState(vut.SetVringBase, uint32(i), bases[i]); err != nil {
			t.Fatal(err)
		}
		if err := g.f.SetVringFD(vut.SetVringKick, uint32(i), int(r.Kick.Fd())); err != nil {
			t.Fatal(err)
		}
	}
	g.send(2)
	g.postRx(1)
	h.be.inject(frame(3))
	if got := g.recv(); got[12+14] != 3 {
		t.Fatalf("received %x", got)
	}
	h.be.waitTx(t, 2)
}

// TestCallPipeClosed: UML closes its call pipes when its driver drops the
// rings without telling the backend; the first interrupt after that
// (EPIPE) stops the device, and the server stays up.
func TestCallPipeClosed(t *testing.T) {
	h := newHarness(t)
	g := h.connectUML(0)
	g.rx.CallR.Close()
	g.postRx(2)
	g.rx.EnableInterrupts()
	h.be.inject(frame(1))
	h.log.waitLog(t, "closed a call pipe")
	h.log.waitLog(t, "vhost-user device stopped")
	if _, err := g.f.GetU64(vut.GetFeatures); err != nil {
		t.Fatalf("connection dropped: %v", err)
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// TestNoFDLeaks: sessions that end cleanly, by protocol errors, with fds
// refused, or after a device fault leave no descriptor open.
func TestNoFDLeaks(t *testing.T) {
	h := newHarness(t)
	run := func(t *testing.T) {
		parent := h.t
		h.t = t // the frontend's fds are released at the subtest's end
		defer func() { h.t = parent }()
		g := h.connectUML(0)
		g.postRx(1)
		g.send(1)
		h.be.inject(frame(1))
		g.recv()
		g.f.SetVringFD(vut.SetVringErr, 0, eventfd(t))
		g.f.SetVringFD(vut.SetVringCall, 1, eventfd(t)) // retired while running
		faults := h.log.count("NEEDS_RESET")
		g.tx.SetAvailIdx(g.tx.AvailIdx() + 2000)
		g.tx.Notify()
		h.log.waitCount(t, "NEEDS_RESET", faults)
		g.f.Close()
		h.waitIdle()
		f := h.dial()
		fds := make([]int, 9)
		for i := range fds {
			fds[i] = eventfd(t)
		}
		f.Send(vut.SetVringCall, 0, u64(0), fds...)
		expectClosed(t, f)
		f.Close()
		h.waitIdle()
		f = h.dial()
		f.Send(vut.SetMemTable, 0, vut.MemTable(2, g.m.Region(),
			vut.Region{GuestAddr: 1 << 40, Size: 4096, UserAddr: 1 << 40, FD: g.m.FD}), g.m.FD, eventfd(t))
		expectClosed(t, f)
		f.Close()
		h.waitIdle()
	}
	t.Run("warm-up", run) // lazily opened runtime fds (epoll, pidfd)
	before := openFDs(t)
	for range 3 {
		t.Run("run", run)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d fds open after 3 sessions, %d before", after, before)
	}
}
