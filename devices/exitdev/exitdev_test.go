package exitdev

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/flintvm/flint/devices"
)

func outl(d devices.Device, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Write(off, b[:])
}

func TestProbeThroughBus(t *testing.T) {
	bus := devices.NewBus("pio")
	d := New(nil)
	if err := bus.Insert(d, Base, Size); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if !bus.Read(Base, b[:]) || binary.LittleEndian.Uint32(b[:]) != Magic {
		t.Fatalf("magic reads %x", b)
	}
	if string(b[:]) != "FLEX" {
		t.Fatalf("magic bytes %q", b)
	}
	var v [2]byte
	bus.Read(Base+4, v[:])
	if binary.LittleEndian.Uint16(v[:]) != Version {
		t.Fatalf("version %x", v)
	}
	bus.Read(Base+6, v[:])
	if v[0] != 0 {
		t.Fatalf("state %x before any report", v)
	}
	binary.LittleEndian.PutUint32(b[:], Exited(7))
	if !bus.Write(Base, b[:]) {
		t.Fatal("bus did not route the status write")
	}
	bus.Read(Base+6, v[:])
	if v[0] != 1 {
		t.Fatalf("state %x after a report", v)
	}
	// An absent device reads all ones: the agent's probe must fail there.
	bus.Read(Base+Size, b[:])
	if binary.LittleEndian.Uint32(b[:]) == Magic {
		t.Fatal("probe beyond the device answered the magic")
	}
}

func TestFirstReportOnly(t *testing.T) {
	var calls []Report
	d := New(func(r Report) { calls = append(calls, r) })
	select {
	case <-d.Done():
		t.Fatal("done before any report")
	default:
	}
	if _, ok := d.Report(); ok {
		t.Fatal("report before any write")
	}
	outl(d, 0, Exited(3))
	outl(d, 0, Exited(0))
	outl(d, 0, Signaled(9, false))
	select {
	case <-d.Done():
	default:
		t.Fatal("done not closed after a report")
	}
	r, ok := d.Report()
	if !ok || r.Kind != KindExited || r.Code != 3 {
		t.Fatalf("report %+v %v, want exited 3", r, ok)
	}
	if len(calls) != 1 || calls[0] != r {
		t.Fatalf("callback calls %+v", calls)
	}
	if d.Ignored() != 2 || d.Rejected() != 0 {
		t.Fatalf("ignored %d rejected %d, want 2 0", d.Ignored(), d.Rejected())
	}
}

func TestRejectedWrites(t *testing.T) {
	d := New(func(Report) { t.Fatal("callback on a rejected write") })
	writes := []struct {
		name string
		off  uint64
		data []byte
	}{
		{"byte", 0, []byte{0x10}},
		{"word", 0, []byte{0x07, 0x10}},
		{"quad", 0, []byte{7, 0, 0, 0x10, 0, 0, 0, 0}},
		{"empty", 0, nil},
		{"offset 4", 4, []byte{7, 0, 0, 0x10}},
		{"offset 1", 1, []byte{7, 0, 0, 0x10}},
		{"far offset", 1 << 63, []byte{7, 0, 0, 0x10}},
		{"zero word", 0, []byte{0, 0, 0, 0}},
		{"all ones", 0, []byte{0xff, 0xff, 0xff, 0xff}},
		{"exit above 8 bits", 0, []byte{0, 1, 0, 0x10}},
		{"signal 0", 0, []byte{0, 0, 0, 0x20}},
		{"agent failure without stage", 0, []byte{2, 0, 0, 0x30}},
		{"kind 4", 0, []byte{0, 0, 0, 0x40}},
	}
	for _, w := range writes {
		d.Write(w.off, w.data)
	}
	if _, ok := d.Report(); ok {
		t.Fatal("a rejected write was recorded")
	}
	if d.Rejected() != uint64(len(writes)) {
		t.Fatalf("rejected %d of %d", d.Rejected(), len(writes))
	}
}

func TestEncodeDecode(t *testing.T) {
	tests := []struct {
		word uint32
		want Report
		str  string
	}{
		{Exited(0), Report{Kind: KindExited}, "exited with status 0"},
		{Exited(255), Report{Kind: KindExited, Code: 255}, "exited with status 255"},
		{Signaled(9, false), Report{Kind: KindSignaled, Signal: 9}, "killed by signal 9"},
		{Signaled(11, true), Report{Kind: KindSignaled, Signal: 11, CoreDumped: true}, "killed by signal 11 (core dumped)"},
		{Signaled(127, false), Report{Kind: KindSignaled, Signal: 127}, "killed by signal 127"},
		{AgentFailed(StageExec, 2), Report{Kind: KindAgentFailed, Stage: StageExec, Errno: 2}, "agent failed at stage exec (errno 2)"},
		{AgentFailed(StageModules, 0xffff), Report{Kind: KindAgentFailed, Stage: StageModules, Errno: 0xffff}, "agent failed at stage modules (errno 65535)"},
		{AgentFailed(Stage(200), 0), Report{Kind: KindAgentFailed, Stage: 200}, "agent failed at stage stage(200) (errno 0)"},
	}
	for _, tc := range tests {
		got, err := Decode(tc.word)
		tc.want.Word = tc.word
		if err != nil || got != tc.want {
			t.Errorf("Decode(%#x) = %+v, %v; want %+v", tc.word, got, err, tc.want)
		}
		if got.String() != tc.str {
			t.Errorf("%#x: %q, want %q", tc.word, got.String(), tc.str)
		}
	}
	for _, w := range []uint32{0, 0xffffffff, 0x10000100, 0x20000000, 0x20000109, 0x30000000, 0x31050000, 0x40000000, 0xf0000001} {
		if r, err := Decode(w); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%#x) = %+v, %v; want ErrInvalid", w, r, err)
		}
	}
}

func TestConcurrentReporters(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	d := New(func(Report) { mu.Lock(); calls++; mu.Unlock() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outl(d, 0, Exited(uint8(i)))
		}()
	}
	wg.Wait()
	if calls != 1 || d.Ignored() != 7 {
		t.Fatalf("callback ran %d times, ignored %d", calls, d.Ignored())
	}
}

func TestReadAnyWidthAndOffset(t *testing.T) {
	d := New(nil)
	for off := uint64(0); off < Size+4; off++ {
		for n := 0; n <= 16; n++ {
			b := make([]byte, n)
			d.Read(off, b) // must not panic
			for i := range b {
				if off+uint64(i) >= Size && b[i] != 0 {
					t.Fatalf("read at %d+%d beyond the image gives %x", off, i, b[i])
				}
			}
		}
	}
	d.Read(^uint64(0), make([]byte, 4))
}

// TestProgress: one-byte writes at ProgressOffset report the agent's
// stages until the first report; bad stages, other widths and writes after
// the report are rejected.
func TestProgress(t *testing.T) {
	d := New(nil)
	var got []Stage
	d.SetOnProgress(func(s Stage) { got = append(got, s) })
	d.Write(ProgressOffset, []byte{byte(StageEarly)})
	d.Write(ProgressOffset, []byte{byte(StageWait)})
	d.Write(ProgressOffset, []byte{0})
	d.Write(ProgressOffset, []byte{7})
	d.Write(ProgressOffset, []byte{byte(StageExec), 0})
	d.Write(5, []byte{byte(StageExec)})
	outl(d, 0, Exited(3))
	d.Write(ProgressOffset, []byte{byte(StageExec)})
	if len(got) != 2 || got[0] != StageEarly || got[1] != StageWait {
		t.Fatalf("progress %v, want [early wait]", got)
	}
	if d.Progressed() != 2 || d.Rejected() != 5 {
		t.Fatalf("progressed %d rejected %d, want 2 and 5", d.Progressed(), d.Rejected())
	}
}
