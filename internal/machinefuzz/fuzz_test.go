package machinefuzz

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Slot indices in New's order.
const (
	slotNet = iota
	slotBlk
	slotRng
	slotConsole
	slotVsock
	slotFs
)

func prog(ops ...[]byte) []byte { return bytes.Join(ops, nil) }

// upAll brings every device up with all its offered features.
func upAll() []byte {
	var ops [][]byte
	for i := range 6 {
		ops = append(ops, Op(OpBringUp, 0x80|byte(i), 0, 0))
	}
	return prog(ops...)
}

// seeds are meaningful programs: the fuzzer starts from deep states.
var seeds = map[string][]byte{
	// net: one packet out: a zero header and 60 zero bytes (sane chain,
	// 1 descriptor of 4*18 = 72 bytes) on the transmitq.
	"net-tx": prog(upAll(), Op(OpPost, slotNet|1<<4, 0, 18), Op(OpKick, slotNet|1<<4, 0, 0), Op(OpSettle, 0, 0, 19)),
	// blk: read sector 0: header (16 bytes of zeros: IN, sector 0),
	// 512 bytes writable, 1 byte writable status.
	"blk-read": prog(upAll(), Op(OpPost, slotBlk, 2|(0b110<<2), 0x00_00_80_04), Op(OpKick, slotBlk, 0, 0), Op(OpSettle, 0, 0, 19)),
	// blk: a write (type OUT) of one sector, then a flush.
	"blk-write-flush": prog(upAll(), Op(OpBufWrite, slotBlk, 0, 1), Op(OpPost, slotBlk, 2|(0b100<<2), 0x00_00_80_04),
		Op(OpKick, slotBlk, 0, 0), Op(OpSettle, 0, 0, 10), Op(OpBufWrite, slotBlk, 0x100, 4), Op(OpPost, slotBlk, 1|(0b10<<2)|1<<8, 0x00_00_00_04),
		Op(OpKick, slotBlk, 0, 0), Op(OpSettle, 0, 0, 10)),
	// rng and console: a writable buffer each, indirect for rng; console
	// output.
	"rng-console": prog(upAll(), Op(OpPost, slotRng, 0x40|0b1<<2, 0x10), Op(OpKick, slotRng, 0, 0),
		Op(OpPost, slotConsole, 0b1<<2, 0x10), Op(OpKick, slotConsole, 0, 0),
		Op(OpPost, slotConsole|1<<4, 0, 0x10), Op(OpKick, slotConsole|1<<4, 0, 0), Op(OpSettle, 0, 0, 19)),
	// vsock: a connection request to host port 5000 (refused: RST on
	// the rx queue, where a buffer waits).
	"vsock-connect": prog(upAll(), bufOps(slotVsock, 0, vsockRequest()),
		Op(OpPost, slotVsock, 0b1<<2|1<<8, 16), Op(OpKick, slotVsock, 0, 0),
		Op(OpPost, slotVsock|1<<4, 0, 11), Op(OpKick, slotVsock|1<<4, 0, 0), Op(OpSettle, 0, 0, 19)),
	// fs: FUSE_INIT on the request queue (in: header and init_in, 56
	// bytes; out: 80 writable bytes).
	"fs-init": prog(upAll(), bufOps(slotFs, 0, fuseInit()),
		Op(OpPost, slotFs|1<<4, 1|0b10<<2, 20<<8|14), Op(OpKick, slotFs|1<<4, 0, 0), Op(OpSettle, 0, 0, 19)),
	// MSI-X: the PCI devices up with a vector per queue, then a random
	// fill and a packet out, each interrupting through its vector.
	"msix": prog(Op(OpBringUp, 0xc0|slotNet, 0, 0), Op(OpBringUp, 0xc0|slotBlk, 0, 0), Op(OpBringUp, 0xc0|slotRng, 0, 0),
		Op(OpPost, slotRng, 0b1<<2, 0x10), Op(OpKick, slotRng, 0, 0),
		Op(OpPost, slotNet|1<<4, 0, 18), Op(OpKick, slotNet|1<<4, 0, 0), Op(OpSettle, 0, 0, 19)),
	// A malformed chain on every device: a loop of NEXT links through
	// out-of-RAM addresses, then the avail index jumped past the ring.
	"malformed": func() []byte {
		ops := [][]byte{upAll()}
		for i := range 6 {
			ops = append(ops, Op(OpPost, byte(i), 0x83|0x0700, 0xfff1_0301), Op(OpKick, byte(i), 0, 0))
		}
		ops = append(ops, Op(OpMemWrite, 0x01, 0x0402, 0x0000_00ff), Op(OpKick, slotNet, 0, 0), Op(OpSettle, 0, 0, 19))
		return prog(ops...)
	}(),
	// A reset storm: DRIVER_OK and reset in a loop with traffic, a BAR
	// moved under a running device, MSI-X enabled, a platform reset.
	"reset-storm": func() []byte {
		var ops [][]byte
		for range 8 {
			for i := range 6 {
				ops = append(ops, Op(OpBringUp, 0x80|byte(i), 0, 0), Op(OpPost, byte(i)|1<<4, 0, 0x20), Op(OpKick, byte(i)|1<<4, 0, 0), Op(OpStatus, byte(i), 0, 0))
			}
		}
		ops = append(ops, upAll(), Op(OpCfgWrite, 1, 0x10|2<<8, 0xc010_0000), Op(OpCfgWrite, 2, 0x04|1<<8, 0), Op(OpPIOWrite, 0, 1, 0x06),
			Op(OpPIOWrite, 0, 17, 0xfe), Op(OpSettle, 0, 0, 5))
		return prog(ops...)
	}(),
}

// bufOps writes data into slot's buffer area at off, 4 bytes an op.
func bufOps(slot int, off uint16, data []byte) []byte {
	var ops [][]byte
	for i := 0; i < len(data); i += 4 {
		var w [4]byte
		copy(w[:], data[i:])
		ops = append(ops, Op(OpBufWrite, byte(slot), off+uint16(i), binary.LittleEndian.Uint32(w[:])))
	}
	return prog(ops...)
}

// vsockRequest is a virtio_vsock_hdr: guest CID 3 port 1234 asks host
// port 5000 for a stream connection.
func vsockRequest() []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, struct {
		SrcCID, DstCID            uint64
		SrcPort, DstPort, Len     uint32
		Type, Op                  uint16
		Flags, BufAlloc, FwdCount uint32
	}{SrcCID: 3, DstCID: 2, SrcPort: 1234, DstPort: 5000, Type: 1, Op: 1, BufAlloc: 4096})
	return b
}

// fuseInit is FUSE_INIT (opcode 26) for protocol 7.31: fuse_in_header
// and fuse_init_in.
func fuseInit() []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, struct {
		Len, Opcode                       uint32
		Unique, NodeID                    uint64
		UID, GID, PID                     uint32
		ExtLen, Pad                       uint16
		Major, Minor, MaxReadahead, Flags uint32
	}{Len: 56, Opcode: 26, Unique: 1, Major: 7, Minor: 31, MaxReadahead: 128 << 10})
	return b
}

// newEnv makes a machine's image and share in tb's temporary directory.
func newEnv(tb testing.TB) Env {
	e, err := NewEnv(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// runProgram builds a machine, plays prog and checks the invariants: no
// contained panic, no masked MSI-X vector triggered, nothing written
// outside guest RAM, every device re-driven to DRIVER_OK (and the simple
// ones working), no goroutine left after Close.
func runProgram(t *testing.T, e Env, prog []byte) {
	before := deviceGoroutines()
	m, err := New(e)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		m.Run(prog)
		m.Settle(2 * time.Millisecond)
		done <- nil
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the program did not finish within 20s: a register access or a reset blocked\n%s", stacks())
	}
	for _, check := range []func() error{m.CheckContained, m.CheckInterrupts, m.CheckGuards, m.Redrive, m.CheckContained} {
		if err := check(); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	if err := m.CheckGuards(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for deviceGoroutines() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines in this module's code before the machine, %d after Close\n%s", before, deviceGoroutines(), stacks())
		}
		time.Sleep(time.Millisecond)
	}
}

// deviceGoroutines counts the goroutines, other than the caller, running
// this module's code: the fuzzing worker's own come and go.
func deviceGoroutines() int {
	n := 0
	for i, g := range strings.Split(stacks(), "\n\n") {
		if i > 0 && strings.Contains(g, "github.com/flintvm/flint/") {
			n++
		}
	}
	return n
}

func stacks() string {
	b := make([]byte, 1<<20)
	return string(b[:runtime.Stack(b, true)])
}

// FuzzMachine plays programs against the whole machine (see the package
// documentation and runProgram for what it checks). With
// MACHINEFUZZ_TRACE=DIR each worker writes its current input to
// DIR/in-PID and, for an input still running after 3 s, every
// goroutine's stack to DIR/stack-PID. The target runs tens of programs a
// second, so Go's minimization of each new input (-fuzzminimizetime,
// 60 s by default) can take most of a short run; -fuzzminimizetime 0
// explores instead.
func FuzzMachine(f *testing.F) {
	for _, name := range sortedSeeds() {
		f.Add(seeds[name])
	}
	e := newEnv(f) // one per process: machines run one after another
	f.Fuzz(func(t *testing.T, prog []byte) {
		if d := os.Getenv("MACHINEFUZZ_TRACE"); d != "" {
			os.WriteFile(fmt.Sprintf("%s/in-%d", d, os.Getpid()), prog, 0o644)
			stop := time.AfterFunc(3*time.Second, func() { os.WriteFile(fmt.Sprintf("%s/stack-%d", d, os.Getpid()), []byte(stacks()), 0o644) })
			defer stop.Stop()
		}
		runProgram(t, e, prog)
	})
}

func sortedSeeds() []string {
	var names []string
	for n := range seeds {
		names = append(names, n)
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	return names
}

// expect says what each seed does before any check or re-drive.
var expect = map[string]func(m *Machine) error{
	"net-tx": func(m *Machine) error {
		return want("packets sent", m.Net.SentCount(), 1, "used", m.UsedIdx(m.Slots[slotNet], 1), 1)
	},
	"blk-read": func(m *Machine) error {
		st, _ := m.Mem.ReadU8(bufBase + slotBlk*bufSize + 528)
		return want("used", m.UsedIdx(m.Slots[slotBlk], 0), 1, "status", st, 0)
	},
	"blk-write-flush": func(m *Machine) error {
		st1, _ := m.Mem.ReadU8(bufBase + slotBlk*bufSize + 528)
		st2, _ := m.Mem.ReadU8(bufBase + slotBlk*bufSize + 256 + 16)
		return want("used", m.UsedIdx(m.Slots[slotBlk], 0), 2, "write status", st1, 0, "flush status", st2, 0)
	},
	"vsock-connect": func(m *Machine) error {
		v := m.Slots[slotVsock]
		op, _ := m.Mem.ReadU16(bufBase + slotVsock*bufSize + 256 + 30)
		return want("tx used", m.UsedIdx(v, 1), 1, "rx used", m.UsedIdx(v, 0), 1, "rx op", op, 3) // RST
	},
	"fs-init": func(m *Machine) error {
		errno, _ := m.Mem.ReadU32(bufBase + slotFs*bufSize + 56 + 4)
		return want("used", m.UsedIdx(m.Slots[slotFs], 1), 1, "error", errno, 0)
	},
	"msix": func(m *Machine) error {
		r, n := m.Slots[slotRng].Router.Vector(1), m.Slots[slotNet].Router.Vector(2)
		return want("rng used", m.UsedIdx(m.Slots[slotRng], 0), 1, "rng vector 1 triggered", r.Triggers > 0, true,
			"net used", m.UsedIdx(m.Slots[slotNet], 1), 1, "net tx vector 2 triggered", n.Triggers > 0, true)
	},
	"rng-console": func(m *Machine) error {
		c := m.Slots[slotConsole]
		return want("rng used", m.UsedIdx(m.Slots[slotRng], 0), 1, "console rx used", m.UsedIdx(c, 0), 1, "console tx used", m.UsedIdx(c, 1), 1)
	},
}

// want checks (name, got, want) triples.
func want(kv ...any) error {
	for i := 0; i+2 < len(kv); i += 3 {
		if fmt.Sprint(kv[i+1]) != fmt.Sprint(kv[i+2]) {
			return fmt.Errorf("%v: %v, want %v", kv[i], kv[i+1], kv[i+2])
		}
	}
	return nil
}

// TestSeeds checks the seeds do what they say, so the fuzzer starts from
// real traffic, with correct drivers where they mean to be;
// MACHINEFUZZ_WRITE_CORPUS=1 also writes them to
// testdata/fuzz/FuzzMachine.
func TestSeeds(t *testing.T) {
	e := newEnv(t)
	for _, name := range sortedSeeds() {
		m, err := New(e)
		if err != nil {
			t.Fatal(err)
		}
		m.Run(seeds[name])
		if f := expect[name]; f != nil {
			err := f(m)
			for end := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(end); err = f(m) {
				time.Sleep(time.Millisecond) // a flush may take a while
			}
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			for _, s := range m.Slots {
				if s.PCI != nil && s.PCI.GuestErrors() != 0 || s.MMIO != nil && s.MMIO.GuestErrors() != 0 {
					t.Errorf("%s: %s saw guest errors: the seed is not a correct driver", name, s.Name)
				}
			}
		}
		m.Close()
		if os.Getenv("MACHINEFUZZ_WRITE_CORPUS") != "" {
			dir := filepath.Join("testdata", "fuzz", "FuzzMachine")
			os.MkdirAll(dir, 0o755)
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[name])
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
