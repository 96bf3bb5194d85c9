package vhostuser

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/netdev"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// FuzzFDs drives a Server over a real socketpair with a program of
// requests whose payloads AND ancillary fds the input chooses: memfds of
// chosen sizes, eventfds, both ends of pipes (a full one too), /dev/null,
// a named FIFO, a directory, a regular file, a unix socket; and, between
// requests, memfds truncated after SET_MEM_TABLE and kicks. Every request
// is followed by a GET_FEATURES probe whose reply must come within
// fdFuzzWait (the backend never blocks forever), the session must end
// within fdFuzzWait of the frontend hanging up, nothing may panic (a
// contained panic is logged as "the device panicked": a failure too; a
// memory fault in a shrunk memfd is the frontend's doing and is fine), the
// device must be reset afterwards, and every fd the backend was given
// must be closed by then (/proc/self/fd counted before and after).
//
// Program: ops until the input ends (at most fdFuzzOps). An op byte below
// 0xf0 is a request: [req, flags, nfds, kind×nfds, size_lo, size_hi,
// payload...] (GET_FEATURES is the probe's and becomes GET_QUEUE_NUM;
// flags get the version bit); 0xf0 T truncates every memfd sent so far to
// (T%4)*4 KiB; 0xf1 writes to every eventfd and pipe sent so far (kicks);
// other ops are no-ops. A kind byte's low nibble picks the fd (see
// fdKind), its high nibble a parameter.
func FuzzFDs(f *testing.F) {
	msg := func(req, flags uint8, kinds []byte, p []byte) []byte {
		b := append([]byte{req, flags, byte(len(kinds))}, kinds...)
		return append(append(b, byte(len(p)), byte(len(p)>>8)), p...)
	}
	le := binary.LittleEndian
	u := func(v uint64) []byte { return le.AppendUint64(nil, v) }
	st := func(i, n uint32) []byte { return le.AppendUint32(le.AppendUint32(nil, i), n) }
	cat := func(ms ...[]byte) []byte { return bytes.Join(ms, nil) }
	feat := uint64(1<<32 | 1<<30 | 1<<28 | 1<<29 | 1<<15 | 1<<5)
	setup := func(call, kick byte) []byte {
		var rings [][]byte
		for i := range 2 {
			base := uint64(i) * 0x10000
			rings = append(rings,
				msg(vut.SetVringCall, 0, []byte{call}, u(uint64(i))),
				msg(vut.SetVringNum, 0, nil, st(uint32(i), 256)),
				msg(vut.SetVringBase, 0, nil, st(uint32(i), 0)),
				msg(vut.SetVringAddr, 0, nil, vut.VringAddr(uint32(i), 0, base, base+0x2000, base+0x1000, 0)),
				msg(vut.SetVringKick, 0, []byte{kick}, u(uint64(i))),
				msg(vut.SetVringEnable, 0, nil, st(uint32(i), 1)))
		}
		return cat(append([][]byte{
			msg(vut.SetOwner, 0, nil, nil),
			msg(vut.SetProtocolFeatures, 0, nil, u(vut.ProtocolReplyAck|vut.ProtocolConfig|vut.ProtocolBackendReq)),
			msg(vut.SetFeatures, 0, nil, u(feat)),
			msg(vut.SetMemTable, vut.FlagNeedReply, []byte{fdMemfd | 6<<4}, vut.MemTable(1, vut.Region{Size: 256 << 10})),
		}, rings...)...)
	}
	good := setup(fdEventfd, fdEventfd)
	f.Add(good)
	f.Add(cat(good, []byte{0xf1}, []byte{0xf0, 0}, []byte{0xf1}))                          // truncated after SET_MEM_TABLE, then kicked
	f.Add(setup(fdPipeWrite|1<<4, fdPipeRead))                                             // a full pipe as call fd
	f.Add(setup(fdFIFO, fdDir))                                                            // refused kinds
	f.Add(cat(setup(fdDevNull, fdFile), msg(vut.SetBackendReqFD, 0, []byte{fdFIFO}, nil))) // refused kinds
	f.Add(cat(msg(vut.SetOwner, 0, []byte{fdEventfd, fdMemfd, fdSocket, fdDir}, nil), msg(vut.SetMemTable, 0, []byte{fdMemfd, fdMemfd, fdDevNull}, vut.MemTable(3, vut.Region{Size: 4096}, vut.Region{Size: 4096, GuestAddr: 1 << 20, UserAddr: 1 << 20}, vut.Region{Size: 4096, GuestAddr: 2 << 20, UserAddr: 2 << 20}))))
	f.Add(cat(good, msg(vut.SetMemTable, 0, []byte{fdMemfd | 2<<4, fdMemfd | 3<<4}, vut.MemTable(2, vut.Region{Size: 16 << 10}, vut.Region{Size: 32 << 10, GuestAddr: 1 << 20, UserAddr: 1 << 20})), []byte{0xf1}, msg(vut.ResetOwner, 0, nil, nil)))
	dir := f.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		f.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, make([]byte, 4096), 0o600); err != nil {
		f.Fatal(err)
	}
	env := &fdEnv{dir: dir, fifo: fifo, file: file}
	runFDProgram(f, env, good) // warm up the poller and the runtime's own fds
	f.Fuzz(func(t *testing.T, data []byte) { runFDProgram(t, env, data) })
}

// The fd kinds a program can pass.
const (
	fdMemfd     = iota // size 4 KiB << (param%8)
	fdEventfd          // also kicked by op 0xf1
	fdPipeRead         // the read end; the write end is kicked by 0xf1
	fdPipeWrite        // the write end; param odd: the pipe is full
	fdDevNull
	fdFIFO // a named FIFO, opened O_RDWR
	fdDir
	fdFile // a regular file
	fdSocket
	fdPrevMemfd // a dup of the last memfd (the same file in two regions)
)

// fdFuzzOps bounds a program; fdFuzzWait bounds every wait on the backend.
const (
	fdFuzzOps  = 48
	fdFuzzWait = 5 * time.Second
)

type fdEnv struct{ dir, fifo, file string }

// fdProgram is one run's frontend: the fds it made (closed at the end)
// and the ones a kick writes to.
type fdProgram struct {
	tb      testing.TB
	env     *fdEnv
	ours    []int
	memfds  []int
	kicks   []int
	lastMem int
}

func (p *fdProgram) keep(fd int, err error) int {
	if err != nil {
		p.tb.Fatal(err)
	}
	p.ours = append(p.ours, fd)
	return fd
}

// make returns a new fd of the kind k selects.
func (p *fdProgram) make(k byte) int {
	kind, param := k&15, k>>4
	switch kind {
	case fdMemfd, fdPrevMemfd:
		if kind == fdPrevMemfd && p.lastMem >= 0 {
			return p.keep(unix.Dup(p.lastMem))
		}
		fd := p.keep(unix.MemfdCreate("fdfuzz", unix.MFD_CLOEXEC))
		if err := unix.Ftruncate(fd, 4096<<(param%8)); err != nil {
			p.tb.Fatal(err)
		}
		p.memfds = append(p.memfds, fd)
		p.lastMem = fd
		return fd
	case fdPipeRead, fdPipeWrite:
		var pp [2]int
		if err := unix.Pipe2(pp[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			p.tb.Fatal(err)
		}
		p.keep(pp[0], nil)
		p.keep(pp[1], nil)
		if kind == fdPipeRead {
			p.kicks = append(p.kicks, pp[1])
			return pp[0]
		}
		if param%2 == 1 {
			for {
				if _, err := unix.Write(pp[1], make([]byte, 4096)); err != nil {
					break
				}
			}
		}
		return pp[1]
	case fdDevNull:
		return p.keep(unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0))
	case fdFIFO:
		return p.keep(unix.Open(p.env.fifo, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0))
	case fdDir:
		return p.keep(unix.Open(p.env.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0))
	case fdFile:
		return p.keep(unix.Open(p.env.file, unix.O_RDWR|unix.O_CLOEXEC, 0))
	case fdSocket:
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			p.tb.Fatal(err)
		}
		p.keep(sp[0], nil)
		p.keep(sp[1], nil)
		return sp[0]
	}
	fd := p.keep(unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK))
	p.kicks = append(p.kicks, fd)
	return fd
}

// countFDs is the number of open fds of this process.
func countFDs(tb testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents) - 1 // ReadDir's own
}

// panicLog records whether any log line mentions a panic.
type panicLog struct{ hit atomic.Pointer[string] }

func (l *panicLog) Write(b []byte) (int, error) {
	if s := string(b); strings.Contains(s, "panic") {
		l.hit.CompareAndSwap(nil, &s)
	}
	return len(b), nil
}

func runFDProgram(tb testing.TB, env *fdEnv, data []byte) {
	before := countFDs(tb)
	dev, err := netdev.New(newIdle(), netdev.Options{MAC: [6]byte{2, 0, 0, 0, 0, 1}})
	if err != nil {
		tb.Fatal(err)
	}
	var plog panicLog
	srv, err := New(Config{Device: dev, Log: slog.New(slog.NewTextHandler(&plog, nil)), HandshakeTimeout: fdFuzzWait})
	if err != nil {
		tb.Fatal(err)
	}
	fe, be, err := vut.Pair()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(ctx, be) }()
	p := &fdProgram{tb: tb, env: env, lastMem: -1}
	open := true
	for n := 0; open && len(data) > 0 && n < fdFuzzOps; n++ {
		op := data[0]
		data = data[1:]
		switch {
		case op == 0xf0 && len(data) > 0:
			for _, fd := range p.memfds {
				unix.Ftruncate(fd, int64(data[0]%4)*4096)
			}
			data = data[1:]
			open = probe(tb, fe)
		case op == 0xf1:
			for _, fd := range p.kicks {
				unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
			}
			open = probe(tb, fe)
		case op < 0xf0:
			if len(data) < 2 {
				data = nil
				break
			}
			req, flags := uint32(op), uint32(data[0])
			if req == vut.GetFeatures {
				req = vut.GetQueueNum
			}
			nfds := int(data[1]) % (MaxFDs + 2)
			data = data[2:]
			fds := make([]int, 0, nfds)
			for i := 0; i < nfds && len(data) > 0; i++ {
				fds = append(fds, p.make(data[0]))
				data = data[1:]
			}
			if len(data) < 2 {
				data = nil
				break
			}
			size := min(int(binary.LittleEndian.Uint16(data)), len(data)-2)
			payload := data[2 : 2+size]
			data = data[2+size:]
			if fe.Send(req, flags, payload, fds...) != nil {
				open = false
				break
			}
			open = probe(tb, fe)
		}
	}
	fe.Close()
	select {
	case err := <-served:
		if os.Getenv("VHOSTUSER_FUZZ_DEBUG") != "" {
			tb.Logf("session ended: %v; device %+v", err, dev.Stats())
		}
		if err != nil && strings.Contains(err.Error(), "panicked") {
			tb.Fatalf("the backend panicked under a request: %v", err)
		}
	case <-time.After(fdFuzzWait):
		tb.Fatalf("the session did not end within %v of the frontend hanging up\n%s", fdFuzzWait, allStacks())
	}
	if s := plog.hit.Load(); s != nil {
		tb.Fatalf("a panic was logged: %s", *s)
	}
	if dev.Negotiated() != 0 || srv.Connected() {
		tb.Fatal("device not reset, or the session still marked connected, after the session ended")
	}
	for _, fd := range p.ours {
		unix.Close(fd)
	}
	deadline := time.Now().Add(fdFuzzWait)
	for after := countFDs(tb); after > before; after = countFDs(tb) {
		if time.Now().After(deadline) {
			tb.Fatalf("%d fds open before the session, %d after it ended and the frontend closed its own: the backend kept some\n%s", before, after, fdList())
		}
		time.Sleep(time.Millisecond)
	}
}

// probe sends GET_FEATURES and waits for its reply, skipping the replies
// before it: every request before it has then been handled. It reports
// false when the backend closed the connection, and fails when no reply
// came within fdFuzzWait (the backend blocked).
func probe(tb testing.TB, fe *vut.Frontend) bool {
	if fe.Send(vut.GetFeatures, 0, nil) != nil {
		return false
	}
	fe.Conn.SetReadDeadline(time.Now().Add(fdFuzzWait))
	for {
		var h [12]byte
		if _, err := io.ReadFull(fe.Conn, h[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				tb.Fatalf("no reply to GET_FEATURES within %v: the backend blocked\n%s", fdFuzzWait, allStacks())
			}
			return false
		}
		size := binary.LittleEndian.Uint32(h[8:])
		if size > 4096 {
			tb.Fatalf("reply of %d bytes", size)
		}
		if _, err := io.ReadFull(fe.Conn, make([]byte, size)); err != nil {
			return false
		}
		if binary.LittleEndian.Uint32(h[:]) == vut.GetFeatures {
			return true
		}
	}
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// fdList names the process's open fds, for a leak report.
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		b.WriteString(e.Name() + " -> " + l + "\n")
	}
	return b.String()
}
